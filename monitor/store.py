"""The SQLite state database: last snapshots, alert state, source health and the outbox.

One connection, used from one worker thread so the event loop never blocks on disk. Every poll
is one transaction (:meth:`Store.commit_poll`): the changed account rows, the alert state, the
source's health and the new outbox rows land together or not at all, so a crash at any moment
either replays the poll on restart or finds its notifications queued. WAL mode with
``synchronous=NORMAL`` survives a killed process; a power cut may lose the last transaction as
a whole, which the next poll reproduces.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from monitor import encoding
from monitor.cycle import PollWrite, SourceState
from monitor.errors import StoreError
from monitor.models import Account, ActiveAlert, JSONValue, Notification
from monitor.parse import parse_records
from monitor.rules import AlertKey, SourceHealth

T = TypeVar("T")

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    record TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    PRIMARY KEY (source, account_number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (
    source TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0,
    last_poll_at TEXT,
    last_result TEXT,
    last_error TEXT,
    last_success_at TEXT,
    account_count INTEGER
);
CREATE TABLE IF NOT EXISTS alerts (
    source TEXT NOT NULL,
    rule TEXT NOT NULL,
    account_number TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'firing',
    notified_at TEXT,
    PRIMARY KEY (source, rule, account_number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    field TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, account_number, field, observed_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    mute TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (id, sink)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed', 'expired')),
    last_error TEXT,
    updated_at REAL NOT NULL,
    UNIQUE (id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, state, seq);
"""

#: Added in schema 2: pending alerts, ``repeat``, the history of windowed fields, held rows.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'firing'",
    "ALTER TABLE alerts ADD COLUMN notified_at TEXT",
)

#: Delivered, failed and expired rows are kept this long for ``status``, then pruned (the last
#: delivered firing notification of an alert still firing is kept: sinks restore from it).
KEEP_FINISHED_SECONDS = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
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


def _schema_version(conn: sqlite3.Connection) -> tuple[str] | None:
    """The stored schema version; ``None`` for a new database."""
    table = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'")
    if table.fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return (str(row[0]),) if row is not None else None


def _record_json(account: Account) -> str:
    """The account's JSON for the ``accounts`` table: the decoded record when the fast parser
    kept it (orjson writes it in C), else the validated record with exact decimals."""
    if account.raw is not None:
        return orjson.dumps(account.raw).decode()
    return encoding.dumps(account.record)


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


def _alert_row(source: str, a: ActiveAlert) -> tuple[str, str, str, str, str, str, str | None]:
    notified = _iso(a.notified_at) if a.notified_at is not None else None
    return (
        source,
        a.rule,
        a.account_number or "",
        a.fingerprint,
        _iso(a.started_at),
        a.state,
        notified,
    )


def _write_alerts(
    db: sqlite3.Connection,
    source: str,
    active: Mapping[AlertKey, ActiveAlert],
    before: Mapping[AlertKey, ActiveAlert] | None,
) -> None:
    """Make the source's rule alerts ``active``: all rows, or those that differ from ``before``."""
    if before is None:
        db.execute("DELETE FROM alerts WHERE source=? AND account_number != ''", (source,))
        changed = list(active.values())
    else:
        gone = [k for k in before if k not in active]
        db.executemany(
            "DELETE FROM alerts WHERE source=? AND rule=? AND account_number=?",
            [(source, rule, number or "") for rule, number in gone],
        )
        changed = [a for k, a in active.items() if before.get(k) != a]
    db.executemany(
        "INSERT OR REPLACE INTO alerts (source, rule, account_number, fingerprint, started_at,"
        " state, notified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_alert_row(source, a) for a in changed],
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Store:
    """Async facade over one SQLite connection living in one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, *, readonly: bool = False) -> Store:
        """Open (and create, unless ``readonly``) the state database at ``path``.

        ``readonly`` is for ``status``: it never creates, migrates or changes file modes, so
        running it as another user leaves the daemon's files alone.
        """
        store = cls(path)
        try:
            await store._run(store._open_readonly if readonly else store._open)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    def _open_readonly(self) -> None:
        # Without a -wal file nobody is writing: immutable=1 then creates no -wal/-shm files
        # (files a root-run status would leave behind, unwritable for the daemon's user).
        wal = self.path.with_name(self.path.name + "-wal")
        flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        try:
            uri = f"{self.path.resolve().as_uri()}?{flags}"
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the state database: {exc}") from exc

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create its folder: {exc.strerror}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            row = _schema_version(conn)
            if row is not None and int(row[0]) == 1:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _MIGRATE_1_TO_2:
                    conn.execute(statement)
                conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
                conn.execute("COMMIT")
                row = ("2",)
            conn.executescript(_SCHEMA)
            row = (
                row or conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            )
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer balance-monitor (schema {row[0]})"
                )
        except BaseException as exc:
            if conn is not None:  # never leak the connection of a database we refuse
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot open the state database: {exc}") from exc
            raise
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._close)
        self._closed = True
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:  # the executor is shut down: it would raise RuntimeError
            raise StoreError(f"{self.path}: the state database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guard, fn, *args)

    def _guard(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the state database is closed")
        return self._conn

    # ------------------------------------------------------------------ sources

    async def load_source(self, source: str) -> SourceState:
        return await self._run(self._load_source, source)

    def _load_source(self, source: str) -> SourceState:
        db = self._db
        row = db.execute(
            "SELECT failures, last_success_at FROM sources WHERE source=?", (source,)
        ).fetchone()
        failures, last_success = (row[0], row[1]) if row else (0, None)
        accounts: dict[str, Account] | None = None
        if last_success is not None:
            records = [
                encoding.loads(text)
                for (text,) in db.execute(
                    "SELECT record FROM accounts WHERE source=? ORDER BY account_number",
                    (source,),
                )
            ]
            accounts = dict(parse_records(records).accounts)
        active: dict[AlertKey, ActiveAlert] = {}
        down: ActiveAlert | None = None
        for rule, number, fp, started, state, notified in db.execute(
            "SELECT rule, account_number, fingerprint, started_at, state, notified_at"
            " FROM alerts WHERE source=?",
            (source,),
        ):
            alert = ActiveAlert(
                rule,
                number or None,
                fp,
                _from_iso(started),
                "pending" if state == "pending" else "firing",
                _from_iso(notified) if notified else None,
            )
            if alert.account_number is None:
                down = alert
            else:
                active[(rule, alert.account_number)] = alert
        history: dict[tuple[str, str], list[tuple[datetime, JSONValue]]] = {}
        for number, name, at, value in db.execute(
            "SELECT account_number, field, observed_at, value FROM history WHERE source=?"
            " ORDER BY account_number, field, observed_at",
            (source,),
        ):
            history.setdefault((number, name), []).append((_from_iso(at), encoding.loads(value)))
        last = _from_iso(last_success) if last_success is not None else None
        return SourceState(accounts, SourceHealth(failures, down), active, last, history)

    async def commit(self, write: PollWrite) -> None:
        """Write one poll's outcome (:class:`~monitor.cycle.PollWrite`) in one transaction."""
        await self._run(self._commit, write)

    def _commit(self, write: PollWrite) -> None:
        source, poll, health = write.source, write.poll, write.health
        upserts, deletes, active = write.upserts, write.deletes, write.active
        db = self._db
        at = _iso(poll.at)
        now = poll.at.timestamp()
        db.execute("BEGIN IMMEDIATE")
        try:
            if upserts:
                db.executemany(
                    "INSERT INTO accounts (source, account_number, record, observed_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (source, account_number)"
                    " DO UPDATE SET record=excluded.record, observed_at=excluded.observed_at",
                    [(source, a.account_number, _record_json(a), at) for a in upserts],
                )
            if deletes:
                db.executemany(
                    "DELETE FROM accounts WHERE source=? AND account_number=?",
                    [(source, n) for n in deletes],
                )
            if active is not None:
                _write_alerts(db, source, active, write.active_before)
            if write.history:
                db.executemany(
                    "INSERT OR REPLACE INTO history (source, account_number, field, observed_at,"
                    " value) VALUES (?, ?, ?, ?, ?)",
                    [(source, n, f, _iso(at), encoding.dumps(v)) for n, f, at, v in write.history],
                )
            if write.history_deletes:
                db.executemany(
                    "DELETE FROM history WHERE source=? AND account_number=? AND field=?"
                    " AND observed_at=?",
                    [(source, n, f, _iso(at)) for n, f, at, _ in write.history_deletes],
                )
            held = write.held
            if held:
                db.executemany(
                    "INSERT OR IGNORE INTO held (id, sink, source, payload, mute, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (d.notification.id, sink, source, payload, d.held_by, now)
                        for d in held
                        for payload in (encoding.dumps(d.notification.payload()),)
                        for sink in d.sinks
                    ],
                )
            db.execute("DELETE FROM alerts WHERE source=? AND account_number=''", (source,))
            if health.down is not None:
                d = health.down
                db.execute(
                    "INSERT INTO alerts (source, rule, account_number, fingerprint, started_at)"
                    " VALUES (?, ?, '', ?, ?)",
                    (source, d.rule, d.fingerprint, _iso(d.started_at)),
                )
            db.execute(
                "INSERT INTO sources (source, failures, polls, last_poll_at, last_result,"
                " last_error, last_success_at, account_count) VALUES (?, ?, 1, ?, ?, ?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET failures=excluded.failures,"
                " polls=polls+1, last_poll_at=excluded.last_poll_at,"
                " last_result=excluded.last_result, last_error=excluded.last_error,"
                " last_success_at=coalesce(excluded.last_success_at, last_success_at),"
                " account_count=coalesce(excluded.account_count, account_count)",
                (
                    source,
                    health.failures,
                    at,
                    "ok" if poll.ok else "failed",
                    poll.error,
                    at if poll.ok else None,
                    poll.account_count,
                ),
            )
            self._insert_outbox(db, source, [(d.notification, d.sinks) for d in write.queued], now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ mute windows

    async def held(self) -> list[HeldRow]:
        """Every notification a mute window holds, oldest first."""

        def run() -> list[HeldRow]:
            return [
                HeldRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6])
                for r in self._db.execute(
                    "SELECT seq, id, sink, source, payload, mute, created_at FROM held ORDER BY seq"
                )
            ]

        return await self._run(run)

    async def held_count(self) -> int:
        """How many notifications (one per sink) mute windows hold."""
        return int((await self.query("SELECT count(*) FROM held"))[0][0])

    async def release(
        self,
        released: Sequence[tuple[Notification, str, str]],
        settled: Sequence[int],
        now: float,
    ) -> None:
        """Queue ``released`` (notification, sink, source) and forget the held rows
        ``settled``, in one transaction."""

        def run() -> None:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for notification, sink, source in released:
                    self._insert_outbox(db, source, [(notification, [sink])], now)
                db.executemany("DELETE FROM held WHERE seq=?", [(seq,) for seq in settled])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(run)

    # ------------------------------------------------------------------ sinks that restore

    async def firing_deliveries(self, sink: str) -> list[Notification]:
        """The last delivered firing notification to ``sink`` of each alert still firing, so a
        sink that must keep telling its receiver (Alertmanager) can go on after a restart."""

        def run() -> list[Notification]:
            rows = self._db.execute(
                "SELECT o.source, o.payload FROM outbox o"
                " JOIN alerts a ON a.fingerprint = json_extract(o.payload, '$.fingerprint')"
                " AND a.source = o.source AND a.state = 'firing'"
                " WHERE o.sink=? AND o.state='delivered'"
                " AND json_extract(o.payload, '$.status') = 'firing'"
                " ORDER BY o.seq",
                (sink,),
            )
            latest: dict[str, Notification] = {}
            for source, payload in rows:
                notification = Notification.from_payload(encoding.loads(payload), source=source)
                latest[notification.alert.fingerprint] = notification
            return list(latest.values())

        return await self._run(run)

    @staticmethod
    def _insert_outbox(
        db: sqlite3.Connection,
        source: str,
        outbox: Sequence[tuple[Notification, Sequence[str]]],
        now: float,
    ) -> None:
        rows: list[tuple[str, str, str, str, float, float, float]] = []
        for notification, sinks in outbox:
            payload = encoding.dumps(notification.payload())
            rows.extend((notification.id, sink, source, payload, now, now, now) for sink in sinks)
        if rows:
            db.executemany(
                "INSERT OR IGNORE INTO outbox (id, sink, source, payload, created_at,"
                " next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # ------------------------------------------------------------------ outbox

    async def enqueue(
        self, source: str, notification: Notification, sinks: Sequence[str], now: datetime
    ) -> None:
        """Queue one notification outside a poll (``test-sink``)."""

        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._insert_outbox(self._db, source, [(notification, sinks)], now.timestamp())
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        await self._run(run)

    async def next_pending(self, sink: str) -> OutboxRow | None:
        """The oldest pending notification of a sink (deliveries to one sink keep their order)."""
        return await self._run(self._next_pending, sink)

    def _next_pending(self, sink: str) -> OutboxRow | None:
        row = self._db.execute(
            "SELECT seq, id, sink, source, payload, created_at, attempts, next_attempt_at"
            " FROM outbox WHERE sink=? AND state='pending' ORDER BY seq LIMIT 1",
            (sink,),
        ).fetchone()
        if row is None:
            return None
        return OutboxRow(
            row[0], row[1], row[2], row[3], encoding.loads(row[4]), row[5], row[6], row[7]
        )

    async def next_batch(self, sink: str, *, limit: int, now: float) -> list[OutboxRow]:
        """The sink's oldest pending notifications that are due, up to ``limit``, in order."""

        def run() -> list[OutboxRow]:
            return [
                OutboxRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6], r[7])
                for r in self._db.execute(
                    "SELECT seq, id, sink, source, payload, created_at, attempts, next_attempt_at"
                    " FROM outbox WHERE sink=? AND state='pending' AND next_attempt_at <= ?"
                    " ORDER BY seq LIMIT ?",
                    (sink, now, limit),
                )
            ]

        return await self._run(run)

    async def mark(
        self,
        seq: int,
        state: str,
        *,
        now: float,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record an attempt: ``delivered``, ``failed``, ``expired``, or ``pending`` (retry)."""

        def run() -> None:
            self._db.execute(
                "UPDATE outbox SET state=?, attempts=attempts+?, last_error=?,"
                " next_attempt_at=coalesce(?, next_attempt_at), updated_at=? WHERE seq=?",
                (state, 0 if state == "expired" else 1, error, next_attempt_at, now, seq),
            )

        await self._run(run)

    async def retry_now(self, now: float) -> None:
        """Make every pending notification due at once (after a restart, try without waiting)."""

        def run() -> None:
            self._db.execute(
                "UPDATE outbox SET next_attempt_at=? WHERE state='pending' AND next_attempt_at > ?",
                (now, now),
            )

        await self._run(run)

    async def pending(self, sinks: Iterable[str] | None = None) -> int:
        names = None if sinks is None else list(sinks)

        def run() -> int:
            if names is None:
                row = self._db.execute("SELECT count(*) FROM outbox WHERE state='pending'")
            else:
                marks = ",".join("?" * len(names))
                row = self._db.execute(
                    f"SELECT count(*) FROM outbox WHERE state='pending' AND sink IN ({marks})",  # noqa: S608
                    names,
                )
            return int(row.fetchone()[0])

        return await self._run(run)

    async def expire(self, *, older_than: float, now: float) -> list[OutboxRow]:
        """Mark pending rows created before ``older_than`` expired; prune old finished rows."""

        def run() -> list[OutboxRow]:
            db = self._db
            rows = [
                OutboxRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6], r[7])
                for r in db.execute(
                    "SELECT seq, id, sink, source, payload, created_at, attempts,"
                    " next_attempt_at FROM outbox WHERE state='pending' AND created_at < ?",
                    (older_than,),
                )
            ]
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE outbox SET state='expired', updated_at=? WHERE seq=?",
                    [(now, r.seq) for r in rows],
                )
                db.execute(
                    "DELETE FROM outbox WHERE state != 'pending' AND updated_at < ?"
                    " AND json_extract(payload, '$.fingerprint') NOT IN"
                    " (SELECT fingerprint FROM alerts WHERE state = 'firing')",
                    (now - KEEP_FINISHED_SECONDS,),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return rows

        return await self._run(run)

    async def outbox_sinks(self) -> set[str]:
        """Sinks that have pending notifications (some may no longer be configured)."""

        def run() -> set[str]:
            return {
                r[0]
                for r in self._db.execute("SELECT DISTINCT sink FROM outbox WHERE state='pending'")
            }

        return await self._run(run)

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read-only query for ``status`` and tests."""
        return await self._run(lambda: list(self._db.execute(sql, args)))
