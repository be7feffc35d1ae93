"""The PostgreSQL backend: the same rows and SQL as SQLite, shared by several replicas.

psycopg 3's synchronous API with a :class:`psycopg_pool.ConnectionPool`, run in a few worker
threads (as :class:`~monitor.store.sqlite.SqliteStore` runs its one connection in one), so the
operations of :mod:`monitor.store.sqlite_ops` are written once for both backends:
:class:`PgConnection` gives a psycopg connection the ``sqlite3`` shape they use (``?``
placeholders, ``in_transaction``). Each operation takes a connection from the pool for its
transaction and gives it back: no state lives in a session (no session advisory lock, no
``SET``), so a pooler in transaction mode works.

What differs from SQLite (:mod:`monitor.store.postgres_ops`):

- a poll's commit is fenced by its source's lease: it lands only while this replica holds the
  lease at the epoch it took it with (:class:`~monitor.errors.LeaseLostError` otherwise);
- ``next_pending``/``next_batch`` claim the rows they return for ``claim_ttl`` seconds
  (``FOR UPDATE SKIP LOCKED``), so another replica sends a row only once the claim expired,
  with the same id: a killed replica's in-flight rows are re-sent, nothing else is.

The password is given to libpq apart from the URL and never appears in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import pq

from monitor import __version__
from monitor.config.service import public_url, url_secrets
from monitor.cycle import PollWrite
from monitor.errors import LeaseLostError, StoreError
from monitor.leases import source_lease
from monitor.models import JSONValue
from monitor.store import postgres_ops as pg
from monitor.store import sqlite_ops as ops
from monitor.store.base import OutboxRow
from monitor.store.dbapi import Cursor, Db
from monitor.store.schema import SCHEMA_VERSION
from monitor.store.sql import SqlStore

T = TypeVar("T")

#: Worker threads, and connections in the pool: polls of different sources, deliveries and
#: the lease rounds run side by side.
POOL_SIZE = 4
#: Seconds an operation waits for a connection before it fails with "cannot reach".
CONNECT_TIMEOUT = 5.0


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """SQLite's dialect as psycopg takes it: ``?`` becomes ``%s`` (a ``%`` is doubled)."""
    if sql == "BEGIN IMMEDIATE":
        return "BEGIN"
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection (autocommit) shaped as :class:`~monitor.store.dbapi.Db`."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        cur = self.conn.cursor()
        cur.execute(_pg_sql(sql).encode(), tuple(parameters) or None)
        return cur

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self.conn.cursor()
        rows = [tuple(p) for p in parameters]
        if rows:
            cur.executemany(_pg_sql(sql).encode(), rows)
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != pq.TransactionStatus.IDLE


class PostgresStore(SqlStore):
    """The :class:`~monitor.store.Store` on a PostgreSQL database, as replica ``replica``."""

    def __init__(
        self,
        url: str,
        password: str | None,
        *,
        replica: str,
        claim_ttl: float = 15.0,
        fencing: bool = True,
    ) -> None:
        self.url = url
        #: Whether commits need the source's lease (off only for one replica's tests).
        self.fencing = fencing
        self.replica = replica
        self.claim_ttl = claim_ttl
        self._secrets = [s for s in (password, *url_secrets(url)) if s]
        kwargs: dict[str, Any] = {"autocommit": True}
        if password:
            kwargs["password"] = password
        self._kwargs = kwargs
        self._pool = psycopg_pool.ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=CONNECT_TIMEOUT,
            reconnect_timeout=0,  # never give up: the pool keeps trying to reconnect
            check=psycopg_pool.ConnectionPool.check_connection,
            name="balance-monitor",
        )
        self._executor = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="pg")
        #: The lease rounds' own thread: never queued behind polls that wait for a database
        #: that cannot be reached (a round must say so, and give the sources up, on time).
        self._leases = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-leases")
        self._closed = False
        self._version = SCHEMA_VERSION
        #: The leases this replica holds, by name, at their epoch (set by the lease rounds).
        self.holding: dict[str, int] = {}

    @property
    def location(self) -> str:
        return public_url(self.url)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        url: str,
        password: str | None,
        *,
        replica: str,
        claim_ttl: float = 15.0,
        readonly: bool = False,
        fencing: bool = True,
    ) -> PostgresStore:
        """Connect, and create or migrate the schema (under an advisory lock) unless
        ``readonly``. A database it cannot reach is a StoreError."""
        store = cls(url, password, replica=replica, claim_ttl=claim_ttl, fencing=fencing)
        try:
            await store._in_thread(store._open, readonly)
        except BaseException:
            await store.close()
            raise
        return store

    def _open(self, readonly: bool) -> None:
        try:  # once directly, for libpq's reason when it fails (the pool only times out)
            psycopg.connect(self.url, **self._kwargs, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.location}: cannot connect: {self._scrub(_reason(exc))}"
            ) from None
        self._pool.open(wait=False)
        self._guard(
            lambda db: (
                ops.upgrade(db, self.location, postgres=True)
                if not readonly
                else self._check_readable(db)
            )
        )

    def _check_readable(self, db: Db) -> None:
        version = ops.stored_version(db, postgres=True)
        if version is None:
            raise StoreError(f"{self.location}: no balance-monitor schema in this database")
        self._version = version

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._pool.close)
        self._executor.shutdown(wait=True)
        self._leases.shutdown(wait=True)

    async def _in_thread(
        self, fn: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None
    ) -> T:
        if self._closed:
            raise StoreError(f"{self.location}: the state database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor or self._executor, fn, *args)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._in_thread(self._guard, fn, *args)

    async def _run_leases(self, fn: Callable[..., T], *args: Any) -> T:
        """As :meth:`_run`, in the lease rounds' own thread."""
        call: Callable[[], T] = functools.partial(self._guard, fn, *args)
        return await self._in_thread(call, executor=self._leases)

    def _guard(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            with self._pool.connection() as conn:
                return fn(PgConnection(conn), *args)
        except psycopg_pool.PoolTimeout:
            raise StoreError(
                f"{self.location}: cannot reach the database (no connection within"
                f" {CONNECT_TIMEOUT:g}s)"
            ) from None
        except psycopg_pool.PoolClosed:
            raise StoreError(f"{self.location}: the state database is closed") from None
        except psycopg.Error as exc:
            raise StoreError(f"{self.location}: {self._scrub(_reason(exc))}") from None

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # ------------------------------------------------------------------ fenced polls

    async def commit(self, write: PollWrite) -> None:
        """Write one poll, only while this replica holds the source's lease."""
        if not self.fencing:
            await self._run(ops.commit, write)
            return
        name = source_lease(write.source)
        epoch = self.holding.get(name)
        if epoch is None:
            raise LeaseLostError(
                f"source {write.source}: this replica does not hold its lease",
                source=write.source,
            )

        def fence(db: Db) -> None:
            pg.fence(db, name, self.replica, epoch, write.source)

        await self._run(ops.commit, write, fence)

    # ------------------------------------------------------------------ account streams

    async def record_stream(self, source: str, state: Mapping[str, JSONValue]) -> None:
        """The stream's state for ``status``, only while this replica holds the source's lease:
        one that handed it over, or lost it while paused, does not overwrite its owner's."""
        if not self.fencing:
            await super().record_stream(source, state)
            return
        name = source_lease(source)
        epoch = self.holding.get(name)
        if epoch is None:
            return

        def run(db: Db) -> None:
            with ops.transaction(db):
                pg.fence(db, name, self.replica, epoch, source)
                ops.write_stream(db, source, state)

        with contextlib.suppress(LeaseLostError):  # the lease round says it lost the source
            await self._run(run)

    # ------------------------------------------------------------------ history

    async def compact_history(self, *, before: float) -> int:
        """The journal moved in one statement (:func:`postgres_ops.compact_history`): polls
        of other replicas commit while it runs."""
        return await self._run(pg.compact_history, before)

    # ------------------------------------------------------------------ claimed outbox rows

    async def next_pending(self, sink: str) -> OutboxRow | None:
        return await self._run(pg.claim_next, self.replica, sink, self.claim_ttl)

    async def next_batch(self, sink: str, *, limit: int, now: float) -> list[OutboxRow]:
        def run(db: Db) -> list[OutboxRow]:
            return pg.claim_batch(db, self.replica, sink, limit=limit, now=now, ttl=self.claim_ttl)

        return await self._run(run)

    async def release_claims(self) -> None:
        await self._run(pg.release_claims, self.replica)

    # ------------------------------------------------------------------ leases

    async def lease_round(self, lease: float, decide: pg.Decide) -> pg.Round:
        """One round of this replica's leases (:func:`monitor.store.postgres_ops.lease_round`);
        attr:`holding` is what it holds afterwards."""

        def run(db: Db) -> pg.Round:
            return pg.lease_round(
                db,
                me=self.replica,
                version=__version__,
                lease=lease,
                had=dict(self.holding),
                decide=decide,
            )

        done = await self._run_leases(run)
        self.holding = dict(done.held)
        return done

    async def release_leases(self) -> int:
        """Give every lease up at once (a clean stop)."""
        self.holding = {}
        return await self._run_leases(pg.release_all, self.replica)


_SPACES = re.compile(r"\s+")


def _reason(exc: psycopg.Error) -> str:
    """psycopg's message on one line, with the SQLSTATE when there is one."""
    text = _SPACES.sub(" ", str(exc)).strip()
    code = getattr(exc, "sqlstate", None)
    return f"{text} ({code})" if code else text
