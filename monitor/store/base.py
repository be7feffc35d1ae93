"""What the rest of the monitor asks of the state store: the :class:`Store` Protocol and its rows.

The pipeline reads a source's state and commits each poll (:class:`~monitor.cycle.PollWrite`)
in one transaction; delivery drains the outbox and settles what mute windows held; the daemon
counts what waits; ``status`` reads typed rows. A backend (:mod:`monitor.store.sqlite`) keeps
the rows; nothing outside it sees SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from monitor.cycle import PollWrite, SourceState
from monitor.models import AlertState, Notification

#: Delivered, failed and expired rows are kept this long for ``status``, then pruned (the last
#: delivered firing notification of an alert still firing is kept: sinks restore from it).
KEEP_FINISHED_SECONDS = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A notification queued for one sink (times are epoch seconds)."""

    seq: int
    id: str
    sink: str
    source: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float

    def notification(self) -> Notification:
        return Notification.from_payload(self.payload, source=self.source)


@dataclass(frozen=True, slots=True)
class Mark:
    """One attempt's outcome for :meth:`Store.mark_many`: as the arguments of
    :meth:`Store.mark`."""

    seq: int
    state: str
    error: str | None = None
    next_attempt_at: float | None = None


@dataclass(frozen=True, slots=True)
class HeldRow:
    """A notification a mute window holds for one sink."""

    seq: int
    id: str
    sink: str
    source: str
    payload: dict[str, Any]
    mute: str
    created_at: float

    def notification(self) -> Notification:
        return Notification.from_payload(self.payload, source=self.source)


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source's last poll and its health, for ``status``."""

    source: str
    last_poll_at: datetime | None
    last_result: str | None  # "ok" or "failed"
    last_error: str | None
    last_success_at: datetime | None
    failures: int  # consecutive
    account_count: int | None  # accounts in the last successful poll
    polls: int
    accounts_known: int  # account rows stored for the source


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert the store keeps (firing, or pending its rule's ``for``), for ``status``."""

    source: str
    rule: str
    account_number: str | None  # None: the source's own alert (source_down)
    fingerprint: str
    started_at: datetime
    state: AlertState


@dataclass(frozen=True, slots=True)
class SinkQueue:
    """The pending notifications of one sink (times are epoch seconds)."""

    sink: str
    pending: int
    oldest_created_at: float
    max_attempts: int


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """What the outbox holds, for ``status``: the queue of each sink with pending rows, and how
    many rows failed or expired (kept :data:`KEEP_FINISHED_SECONDS`)."""

    queues: tuple[SinkQueue, ...]
    failed_or_expired: int


class Store(Protocol):
    """The state store: one per daemon, opened by :func:`monitor.store.open_store`.

    Every method may raise :class:`~monitor.errors.StoreError`; a write either lands whole or
    not at all. Times given as ``float`` are epoch seconds.
    """

    @property
    def location(self) -> str:
        """Where the state lives, for people (a file path)."""
        ...

    async def close(self) -> None:
        """Release the store; closing twice is harmless, any other call after it a StoreError."""
        ...

    # ---------------------------------------------------------------- polls (pipeline)

    async def load_source(self, source: str) -> SourceState:
        """What the store keeps of ``source`` between polls."""
        ...

    async def commit(self, write: PollWrite) -> None:
        """Write one poll's outcome in one transaction."""
        ...

    # ---------------------------------------------------------------- mute windows

    async def held(self) -> list[HeldRow]:
        """Every notification a mute window holds, oldest first."""
        ...

    async def held_count(self) -> int:
        """How many notifications (one per sink) mute windows hold."""
        ...

    async def release(
        self,
        released: Sequence[tuple[Notification, str, str]],
        settled: Sequence[int],
        now: float,
    ) -> None:
        """Queue ``released`` (notification, sink, source) and forget the held rows (by
        ``seq``) ``settled``, in one transaction. A notification already queued for a sink is
        not queued again."""
        ...

    # ---------------------------------------------------------------- outbox (delivery)

    async def next_pending(self, sink: str) -> OutboxRow | None:
        """The oldest pending notification of a sink (deliveries to one sink keep their order)."""
        ...

    async def next_batch(self, sink: str, *, limit: int, now: float) -> list[OutboxRow]:
        """The sink's oldest pending notifications that are due, up to ``limit``, in order."""
        ...

    async def mark(
        self,
        seq: int,
        state: str,
        *,
        now: float,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record an attempt: ``delivered``, ``failed``, ``expired`` (not an attempt), or
        ``pending`` (a retry, due at ``next_attempt_at``)."""
        ...

    async def mark_many(self, marks: Sequence[Mark], *, now: float) -> None:
        """:meth:`mark` for each of ``marks``, in one transaction (a storm's deliveries)."""
        ...

    async def retry_now(self, now: float) -> None:
        """Make every pending notification due at once (after a restart, try without waiting)."""
        ...

    async def pending(self, sinks: Iterable[str] | None = None) -> int:
        """How many notifications are pending: all, or those of ``sinks``."""
        ...

    async def expire(
        self, *, older_than: float, now: float, keep_finished: float = KEEP_FINISHED_SECONDS
    ) -> list[OutboxRow]:
        """Mark pending rows created before ``older_than`` expired and return them; prune
        finished rows older than ``keep_finished`` seconds (``[delivery] keep_finished``)."""
        ...

    async def outbox_sinks(self) -> set[str]:
        """Sinks that have pending notifications (some may no longer be configured)."""
        ...

    async def prune_history(self, *, before: float) -> dict[str, int]:
        """Delete what ``[history] keep`` no longer covers: the rows of every history table
        (:data:`monitor.store.schema.HISTORY_TABLES`) older than ``before``, in one transaction;
        how many rows went, by table. Runs on a timer, never in a poll's path."""
        ...

    async def firing_deliveries(self, sink: str) -> list[Notification]:
        """The last delivered firing notification to ``sink`` of each alert still firing, so a
        sink that must keep telling its receiver (Alertmanager) can go on after a restart."""
        ...

    async def unresolved_events(self, sink: str, *, delivered_before: float) -> list[Notification]:
        """The firing event notifications (``kind = "event"``) delivered to ``sink`` at or
        before ``delivered_before`` whose fingerprint has no resolved notification queued for
        ``sink`` (in any state), oldest first: the resolves an
        :class:`~monitor.sinks.base.EventResolvingSink` is owed."""
        ...

    # ---------------------------------------------------------------- status

    async def sources(self) -> list[SourceRow]:
        """Every source polled so far, by name."""
        ...

    async def alerts(self) -> list[AlertRow]:
        """Every alert kept, firing or pending, oldest first."""
        ...

    async def held_by_mute(self) -> dict[str, int]:
        """How many notifications each mute window holds (windows holding none are absent)."""
        ...

    async def outbox_summary(self) -> OutboxSummary:
        """The pending queue of each sink, by sink name, and the failed or expired count."""
        ...
