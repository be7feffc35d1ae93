"""What the rest of the monitor asks of the state store: the :class:`Store` Protocol and its rows.

The pipeline reads a source's state and commits each poll (:class:`~monitor.cycle.PollWrite`)
in one transaction; delivery drains the outbox and settles what mute windows held; the daemon
counts what waits; ``status`` reads typed rows. A backend (:mod:`monitor.store.sqlite`) keeps
the rows; nothing outside it sees SQL.

Several replicas may share one PostgreSQL (:mod:`monitor.store.postgres`): there a poll's
commit is fenced by the source's lease (:class:`~monitor.errors.LeaseLostError`), and
``next_pending``/``next_batch`` claim the rows they return for a while, so one row is sent by
one replica at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from monitor.cycle import PollWrite, SourceState
from monitor.digest_data import DigestData
from monitor.models import AlertState, JSONValue, Notification
from monitor.silences import Ack, Silence

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
    escalated: int = 0  # steps of the rule's `escalate` sent for this episode


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


@dataclass(frozen=True, slots=True)
class AlertRef:
    """An alert episode found by a notification id, a fingerprint or its rule and account."""

    fingerprint: str
    rule: str
    account_number: str | None
    source: str
    firing: bool  # still firing now
    notification_id: str | None = None  # when it was found by a notification's id


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One delivery attempt: when (epoch seconds), how it went (``delivered``, ``retry``,
    ``failed``), and the error."""

    at: float
    outcome: str
    error: str | None


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A tracked field's value from ``at`` (epoch seconds) on: the number or string as text,
    ``None`` for null (``account_history``)."""

    source: str
    account_number: str
    field: str
    at: float
    value: str | None


@dataclass(frozen=True, slots=True)
class PollRow:
    """One poll's outcome (``at`` in epoch seconds), for the dashboard's uptime bar."""

    source: str
    at: float
    ok: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One notification for one sink as the notification log keeps it (``[history] keep``).

    ``state`` is ``pending``, ``delivered``, ``failed`` or ``expired``; ``held`` while a mute
    window or a silence holds it, ``settled`` when what it held was summarised or dropped."""

    id: str
    sink: str
    source: str
    fingerprint: str
    rule: str
    account_number: str | None
    status: str
    summary: str
    created_at: float
    state: str
    attempt_count: int
    last_error: str | None
    updated_at: float
    attempts: tuple[AttemptRow, ...] = ()
    #: The acknowledgement of the alert's episode, if it was acknowledged.
    ack: Ack | None = None


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account's last stored record, as the API sent it (unknown fields included)."""

    source: str
    account_number: str
    record: dict[str, Any]
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A notification queued for one sink and where its delivery stands (epoch seconds)."""

    seq: int
    id: str
    sink: str
    source: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    state: str  # pending (retrying once attempts > 0), delivered, failed, expired
    last_error: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """A replica sharing the database (PostgreSQL), for ``status``; times are epoch seconds of
    the database's clock. Live while ``expires_at`` is ahead."""

    name: str
    started_at: float
    heartbeat_at: float
    expires_at: float
    version: str


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who holds a lease (``source:<name>`` or ``singleton``), for ``status``."""

    name: str
    owner: str | None
    epoch: int
    expires_at: float


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

    async def compact_history(self, *, before: float) -> int:
        """Move the account history polls wrote before ``before`` from the append-only journal
        (cheap to write at every poll) to the table the charts read by account, in one
        transaction; how many rows moved. Runs on a timer, never in a poll's path; reads see
        both tables, so it only makes them faster."""
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

    # ---------------------------------------------------------------- silences and acks

    async def control_version(self) -> int:
        """A number every write of a silence or an acknowledgement changes (cheap to read)."""
        ...

    async def add_silence(self, silence: Silence) -> None:
        """Keep a new silence."""
        ...

    async def expire_silence(self, ident: str, *, now: float) -> Silence | None:
        """End silence ``ident`` now (if it has not ended); it as it is now, ``None`` if no
        silence has that id."""
        ...

    async def silences(self, *, include_ended: bool = False, now: float) -> list[Silence]:
        """The silences not ended at ``now`` (every one kept, with ``include_ended``), oldest
        start first."""
        ...

    async def add_ack(self, ack: Ack, queued: Sequence[tuple[Notification, str, str]]) -> bool:
        """Keep ``ack`` and queue ``queued`` (notification, sink, source) in one transaction;
        ``False`` (and nothing done) when the episode was acknowledged already."""
        ...

    async def acks(self) -> list[Ack]:
        """Every acknowledgement kept, oldest first."""
        ...

    async def find_alert(self, ident: str) -> AlertRef | None:
        """The alert episode of notification id or fingerprint ``ident``."""
        ...

    async def find_firing(self, rule: str, account: str) -> list[AlertRef]:
        """The firing alerts of ``rule`` on ``account``, one per source."""
        ...

    async def last_firing(self, fingerprint: str) -> list[tuple[Notification, str, str]]:
        """The last firing notification of an episode queued for each sink: (it, sink,
        source)."""
        ...

    async def notifications(
        self,
        *,
        since: float,
        rule: str | None = None,
        sink: str | None = None,
        state: str | None = None,
        limit: int = 1000,
        source: str | None = None,
        account_number: str | None = None,
    ) -> list[NotificationRecord]:
        """The notification log from ``since`` on, newest first, each with its attempts
        (``source`` and ``account_number``: only those of that source, of that account)."""
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

    # ---------------------------------------------------------------- account streams

    async def record_stream(self, source: str, state: Mapping[str, JSONValue]) -> None:
        """Keep the account stream's state of ``source`` (connected, since, reconnects, last
        error) for ``status``; written when it changes, never per message."""
        ...

    async def streams(self) -> dict[str, dict[str, JSONValue]]:
        """The last state recorded of each source's account stream, by source."""
        ...

    # ---------------------------------------------------------------- dashboard (read-only)

    async def accounts(self) -> list[AccountRow]:
        """Every account's last stored record, by source then account number."""
        ...

    async def series(
        self,
        source: str,
        accounts: Sequence[str] | None,
        fields: Sequence[str],
        *,
        since: float,
        until: float,
    ) -> list[SeriesRow]:
        """The values of ``fields`` of ``accounts`` (the source's stored accounts when ``None``)
        set between ``since`` and ``until`` (inclusive), and for each series the value in force
        at ``since`` as a row at ``since`` (unless a row is there), ordered by account, field
        and time."""
        ...

    async def recent_polls(self, source: str, *, limit: int) -> list[PollRow]:
        """The source's last ``limit`` polls, oldest first."""
        ...

    async def deliveries(self, *, limit: int) -> list[DeliveryRow]:
        """The last ``limit`` notifications queued (one row per sink), newest first."""
        ...

    # ---------------------------------------------------------------- the Telegram bot

    async def bot_offset(self, bot: str) -> int | None:
        """The next ``getUpdates`` ``update_id`` the bot of sink ``bot`` asks for (``None``:
        it never handled an update)."""
        ...

    async def set_bot_offset(self, bot: str, next_update_id: int, *, now: float) -> None:
        """Keep the bot's next ``update_id``, once the updates before it were handled."""
        ...

    # ---------------------------------------------------------------- digests

    async def digest_data(self, *, since: float | None, until: float) -> DigestData:
        """What a digest is built from: every stored account with its ``account_value_total``
        at ``since``, the notifications recorded and the polls made in (since, until]."""
        ...

    async def queue_digest(
        self,
        payload: Mapping[str, JSONValue],
        sinks: Sequence[str],
        *,
        summary: str,
        now: float,
        announce: bool = False,
    ) -> None:
        """Queue a digest (its :meth:`~monitor.digest.Digest.payload`) for ``sinks``, once per
        id and sink, and record it like a notification. ``announce``: bump the control
        version, so a running daemon (another process) wakes its delivery within a second."""
        ...

    async def digest_queued(self, ident: str) -> set[str]:
        """The sinks a digest with this id is queued for (or was delivered to)."""
        ...

    # ---------------------------------------------------------------- replicas (PostgreSQL)

    async def replicas(self) -> list[ReplicaRow]:
        """The replicas that heartbeat into this database, by name (none on SQLite)."""
        ...

    async def leases(self) -> list[LeaseRow]:
        """Every lease row, by name (none on SQLite)."""
        ...
