"""Store test helpers: writing a poll by keyword as the pipeline's step would describe it,
queueing a notification outside a poll, the backends the Store suite runs on, and a look at
what SQLite stored for tests that need more than the Store reads back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import pg_helpers

from monitor.config import StateConfig
from monitor.cycle import Delivery, HistoryPoint, PollRecord, PollWrite, SeriesPoint
from monitor.models import Account, ActiveAlert, Alert, Notification, Severity, Status
from monitor.rules import AlertKey, SourceHealth
from monitor.store import SqliteStore, Store, open_store
from monitor.store.postgres import PostgresStore
from monitor.testing import EPOCH


async def commit_poll(
    store: Store,
    source: str,
    *,
    poll: PollRecord,
    health: SourceHealth,
    upserts: Sequence[Account] = (),
    deletes: Iterable[str] = (),
    active: Mapping[AlertKey, ActiveAlert] | None = None,
    outbox: Sequence[tuple[Notification, Sequence[str]]] = (),
    active_before: Mapping[AlertKey, ActiveAlert] | None = None,
    history: Sequence[HistoryPoint] = (),
    history_deletes: Sequence[HistoryPoint] = (),
    held: Sequence[tuple[Notification, Sequence[str], str]] = (),
    departed: Sequence[Account] = (),
    forget: Sequence[str] = (),
    series: Sequence[SeriesPoint] = (),
) -> None:
    """``store.commit`` of a :class:`PollWrite` made of these parts."""
    deliveries = [Delivery(n, tuple(sinks)) for n, sinks in outbox]
    deliveries += [Delivery(n, tuple(sinks), mute) for n, sinks, mute in held]
    await store.commit(
        PollWrite(
            source,
            poll,
            health,
            upserts=tuple(upserts),
            deletes=tuple(deletes),
            active=active,
            active_before=active_before,
            history=tuple(history),
            history_deletes=tuple(history_deletes),
            deliveries=tuple(deliveries),
            departed=tuple(departed),
            forget=tuple(forget),
            series=tuple(series),
        )
    )


async def queue_notification(
    store: Store, source: str, notification: Notification, sinks: Iterable[str], at: datetime
) -> None:
    """Queue ``notification`` for ``sinks`` at ``at`` outside a poll, as a mute window's
    release does (the outbox rows are the same as a poll's)."""
    await store.release([(notification, sink, source) for sink in sinks], [], at.timestamp())


# --------------------------------------------------------------------------- backends


class Backend(Protocol):
    """One place to keep state: opens stores on it, and shows what it stored."""

    async def open(self) -> Store:
        """A store on this backend's database (the same database each time: reopening it
        finds what an earlier store committed)."""
        ...

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a plain SQL query, for what the Store does not read back (the state of
        delivered and failed outbox rows)."""
        ...


@dataclass(frozen=True, slots=True)
class SqliteBackend:
    path: Path

    async def open(self) -> Store:
        return await open_store(self.path)

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return await sqlite_rows(self.path, sql)


@dataclass(frozen=True, slots=True)
class PostgresBackend:
    """A new schema of the run's PostgreSQL (``tests/pg_helpers.py``), opened as replica
    ``test`` without fencing (the Store suite is one replica's view; the leases and the
    fencing have their own tests)."""

    cluster: pg_helpers.Cluster
    schema: str

    @classmethod
    def new(cls) -> PostgresBackend:
        found = pg_helpers.cluster()
        return cls(found, found.new_schema())

    def state(self, **keys: Any) -> StateConfig:
        return StateConfig(
            url=self.cluster.url(self.schema), password=self.cluster.password, **keys
        )

    async def open(self) -> Store:
        return await PostgresStore.open(
            self.cluster.url(self.schema), self.cluster.password, replica="test", fencing=False
        )

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        url = self.cluster.url(self.schema)

        def read() -> list[tuple[Any, ...]]:
            import psycopg

            with psycopg.connect(url, password=self.cluster.password, autocommit=True) as conn:
                return [tuple(r) for r in conn.execute(sql.encode()).fetchall()]

        return await asyncio.to_thread(read)


#: The backends the Store suite runs on, by the name in the test id. A backend needs a
#: :class:`Backend` that makes a new empty database for each test (in ``tmp_path`` or not).
BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "sqlite": lambda tmp_path: SqliteBackend(tmp_path / "state.db"),
    "postgres": lambda _tmp_path: PostgresBackend.new(),
}


# --------------------------------------------------------------------------- SQLite only


async def sqlite_query(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on the SQLite file of ``store``. Only for tests of something else
    than the store that look at what it wrote; a store test asserts through the Store."""
    assert isinstance(store, SqliteStore), f"{store!r}: not a SQLite store"
    return await sqlite_rows(store.path, sql, *args)


async def sqlite_rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on the SQLite file at ``path``, read through a read-only connection
    of its own (committed data only, whatever a store on the file is doing)."""

    def read() -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return list(conn.execute(sql, args))
        finally:
            conn.close()

    return await asyncio.to_thread(read)


async def sqlite_limit_pages(store: Store, *, grow_by: int | None) -> None:
    """Let the SQLite file of ``store`` grow by at most ``grow_by`` pages from its size now
    (``None``: lift the limit): SQLite's ``max_page_count`` on the store's own connection, so
    a write past it fails with a real SQLITE_FULL, as on a full disk."""
    assert isinstance(store, SqliteStore), f"{store!r}: not a SQLite store"

    def limit(db: sqlite3.Connection) -> None:
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        most = pages + grow_by if grow_by is not None else 0xFFFFFFFE
        db.execute(f"PRAGMA max_page_count={most}")

    await store._run(limit)


def notification(nid: str) -> Notification:
    """A firing low-cash notification with the id ``nid`` (its fingerprint ``fp-<nid>``)."""
    alert = Alert(
        status=Status.FIRING,
        fingerprint=f"fp-{nid}",
        rule="low-cash",
        type="threshold",
        severity=Severity.WARNING,
        account_number="A1",
        field="cash",
        previous=Decimal("1500.00"),
        current=Decimal("512.25"),
        summary="A1: cash fell to 512.25 (< 1000)",
        observed_at=EPOCH,
        snapshot=None,
    )
    return Notification(nid, alert)
