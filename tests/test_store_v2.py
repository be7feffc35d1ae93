"""Schema 2 of the state database, on real files: the migration from schema 1, alert states
(``pending``, ``notified_at``), the history of windowed fields, held notifications, and what
the outbox keeps for sinks that restore."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sinks_helpers import make_notification
from store_helpers import commit_poll, queue_notification, sqlite_query

from monitor import status
from monitor.cycle import PollRecord
from monitor.models import ActiveAlert, Notification, Status
from monitor.rules import AlertKey, SourceHealth
from monitor.store import KEEP_FINISHED_SECONDS, SCHEMA_VERSION, SqliteStore, Store

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

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


def schema_1(path: Path) -> Path:
    """A schema-1 database with one account and its firing alert, built by hand."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_1)
    finally:
        conn.close()
    return path


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def version(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------- migration


async def test_opening_a_schema_1_database_migrates_it(tmp_path: Path) -> None:
    """Store.open adds the alert columns and the new tables and records version 2; the old
    alert loads as firing, the account and the source's last success are kept."""
    path = schema_1(tmp_path / "state.db")
    store = await SqliteStore.open(path)
    try:
        state = await store.load_source(SOURCE)
        tables = {r[0] for r in await sqlite_query(store, "SELECT name FROM sqlite_master")}
    finally:
        await store.close()

    assert SCHEMA_VERSION == 2
    assert version(path) == "2"
    assert {"history", "held"} <= tables
    assert columns(path, "alerts")[-2:] == ["state", "notified_at"]
    assert state.active == {
        ("low-cash", "A1"): ActiveAlert(
            "low-cash", "A1", "fp-1", T0 - timedelta(minutes=2), "firing", None
        )
    }
    assert state.accounts is not None
    assert state.accounts["A1"].get("cash") == Decimal("500.00")
    assert state.last_success_at == T0 - timedelta(minutes=1)
    assert state.history == {}


async def test_a_migrated_database_opens_again_unchanged(tmp_path: Path) -> None:
    """Migrating is done once: a second open finds version 2 and changes nothing."""
    path = schema_1(tmp_path / "state.db")
    await (await SqliteStore.open(path)).close()
    store = await SqliteStore.open(path)
    try:
        rows = await sqlite_query(store, "SELECT rule, state, notified_at FROM alerts")
    finally:
        await store.close()
    assert rows == [("low-cash", "firing", None)]
    assert version(path) == "2"


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


# --------------------------------------------------------------------------- alert states


async def test_pending_alerts_and_notified_at_round_trip(store: Store) -> None:
    """A pending alert (no fingerprint yet) and a firing one with the time of its last
    notification are written and loaded back as they were."""
    pending = ActiveAlert("slow", "A1", "", T0, "pending")
    firing = ActiveAlert("low-cash", "A2", "fp-2", T0, "firing", T0 + timedelta(hours=1))
    active: dict[AlertKey, ActiveAlert] = {("slow", "A1"): pending, ("low-cash", "A2"): firing}
    await commit_poll(
        store, SOURCE, poll=PollRecord(T0, ok=True), health=SourceHealth(), active=active
    )
    assert (await store.load_source(SOURCE)).active == active
    assert sorted(await sqlite_query(store, "SELECT rule, state, notified_at FROM alerts")) == [
        ("low-cash", "firing", (T0 + timedelta(hours=1)).isoformat()),
        ("slow", "pending", None),
    ]


async def test_only_changed_alert_rows_are_written(store: Store) -> None:
    """With ``active_before``, an alert that went away is deleted and one whose
    ``notified_at`` moved is updated; the others are left alone."""
    one = ActiveAlert("low-cash", "A1", "fp-1", T0, "firing", T0)
    two = ActiveAlert("low-cash", "A2", "fp-2", T0, "firing", T0)
    before: dict[AlertKey, ActiveAlert] = {("low-cash", "A1"): one, ("low-cash", "A2"): two}
    poll = PollRecord(T0, ok=True)
    await commit_poll(store, SOURCE, poll=poll, health=SourceHealth(), active=before)
    later = T0 + timedelta(hours=1)
    after: dict[AlertKey, ActiveAlert] = {("low-cash", "A1"): replace(one, notified_at=later)}
    await commit_poll(
        store, SOURCE, poll=poll, health=SourceHealth(), active=after, active_before=before
    )
    assert (await store.load_source(SOURCE)).active == after


# --------------------------------------------------------------------------- history


async def test_history_is_added_deleted_and_loaded_per_source(store: Store) -> None:
    """History points land in the poll's transaction, deletions remove exact points, and
    load_source returns the source's own, oldest first, with exact decimals."""
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    poll = PollRecord(T0, ok=True)
    await commit_poll(
        store,
        SOURCE,
        poll=poll,
        health=SourceHealth(),
        history=[
            ("A1", "cash", t1, Decimal("900.50")),
            ("A1", "cash", T0, Decimal("1000.00")),
            ("A2", "equity", T0, 7),
        ],
    )
    await commit_poll(
        store, "other", poll=poll, health=SourceHealth(), history=[("A1", "cash", T0, Decimal("1"))]
    )
    assert (await store.load_source(SOURCE)).history == {
        ("A1", "cash"): [(T0, Decimal("1000.00")), (t1, Decimal("900.50"))],
        ("A2", "equity"): [(T0, 7)],
    }

    await commit_poll(
        store,
        SOURCE,
        poll=poll,
        health=SourceHealth(),
        history=[("A1", "cash", t2, Decimal("800"))],
        history_deletes=[("A1", "cash", T0, Decimal("1000.00")), ("A2", "equity", T0, 7)],
    )
    assert (await store.load_source(SOURCE)).history == {
        ("A1", "cash"): [(t1, Decimal("900.50")), (t2, Decimal("800"))]
    }


# --------------------------------------------------------------------------- held


def note(nid: str, fp: str = "fp-1", status: Status = Status.FIRING) -> Notification:
    return replace(
        make_notification(fingerprint=fp, status=status, observed_at=T0, started_at=T0), id=nid
    )


async def test_release_queues_and_forgets_in_one_transaction(store: Store) -> None:
    """``release`` queues the released notifications for their sink and deletes the settled
    held rows (also those released to nobody); releasing twice queues nothing new."""
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True),
        health=SourceHealth(),
        held=[(note("n1"), ["ops", "audit"], "night"), (note("n1"), ["ops"], "night")],
    )
    rows = await store.held()
    assert [(r.id, r.sink, r.mute, r.created_at) for r in rows] == [
        ("n1", "ops", "night", T0.timestamp()),
        ("n1", "audit", "night", T0.timestamp()),
    ]
    released = [(note("n1"), "ops", SOURCE)]
    later = (T0 + timedelta(hours=1)).timestamp()
    await store.release(released, [r.seq for r in rows], later)
    await store.release(released, [], later)

    assert await store.held() == []
    assert await sqlite_query(store, "SELECT id, sink, state, created_at FROM outbox") == [
        ("n1", "ops", "pending", later)
    ]


async def test_a_failed_release_changes_nothing(store: Store) -> None:
    """A release that fails half-way (a payload that cannot be written) queues nothing and
    leaves the held rows in place."""
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True),
        health=SourceHealth(),
        held=[(note("n1"), ["ops"], "night")],
    )
    rows = await store.held()
    bad = Notification("n2", replace(note("n2").alert, observed_at=datetime(2024, 5, 1)))  # noqa: DTZ001 - naive on purpose: its payload cannot be written
    with pytest.raises(ValueError, match="naive"):
        await store.release([(note("n1"), "ops", SOURCE), (bad, "ops", SOURCE)], [1], 0.0)
    assert [r.seq for r in await store.held()] == [r.seq for r in rows]
    assert await sqlite_query(store, "SELECT count(*) FROM outbox") == [(0,)]


# --------------------------------------------------------------------------- firing_deliveries


async def deliver(store: Store, n: Notification, sink: str, state: str = "delivered") -> None:
    await queue_notification(store, SOURCE, n, [sink], T0)
    [(seq,)] = await sqlite_query(store, "SELECT seq FROM outbox WHERE id=? AND sink=?", n.id, sink)
    if state != "pending":
        await store.mark(seq, state, now=T0.timestamp())


async def firing(store: Store, *alerts: ActiveAlert, down: ActiveAlert | None = None) -> None:
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True),
        health=SourceHealth(1 if down else 0, down),
        active={(a.rule, a.account_number): a for a in alerts},
    )


async def test_firing_deliveries_are_the_last_firing_sent_per_alert_still_firing(
    store: Store,
) -> None:
    """Per alert still firing (``source_down`` included): the last delivered firing
    notification to that sink. Not: an alert resolved since, a pending one, an undelivered
    notification, another sink's."""
    await firing(
        store,
        ActiveAlert("low-cash", "A1", "fp-1", T0),
        ActiveAlert("low-cash", "A2", "fp-2", T0),
        ActiveAlert("slow", "A3", "", T0, "pending"),
        down=ActiveAlert("source_down", None, "fp-down", T0),
    )
    await deliver(store, note("a1-first", "fp-1"), "am")
    await deliver(store, note("a1-repeat", "fp-1"), "am")
    await deliver(store, note("a1-failed", "fp-1"), "am", state="failed")
    await deliver(store, note("a2-queued", "fp-2"), "am", state="pending")
    await deliver(store, note("a2-other", "fp-2"), "other")
    await deliver(store, note("gone", "fp-gone"), "am")
    await deliver(store, note("down", "fp-down"), "am")

    got = await store.firing_deliveries("am")

    assert sorted(n.id for n in got) == ["a1-repeat", "down"]
    assert [n.id for n in await store.firing_deliveries("other")] == ["a2-other"]
    assert await store.firing_deliveries("nobody") == []


async def test_firing_deliveries_skip_resolved_notifications(store: Store) -> None:
    """A delivered resolved notification is never handed back as firing."""
    await firing(store, ActiveAlert("low-cash", "A1", "fp-1", T0))
    await deliver(store, note("fired", "fp-1"), "am")
    await deliver(store, note("ended", "fp-1", Status.RESOLVED), "am")
    assert [n.id for n in await store.firing_deliveries("am")] == ["fired"]


async def test_pruning_keeps_the_rows_of_alerts_still_firing(store: Store) -> None:
    """After seven days finished rows are pruned, except those of alerts still firing (a
    restoring sink needs them); a pending row is never pruned."""
    await firing(store, ActiveAlert("low-cash", "A1", "fp-1", T0))
    await deliver(store, note("still", "fp-1"), "am")
    await deliver(store, note("over", "fp-old"), "am")
    await deliver(store, note("failed", "fp-old2"), "am", state="failed")
    now = T0.timestamp() + KEEP_FINISHED_SECONDS + 60
    await store.expire(older_than=0.0, now=now)
    assert await sqlite_query(store, "SELECT id FROM outbox ORDER BY seq") == [("still",)]
    assert [n.id for n in await store.firing_deliveries("am")] == ["still"]


async def test_pruning_leaves_rows_younger_than_seven_days(store: Store) -> None:
    await deliver(store, note("over", "fp-old"), "am")
    await store.expire(older_than=0.0, now=T0.timestamp() + KEEP_FINISHED_SECONDS - 60)
    assert await sqlite_query(store, "SELECT id FROM outbox") == [("over",)]


# --------------------------------------------------------------------------- next_batch


async def test_next_batch_takes_the_due_pending_rows_in_order_up_to_a_limit(store: Store) -> None:
    """Only pending rows of the sink that are due, oldest first, at most ``limit``."""
    for nid in ("n1", "n2", "n3", "n4", "n5"):
        await queue_notification(store, SOURCE, note(nid, fp=f"fp-{nid}"), ["chat", "other"], T0)
    seqs = dict(await sqlite_query(store, "SELECT id, seq FROM outbox WHERE sink='chat'"))
    now = T0.timestamp()
    await store.mark(seqs["n2"], "delivered", now=now)
    await store.mark(seqs["n3"], "pending", now=now, next_attempt_at=now + 60)

    assert [r.id for r in await store.next_batch("chat", limit=10, now=now)] == ["n1", "n4", "n5"]
    assert [r.id for r in await store.next_batch("chat", limit=2, now=now)] == ["n1", "n4"]
    due = await store.next_batch("chat", limit=10, now=now + 60)
    assert [r.id for r in due] == ["n1", "n3", "n4", "n5"]
    assert due[1].attempts == 1
    assert due[0].notification() == note("n1", fp="fp-n1")
