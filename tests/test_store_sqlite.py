"""What the SQLite backend does on its own, on real files: the file and WAL mode, errors on
unusable paths, the schema and its migration from schema 1, the read-only open of ``status``,
and how values are stored. The Store's behaviour on every backend is in ``test_store.py``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sinks_helpers import make_notification
from store_helpers import commit_poll, queue_notification, sqlite_limit_pages, sqlite_rows

from monitor import status
from monitor.cycle import PollRecord
from monitor.errors import StoreError
from monitor.models import ActiveAlert
from monitor.parse import parse_records
from monitor.rules import SourceHealth
from monitor.store import SCHEMA_VERSION, SqliteStore, Store
from monitor.store import sqlite_ops as ops
from monitor.store.schema import MIGRATIONS, SCHEMA

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)

#: Schema 1 as balance-monitor 0.x wrote it (before pending alerts, history and mute windows).
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    record TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    PRIMARY KEY (source, account_number)
) WITHOUT ROWID;
CREATE TABLE sources (
    source TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0,
    last_poll_at TEXT,
    last_result TEXT,
    last_error TEXT,
    last_success_at TEXT,
    account_count INTEGER
);
CREATE TABLE alerts (
    source TEXT NOT NULL,
    rule TEXT NOT NULL,
    account_number TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (source, rule, account_number)
) WITHOUT ROWID;
CREATE TABLE outbox (
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
CREATE INDEX outbox_pending ON outbox (sink, state, seq);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO sources VALUES
    ('default', 0, 3, '2024-05-01T11:59:00+00:00', 'ok', NULL, '2024-05-01T11:59:00+00:00', 1);
INSERT INTO accounts VALUES
    ('default', 'A1', '{"account_number": "A1", "cash": 500.00}', '2024-05-01T11:59:00+00:00');
INSERT INTO alerts VALUES ('default', 'low-cash', 'A1', 'fp-1', '2024-05-01T11:58:00+00:00');
"""


def schema_1(path: Path, *extra: str) -> Path:
    """A schema-1 database with one account and its firing alert, built by hand (``extra``
    statements run after it)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_1 + "".join(f"{s};\n" for s in extra))
    finally:
        conn.close()
    return path


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def shape(path: Path) -> dict[str, Any]:
    """Every table's columns (name, type, not null, default, key) and every index, by name."""
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        tables: dict[str, Any] = {
            n: sorted(r[1:] for r in conn.execute(f"PRAGMA table_info({n})")) for n in names
        }
        indexes = conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'")
        return {"tables": tables, "indexes": sorted(indexes)}
    finally:
        conn.close()


def version(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        conn.close()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


# --------------------------------------------------------------------------- the file


async def test_open_creates_the_schema_in_wal_mode(path: Path) -> None:
    """Opening a new file creates every table, records the schema version and uses WAL."""
    store = await SqliteStore.open(path)
    try:
        tables = {
            name
            for (name,) in await sqlite_rows(
                path, "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
        assert await sqlite_rows(path, "PRAGMA journal_mode") == [("wal",)]
    finally:
        await store.close()
    assert {"meta", "accounts", "sources", "alerts", "history", "held", "outbox"} <= tables
    assert version(path) == str(SCHEMA_VERSION)
    assert store.location == str(path)


async def test_open_creates_missing_folders(tmp_path: Path) -> None:
    """The database's folder is created when it does not exist yet."""
    store = await SqliteStore.open(tmp_path / "a" / "b" / "state.db")
    await store.close()
    assert (tmp_path / "a" / "b" / "state.db").is_file()


async def test_a_newer_schema_version_is_refused(path: Path) -> None:
    """A database written by a newer release is not touched: StoreError says so."""
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION + 1,))
        conn.execute("DROP TABLE held")
    conn.close()
    with pytest.raises(StoreError, match="newer balance-monitor"):
        await SqliteStore.open(path)
    assert version(path) == str(SCHEMA_VERSION + 1)
    assert "held" not in shape(path)["tables"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        pytest.param("under-a-file", "cannot create its folder", id="folder-is-a-file"),
        pytest.param("a-folder", "cannot open the state database", id="path-is-a-folder"),
        pytest.param("not-sqlite", "cannot open the state database", id="not-a-database"),
    ],
)
async def test_an_unusable_path_is_a_store_error(tmp_path: Path, where: str, message: str) -> None:
    """A path that cannot hold a database raises StoreError, not OSError or sqlite3.Error."""
    (tmp_path / "file").write_text("not a database, and not a folder\n" * 100)
    (tmp_path / "folder").mkdir()
    path = {
        "under-a-file": tmp_path / "file" / "state.db",
        "a-folder": tmp_path / "folder",
        "not-sqlite": tmp_path / "file",
    }[where]
    with pytest.raises(StoreError, match=message):
        await SqliteStore.open(path)


async def test_sqlite_errors_are_translated(path: Path) -> None:
    """An error from sqlite3 reaches the caller as StoreError, chained to the original."""
    store = await SqliteStore.open(path)
    try:
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE held")
        other.close()
        with pytest.raises(StoreError, match="no such table") as caught:
            await store.held()
    finally:
        await store.close()
    assert isinstance(caught.value.__cause__, sqlite3.Error)


class RollbackFails(sqlite3.Connection):
    """A connection whose ROLLBACK fails, as SQLite's does when it already rolled back by
    itself (a full disk, an I/O error)."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")
        return super().execute(sql, *args)


def test_a_failed_rollback_does_not_hide_why_the_transaction_failed(path: Path) -> None:
    """The error that ended a transaction is the one raised, not the ROLLBACK's own error,
    which is only a note on it."""
    db = sqlite3.connect(path, isolation_level=None, factory=RollbackFails)
    try:
        ops.upgrade(db, path)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE") as caught, ops.transaction(db):
            db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '0')")
    finally:
        db.close()
    assert caught.value.__notes__ == [
        "and the rollback failed: cannot rollback - no transaction is active"
    ]


async def test_a_full_disk_is_a_store_error_naming_sqlite_full(store: Store) -> None:
    """A write SQLite cannot fit (``max_page_count`` reached: a real SQLITE_FULL) is a
    StoreError that names the cause and SQLite's code, and the store works again once there
    is room."""
    await sqlite_limit_pages(store, grow_by=0)
    big = parse_records([{"account_number": n, "notes": "x" * 4000} for n in "ABCDEF"])
    poll = PollRecord(T0, ok=True, account_count=6)
    with pytest.raises(StoreError, match=r"database or disk is full \(SQLITE_FULL\)$"):
        await commit_poll(
            store, SOURCE, poll=poll, health=SourceHealth(), upserts=[*big.accounts.values()]
        )
    assert (await store.load_source(SOURCE)).accounts is None

    await sqlite_limit_pages(store, grow_by=None)
    await commit_poll(
        store, SOURCE, poll=poll, health=SourceHealth(), upserts=[*big.accounts.values()]
    )
    stored = (await store.load_source(SOURCE)).accounts
    assert stored is not None
    assert sorted(stored) == list("ABCDEF")


# --------------------------------------------------------------------------- how values are stored


async def test_values_are_stored_as_json_and_utc_iso_text(store: Store, path: Path) -> None:
    """An account is its record's JSON with exact decimals and the time it was last written
    (an account a poll does not name keeps its time); alert times are ISO 8601 in UTC."""
    first = parse_records([{"account_number": n, "cash": Decimal("100.00")} for n in "ABC"])
    changed = parse_records([{"account_number": "B", "cash": Decimal("55.50")}])
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True),
        health=SourceHealth(),
        upserts=list(first.accounts.values()),
    )
    notified = T0.astimezone(timezone(timedelta(hours=-4))) + timedelta(hours=1)
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T1, ok=True),
        health=SourceHealth(),
        upserts=list(changed.accounts.values()),
        deletes=["C"],
        active={
            ("slow", "A1"): ActiveAlert("slow", "A1", "", T0, "pending"),
            ("low-cash", "A2"): ActiveAlert("low-cash", "A2", "fp-2", T0, "firing", notified),
        },
    )
    assert await sqlite_rows(
        path, "SELECT account_number, record, observed_at FROM accounts ORDER BY account_number"
    ) == [
        ("A", '{"account_number":"A","cash":100.00}', T0.isoformat()),
        ("B", '{"account_number":"B","cash":55.50}', T1.isoformat()),
    ]
    assert await sqlite_rows(
        path, "SELECT rule, started_at, state, notified_at FROM alerts ORDER BY rule"
    ) == [
        ("low-cash", T0.isoformat(), "firing", (T0 + timedelta(hours=1)).isoformat()),
        ("slow", T0.isoformat(), "pending", None),
    ]
    assert await sqlite_rows(path, "SELECT polls, last_result FROM sources") == [(2, "ok")]


async def test_an_outbox_row_holds_the_notification_s_payload(store: Store, path: Path) -> None:
    """The payload is the notification's JSON document, which the SQL of ``expire`` and
    ``firing_deliveries`` reads with json_extract."""
    await queue_notification(store, SOURCE, make_notification(), ["log"], T0)
    assert await sqlite_rows(
        path,
        "SELECT id, sink, source, json_extract(payload, '$.fingerprint'),"
        " json_extract(payload, '$.status'), created_at FROM outbox",
    ) == [("n-0001", "log", SOURCE, "fp-0123456789abcdef", "firing", T0.timestamp())]


# --------------------------------------------------------------------------- schema and migrations


def test_the_migrations_reach_the_schema_version() -> None:
    """Step ``i`` takes version ``i + 1`` to ``i + 2``; the last one ends at SCHEMA_VERSION."""
    assert [m.to for m in MIGRATIONS] == list(range(2, SCHEMA_VERSION + 1))


@pytest.mark.parametrize(
    ("query", "index"),
    [
        # find_alert: ack, the bot's buttons (an id, or a fingerprint)
        (
            "SELECT rule FROM notification_log WHERE (id=? OR fingerprint=?) AND status != ?"
            " ORDER BY created_at DESC LIMIT 1",
            "notification_log_fingerprint",
        ),
        # a digest: the last status of each alert it names
        (
            "SELECT status FROM notification_log WHERE fingerprint = ? AND created_at <= ?"
            " ORDER BY created_at DESC LIMIT 1",
            "notification_log_fingerprint",
        ),
        # the dashboard's account page, `notifications --account`
        (
            "SELECT id FROM notification_log WHERE account_number = ?"
            " ORDER BY created_at DESC, id, sink LIMIT ?",
            "notification_log_account",
        ),
    ],
    ids=["find_alert", "digest_status", "by_account"],
)
def test_the_notification_log_is_searched_by_alert_and_account_not_scanned(
    tmp_path: Path, query: str, index: str
) -> None:
    """A year of notifications is a large table: these reads go through an index."""
    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        args = (1,) * query.count("?")
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + query, args))
    finally:
        conn.close()
    assert f"USING INDEX {index}" in plan
    assert "SCAN notification_log" not in plan


async def test_opening_a_schema_1_database_migrates_it(tmp_path: Path) -> None:
    """Opening adds the alert columns and the new tables and records the current version;
    the old alert loads as firing, the account and the source's last success are kept."""
    path = schema_1(tmp_path / "state.db")
    store = await SqliteStore.open(path)
    try:
        state = await store.load_source(SOURCE)
    finally:
        await store.close()

    assert SCHEMA_VERSION == 8
    assert version(path) == str(SCHEMA_VERSION)
    tables = {"history", "held", "departed", "silences", "acks", "notification_log"}
    tables |= {"delivery_attempts", "account_history", "history_journal", "polls"}
    assert tables | {"replicas", "leases", "bot_offsets"} <= set(shape(path)["tables"])
    assert columns(path, "outbox")[-2:] == ["claimed_by", "claimed_until"]
    assert columns(path, "alerts")[-3:] == ["state", "notified_at", "escalated"]
    assert state.active == {
        ("low-cash", "A1"): ActiveAlert(
            "low-cash", "A1", "fp-1", T0 - timedelta(minutes=2), "firing", None
        )
    }
    assert state.accounts is not None
    assert state.accounts["A1"].get("cash") == Decimal("500.00")
    assert state.last_success_at == T0 - timedelta(minutes=1)
    assert state.history == {}
    assert state.departed == {}


async def test_a_migrated_database_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    """The steps from schema 1 end where a new database starts: the same tables, columns
    and indexes."""
    migrated = schema_1(tmp_path / "old.db")
    await (await SqliteStore.open(migrated)).close()
    await (await SqliteStore.open(tmp_path / "new.db")).close()
    assert shape(migrated) == shape(tmp_path / "new.db")


async def test_a_migrated_database_opens_again_unchanged(tmp_path: Path) -> None:
    """Migrating is done once: a second open finds the current version and changes
    nothing."""
    path = schema_1(tmp_path / "state.db")
    await (await SqliteStore.open(path)).close()
    store = await SqliteStore.open(path)
    try:
        rows = await sqlite_rows(path, "SELECT rule, state, notified_at FROM alerts")
    finally:
        await store.close()
    assert rows == [("low-cash", "firing", None)]
    assert version(path) == str(SCHEMA_VERSION)


async def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    """The steps run in one transaction: one failing half-way (a column that is already
    there) leaves the database at schema 1, as it was."""
    path = schema_1(tmp_path / "state.db", "ALTER TABLE alerts ADD COLUMN notified_at TEXT")
    before = shape(path)
    with pytest.raises(StoreError, match="duplicate column name: notified_at"):
        await SqliteStore.open(path)
    assert shape(path) == before
    assert version(path) == "1"


# --------------------------------------------------------------------------- read-only (status)


async def test_a_read_only_open_creates_no_file(tmp_path: Path) -> None:
    """Without a writer (no -wal file), reading leaves no -wal or -shm file behind, and a
    missing database is an error, not a new file."""
    path = tmp_path / "state.db"
    writer = await SqliteStore.open(path)
    await commit_poll(writer, SOURCE, poll=PollRecord(T0, ok=True), health=SourceHealth())
    await writer.close()
    before = names(tmp_path)

    reader = await SqliteStore.open(path, readonly=True)
    try:
        assert [r.source for r in await reader.sources()] == [SOURCE]
    finally:
        await reader.close()
    with pytest.raises(StoreError, match="cannot read the state database"):
        await SqliteStore.open(tmp_path / "missing.db", readonly=True)

    assert before == ["state.db"]
    assert names(tmp_path) == before


async def test_a_read_only_store_beside_the_daemon_reads_what_it_committed(
    tmp_path: Path,
) -> None:
    """While a writer has the file open (a -wal file exists), a read-only store sees every
    committed poll, and cannot write."""
    path = tmp_path / "state.db"
    writer = await SqliteStore.open(path)
    try:
        await commit_poll(writer, SOURCE, poll=PollRecord(T0, ok=True), health=SourceHealth())
        reader = await SqliteStore.open(path, readonly=True)
        try:
            await commit_poll(writer, SOURCE, poll=PollRecord(T1, ok=True), health=SourceHealth())
            assert [(r.source, r.polls) for r in await reader.sources()] == [(SOURCE, 2)]
            with pytest.raises(StoreError, match="readonly"):
                await queue_notification(reader, SOURCE, make_notification(), ["log"], T0)
        finally:
            await reader.close()
    finally:
        await writer.close()


async def test_status_reads_a_schema_1_database_without_changing_it(tmp_path: Path) -> None:
    """``status`` opens read-only: a schema-1 file is read as it is (its alert firing, no
    pending alerts, nothing held) and stays schema 1."""
    path = schema_1(tmp_path / "state.db")
    store = await SqliteStore.open(path, readonly=True)
    try:
        data = await status.collect(store, T0)
    finally:
        await store.close()

    assert [(a["rule"], a["account_number"]) for a in data["alerts_firing"]] == [("low-cash", "A1")]
    assert data["alerts_pending"] == []
    assert data["mutes"] == []
    assert "alerts firing: 1" in status.render(data)
    assert version(path) == "1"
    assert "state" not in columns(path, "alerts")


async def test_digest_print_reads_a_schema_1_database_without_changing_it(tmp_path: Path) -> None:
    """``digest NAME --print`` before the daemon migrated: what an old schema has (the
    accounts, the alerts firing), nothing it lacks (history, the record, departed)."""
    path = schema_1(tmp_path / "state.db")
    store = await SqliteStore.open(path, readonly=True)
    try:
        data = await store.digest_data(since=T0.timestamp() - 86400, until=T0.timestamp())
    finally:
        await store.close()
    assert [f.rule for f in data.firing] == ["low-cash"]
    assert (data.alerts, data.polls, data.departed) == ((), (), ())
    assert version(path) == "1"
