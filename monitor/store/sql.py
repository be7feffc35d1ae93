"""The Store's methods, written once for every SQL backend.

:class:`SqlStore` turns each :class:`~monitor.store.Store` method into one function of
:mod:`monitor.store.sqlite_ops` run on a connection by the backend's ``_run`` (SQLite: its one
worker thread; PostgreSQL: a pooled connection in a worker thread). A backend adds its
lifecycle and ``_run``, and overrides what it does differently (PostgreSQL: fenced commits and
claimed outbox rows).

To add a Store method to both backends: declare it in :class:`~monitor.store.base.Store`,
write its SQL once as a function of :mod:`monitor.store.sqlite_ops` (in the dialect both
share, see there), and add the one-line method here that runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from monitor.cycle import PollWrite, SourceState
from monitor.digest_data import DigestData
from monitor.models import JSONValue, Notification
from monitor.silences import Ack, Silence
from monitor.store import digest_ops
from monitor.store import sqlite_actions as actions
from monitor.store import sqlite_ops as ops
from monitor.store.base import (
    KEEP_FINISHED_SECONDS,
    AccountRow,
    AlertRef,
    AlertRow,
    DeliveryRow,
    HeldRow,
    LeaseRow,
    Mark,
    NotificationRecord,
    OutboxRow,
    OutboxSummary,
    PollRow,
    ReplicaRow,
    SeriesRow,
    SourceRow,
)
from monitor.store.dbapi import Db
from monitor.store.schema import ACTIONS_SINCE, BOT_OFFSETS_SINCE, REPLICAS_SINCE

T = TypeVar("T")


class SqlStore:
    """The Store methods on top of ``_run``."""

    _version: int

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on the backend's connection, its errors made StoreError."""
        raise NotImplementedError

    # ------------------------------------------------------------------ polls

    async def load_source(self, source: str) -> SourceState:
        return await self._run(ops.load_source, source)

    async def commit(self, write: PollWrite) -> None:
        """Write one poll's outcome (:class:`~monitor.cycle.PollWrite`) in one transaction."""
        await self._run(ops.commit, write)

    # ------------------------------------------------------------------ mute windows

    async def held(self) -> list[HeldRow]:
        return await self._run(ops.held)

    async def held_count(self) -> int:
        return await self._run(ops.held_count)

    async def release(
        self,
        released: Sequence[tuple[Notification, str, str]],
        settled: Sequence[int],
        now: float,
    ) -> None:
        await self._run(ops.release, released, settled, now)

    # ------------------------------------------------------------------ outbox

    async def next_pending(self, sink: str) -> OutboxRow | None:
        return await self._run(ops.next_pending, sink)

    async def next_batch(self, sink: str, *, limit: int, now: float) -> list[OutboxRow]:
        return await self._run(ops.next_batch, sink, limit, now)

    async def mark(
        self,
        seq: int,
        state: str,
        *,
        now: float,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        def run(db: Db) -> None:
            ops.mark(db, seq, state, now=now, error=error, next_attempt_at=next_attempt_at)

        await self._run(run)

    async def mark_many(self, marks: Sequence[Mark], *, now: float) -> None:
        await self._run(ops.mark_many, list(marks), now)

    async def retry_now(self, now: float) -> None:
        await self._run(ops.retry_now, now)

    async def pending(self, sinks: Iterable[str] | None = None) -> int:
        return await self._run(ops.pending, None if sinks is None else list(sinks))

    async def expire(
        self, *, older_than: float, now: float, keep_finished: float = KEEP_FINISHED_SECONDS
    ) -> list[OutboxRow]:
        return await self._run(ops.expire, older_than, now, keep_finished)

    async def outbox_sinks(self) -> set[str]:
        return await self._run(ops.outbox_sinks)

    async def firing_deliveries(self, sink: str) -> list[Notification]:
        return await self._run(ops.firing_deliveries, sink)

    async def unresolved_events(self, sink: str, *, delivered_before: float) -> list[Notification]:
        return await self._run(ops.unresolved_events, sink, delivered_before)

    # ------------------------------------------------------------------ status

    async def sources(self) -> list[SourceRow]:
        return await self._run(ops.sources)

    async def alerts(self) -> list[AlertRow]:
        return await self._run(ops.alerts, self._version)

    async def held_by_mute(self) -> dict[str, int]:
        return await self._run(ops.held_by_mute, self._version)

    async def outbox_summary(self) -> OutboxSummary:
        return await self._run(ops.outbox_summary)

    # ------------------------------------------------------------------ replicas

    async def replicas(self) -> list[ReplicaRow]:
        if self._version < REPLICAS_SINCE:  # an older database read by ``status``
            return []
        return await self._run(ops.replicas)

    async def leases(self) -> list[LeaseRow]:
        if self._version < REPLICAS_SINCE:
            return []
        return await self._run(ops.leases)

    # ------------------------------------------------------------------ retention

    async def prune_history(self, *, before: float) -> dict[str, int]:
        return await self._run(ops.prune_history, before)

    async def compact_history(self, *, before: float) -> int:
        return await self._run(ops.compact_history, before)

    # ------------------------------------------------------------------ silences and acks

    async def control_version(self) -> int:
        if self._version < ACTIONS_SINCE:
            return 0
        return await self._run(actions.control_version)

    async def add_silence(self, silence: Silence) -> None:
        await self._run(actions.add_silence, silence)

    async def expire_silence(self, ident: str, *, now: float) -> Silence | None:
        return await self._run(actions.expire_silence, ident, now)

    async def silences(self, *, include_ended: bool = False, now: float) -> list[Silence]:
        if self._version < ACTIONS_SINCE:
            return []
        return await self._run(actions.silences, include_ended, now)

    async def add_ack(self, ack: Ack, queued: Sequence[tuple[Notification, str, str]]) -> bool:
        return await self._run(actions.add_ack, ack, queued)

    async def acks(self) -> list[Ack]:
        if self._version < ACTIONS_SINCE:
            return []
        return await self._run(actions.acks)

    async def find_alert(self, ident: str) -> AlertRef | None:
        return await self._run(actions.find_alert, ident)

    async def find_firing(self, rule: str, account: str) -> list[AlertRef]:
        return await self._run(actions.find_firing, rule, account)

    async def last_firing(self, fingerprint: str) -> list[tuple[Notification, str, str]]:
        return await self._run(actions.last_firing, fingerprint)

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
        if self._version < ACTIONS_SINCE:
            return []
        equal = {
            "rule": rule,
            "sink": sink,
            "state": state,
            "source": source,
            "account_number": account_number,
        }

        def run(db: Db) -> list[NotificationRecord]:
            return actions.notifications(db, since=since, equal=equal, limit=limit)

        return await self._run(run)

    # ------------------------------------------------------------------ account streams

    async def bot_offset(self, bot: str) -> int | None:
        if self._version < BOT_OFFSETS_SINCE:
            return None
        return await self._run(actions.bot_offset, bot)

    async def set_bot_offset(self, bot: str, next_update_id: int, *, now: float) -> None:
        await self._run(actions.set_bot_offset, bot, next_update_id, now)

    async def record_stream(self, source: str, state: Mapping[str, JSONValue]) -> None:
        await self._run(ops.record_stream, source, state)

    async def streams(self) -> dict[str, dict[str, JSONValue]]:
        return await self._run(ops.streams)

    # ------------------------------------------------------------------ dashboard

    async def accounts(self) -> list[AccountRow]:
        return await self._run(ops.accounts)

    async def series(
        self,
        source: str,
        accounts: Sequence[str] | None,
        fields: Sequence[str],
        *,
        since: float,
        until: float,
    ) -> list[SeriesRow]:
        numbers = None if accounts is None else list(accounts)
        return await self._run(
            ops.series, self._version, (source, numbers, list(fields)), (since, until)
        )

    async def digest_data(self, *, since: float | None, until: float) -> DigestData:
        return await self._run(digest_ops.digest_data, self._version, since, until)

    async def queue_digest(
        self,
        payload: Mapping[str, JSONValue],
        sinks: Sequence[str],
        *,
        summary: str,
        now: float,
        announce: bool = False,
    ) -> None:
        await self._run(digest_ops.queue_digest, payload, list(sinks), summary, now, announce)

    async def digest_queued(self, ident: str) -> set[str]:
        return await self._run(digest_ops.queued, ident)

    async def recent_polls(self, source: str, *, limit: int) -> list[PollRow]:
        return await self._run(ops.recent_polls, self._version, source, limit)

    async def deliveries(self, *, limit: int) -> list[DeliveryRow]:
        return await self._run(ops.deliveries, limit)
