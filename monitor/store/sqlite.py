"""The SQLite backend: last snapshots, alert state, source health and the outbox in one file.

One connection, used from one worker thread so the event loop never blocks on disk; the SQL of
each operation is in :mod:`monitor.store.sqlite_ops`. Every poll is one transaction
(:meth:`SqliteStore.commit`): the changed account rows, the alert state, the source's health
and the new outbox rows land together or not at all, so a crash at any moment either replays
the poll on restart or finds its notifications queued. WAL mode with ``synchronous=NORMAL``
survives a killed process; a power cut may lose the last transaction as a whole, which the
next poll reproduces. The writer holds an exclusive lock on ``<database>.lock``
(:mod:`monitor.store.lock`) from before it connects until it closes: one writer per database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from monitor.cycle import PollWrite, SourceState
from monitor.errors import StoreError
from monitor.models import Notification
from monitor.store import sqlite_ops as ops
from monitor.store.base import (
    KEEP_FINISHED_SECONDS,
    AlertRow,
    HeldRow,
    Mark,
    OutboxRow,
    OutboxSummary,
    SourceRow,
)
from monitor.store.lock import StateLock
from monitor.store.schema import SCHEMA_VERSION

T = TypeVar("T")


class SqliteStore:
    """The :class:`~monitor.store.Store` on one SQLite file: an async facade over one
    connection living in one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._lock: StateLock | None = None
        self._closed = False
        self._version = SCHEMA_VERSION  # what a read-only store found may be older

    @property
    def location(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, *, readonly: bool = False) -> SqliteStore:
        """Open (and create or migrate, unless ``readonly``) the state database at ``path``.

        A writer first takes the database's lock: :class:`~monitor.errors.StateLockedError` when
        another process holds it.

        ``readonly`` is for ``status``: it never creates, migrates or changes file modes, so
        running it as another user leaves the daemon's files alone; it reads a database of an
        older schema as it is.
        """
        store = cls(path)
        try:
            await store._in_thread(store._open_readonly if readonly else store._open)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    def _open_readonly(self) -> None:
        # Without a -wal file nobody is writing: immutable=1 then creates no -wal/-shm files
        # (files a root-run status would leave behind, unwritable for the daemon's user).
        wal = self.path.with_name(self.path.name + "-wal")
        flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        conn: sqlite3.Connection | None = None
        try:
            uri = f"{self.path.resolve().as_uri()}?{flags}"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            version = ops.stored_version(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"{self.path}: cannot read the state database: {exc}") from exc
        if version is None:
            conn.close()
            raise StoreError(f"{self.path}: cannot read the state database: no schema version")
        self._conn, self._version = conn, version

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create its folder: {exc.strerror}") from exc
        lock = StateLock.acquire(self.path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            ops.upgrade(conn, self.path)
        except BaseException as exc:
            if conn is not None:  # never leak the connection of a database we refuse
                conn.close()
            lock.release()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"{self.path}: cannot open the state database: {_reason(exc)}"
                ) from exc
            raise
        self._conn, self._lock = conn, lock

    async def close(self) -> None:
        if self._conn is not None:
            await self._in_thread(self._close)
        self._closed = True
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:  # after the connection: the last write is on disk
            self._lock.release()
            self._lock = None

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:  # the executor is shut down: it would raise RuntimeError
            raise StoreError(f"{self.path}: the state database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in the store's thread, sqlite3 errors made StoreError."""
        return await self._in_thread(self._guard, fn, *args)

    def _guard(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise StoreError(f"{self.path}: the state database is closed")
        try:
            return fn(self._conn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc

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
        def run(db: sqlite3.Connection) -> None:
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

    async def prune_history(self, *, before: float) -> dict[str, int]:
        return await self._run(ops.prune_history, before)

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


def _reason(exc: sqlite3.Error) -> str:
    """SQLite's message and its error code: ``database or disk is full (SQLITE_FULL)``."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)
