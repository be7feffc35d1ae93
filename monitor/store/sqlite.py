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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from monitor.errors import StateLockedError, StoreError
from monitor.store import sqlite_ops as ops
from monitor.store.lock import StateLock
from monitor.store.schema import SCHEMA_VERSION
from monitor.store.sql import SqlStore

T = TypeVar("T")


class SqliteStore(SqlStore):
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
    async def open(
        cls, path: Path, *, readonly: bool = False, control: bool = False
    ) -> SqliteStore:
        """Open (and create or migrate, unless ``readonly``) the state database at ``path``.

        A writer first takes the database's lock: :class:`~monitor.errors.StateLockedError` when
        another process holds it.

        ``readonly`` is for ``status``: it never creates, migrates or changes file modes, so
        running it as another user leaves the daemon's files alone; it reads a database of an
        older schema as it is.

        ``control`` is for the commands that write silences and acknowledgements: when no
        daemon holds the lock it is an ordinary open (created or migrated); when one does, it
        connects without the lock, creates and migrates nothing, and must only write those in
        short transactions (WAL and the busy timeout let them wait for the daemon's).
        """
        store = cls(path)
        opener = store._open_readonly if readonly else store._open
        if control:
            opener = store._open_control
        try:
            await store._in_thread(opener)
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

    def _open_control(self) -> None:
        # A database at this schema is written without the lock, daemon or not: taking it,
        # even for a moment, could make a daemon starting then refuse to start (exit 2, which
        # systemd does not restart). Only a new or older database is opened as a writer would
        # (created or migrated under the lock).
        if self.path.exists() and self._connect_control(check=False):
            return
        try:
            self._open()
            return
        except StateLockedError:
            pass  # a daemon runs (an older one, or it is migrating): write next to it
        self._connect_control(check=True)

    def _connect_control(self, *, check: bool) -> bool:
        """Connect without the lock to a database at :data:`SCHEMA_VERSION`; whether it is at
        that version (``check``: a StoreError when it is not)."""
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            version = ops.stored_version(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(
                f"{self.path}: cannot open the state database: {_reason(exc)}"
            ) from exc
        if version == SCHEMA_VERSION:
            self._conn = conn
            return True
        conn.close()
        if check:
            raise StoreError(
                f"{self.path}: the running balance-monitor uses schema {version}, this one"
                f" {SCHEMA_VERSION}: restart the daemon with this release first"
            )
        return False

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


def _reason(exc: sqlite3.Error) -> str:
    """SQLite's message and its error code: ``database or disk is full (SQLITE_FULL)``."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)
