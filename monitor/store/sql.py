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

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from monitor.cycle import PollWrite, SourceState
from monitor.models import Notification
from monitor.store import sqlite_ops as ops
from monitor.store.base import (
    AlertRow,
    HeldRow,
    LeaseRow,
    OutboxRow,
    OutboxSummary,
    ReplicaRow,
    SourceRow,
)
from monitor.store.dbapi import Db
from monitor.store.schema import REPLICAS_SINCE

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

    async def retry_now(self, now: float) -> None:
        await self._run(ops.retry_now, now)

    async def pending(self, sinks: Iterable[str] | None = None) -> int:
        return await self._run(ops.pending, None if sinks is None else list(sinks))

    async def expire(self, *, older_than: float, now: float) -> list[OutboxRow]:
        return await self._run(ops.expire, older_than, now)

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
