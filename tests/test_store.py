"""The SQLite state database, on real files in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from store_helpers import commit_poll, queue_notification, sqlite_query

from monitor.cycle import PollRecord
from monitor.errors import StoreError
from monitor.models import Account, ActiveAlert, Alert, Notification, Severity, Status
from monitor.parse import parse_records
from monitor.rules import SourceHealth
from monitor.store import KEEP_FINISHED_SECONDS, SCHEMA_VERSION, SqliteStore, Store

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)


def accounts(*records: dict[str, Any]) -> list[Account]:
    """Accounts as the parser makes them (money as ``Decimal``, records read-only)."""
    result = parse_records(list(records))
    assert not result.problems
    return list(result.accounts.values())


def record(number: str, cash: str = "100.00", **extra: Any) -> dict[str, Any]:
    return {"account_number": number, "cash": Decimal(cash), **extra}


def notification(nid: str, *, current: Any = Decimal("512.25")) -> Notification:
    alert = Alert(
        status=Status.FIRING,
        fingerprint=f"fp-{nid}",
        rule="low-cash",
        type="threshold",
        severity=Severity.CRITICAL,
        account_number="A1",
        field="cash",
        previous=Decimal("1500.00"),
        current=current,
        summary="A1: cash fell to 512.25 (< 1000)",
        observed_at=T0,
        snapshot={"account_number": "A1", "cash": Decimal("512.25")},
    )
    return Notification(nid, alert)


def ok(at: datetime = T0, count: int | None = None) -> PollRecord:
    return PollRecord(at, ok=True, account_count=count)


async def enqueue(store: Store, nid: str, sinks: Sequence[str], at: datetime = T0) -> None:
    await queue_notification(store, SOURCE, notification(nid), sinks, at)


async def states(store: Store) -> dict[tuple[str, str], str]:
    rows = await sqlite_query(store, "SELECT id, sink, state FROM outbox")
    return {(nid, sink): state for nid, sink, state in rows}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[Store]:
    store = await SqliteStore.open(path)
    try:
        yield store
    finally:
        await store.close()


# --------------------------------------------------------------------------- lifecycle


async def test_open_creates_the_schema_in_wal_mode(store: Store) -> None:
    """Opening a new file creates every table, records the schema version and uses WAL."""
    tables = {
        name
        for (name,) in await sqlite_query(
            store, "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"meta", "accounts", "sources", "alerts", "outbox"} <= tables
    assert await sqlite_query(store, "PRAGMA journal_mode") == [("wal",)]
    assert await sqlite_query(store, "SELECT value FROM meta WHERE key='schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


async def test_open_creates_missing_folders(tmp_path: Path) -> None:
    """The database's folder is created when it does not exist yet."""
    store = await SqliteStore.open(tmp_path / "a" / "b" / "state.db")
    await store.close()
    assert (tmp_path / "a" / "b" / "state.db").is_file()


async def test_reopening_keeps_the_data(path: Path) -> None:
    """What one store committed, the next store on the same file reads back."""
    store = await SqliteStore.open(path)
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(), upserts=accounts(record("A"))
    )
    await store.close()
    store = await SqliteStore.open(path)
    try:
        state = await store.load_source(SOURCE)
    finally:
        await store.close()
    assert state.accounts is not None
    assert list(state.accounts) == ["A"]


async def test_a_newer_schema_version_is_refused(path: Path) -> None:
    """A database written by a newer release is not touched: StoreError says so."""
    store = await SqliteStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer balance-monitor"):
        await SqliteStore.open(path)


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


async def test_use_after_close_is_a_store_error(path: Path) -> None:
    """A closed store refuses every call with StoreError; closing twice is harmless."""
    store = await SqliteStore.open(path)
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load_source(SOURCE)
    with pytest.raises(StoreError, match="closed"):
        await store.pending()


async def test_sqlite_errors_are_translated(store: Store, path: Path) -> None:
    """An error from sqlite3 reaches the caller as StoreError, chained to the original."""
    with sqlite3.connect(path) as other:
        other.execute("DROP TABLE held")
    other.close()
    with pytest.raises(StoreError, match="no such table") as caught:
        await store.held()
    assert isinstance(caught.value.__cause__, sqlite3.Error)


# --------------------------------------------------------------------------- sources


async def test_load_source_before_any_successful_poll_has_no_baseline(store: Store) -> None:
    """A source never polled successfully loads with ``accounts=None`` and no alerts."""
    state = await store.load_source(SOURCE)
    assert state.accounts is None
    assert state.health == SourceHealth()
    assert state.active == {}


async def test_load_source_returns_the_stored_accounts_exactly(store: Store) -> None:
    """Stored accounts come back equal, money as the same ``Decimal`` digits, extras kept."""
    stored = accounts(
        record("B", "0.10", daytrades_count=3, margin_type="cash"),
        record("A", "2524.54", unsettled_cash=Decimal("100"), vendor_field={"x": [1, "y"]}),
        record("C", "-12.345678901234567890"),
    )
    await commit_poll(store, SOURCE, poll=ok(count=3), health=SourceHealth(), upserts=stored)
    state = await store.load_source(SOURCE)
    assert state.accounts == {a.account_number: a for a in stored}
    assert [str(a.get("cash")) for a in state.accounts.values()] == [
        "2524.54",
        "0.10",
        "-12.345678901234567890",
    ]
    assert isinstance(state.accounts["B"].get("daytrades_count"), int)
    assert state.accounts["A"].get("vendor_field") == {"x": [1, "y"]}


async def test_a_successful_poll_without_accounts_is_still_a_baseline(store: Store) -> None:
    """An empty but successful poll records an empty baseline, not 'no baseline'."""
    await commit_poll(store, SOURCE, poll=ok(count=0), health=SourceHealth())
    assert (await store.load_source(SOURCE)).accounts == {}


async def test_a_failed_poll_does_not_mark_a_baseline(store: Store) -> None:
    """Failed polls count toward health but leave the source without a baseline."""
    health = SourceHealth(failures=2)
    await commit_poll(store, SOURCE, poll=PollRecord(T0, ok=False, error="HTTP 500"), health=health)
    state = await store.load_source(SOURCE)
    assert state.accounts is None
    assert state.health == health
    assert await sqlite_query(
        store, "SELECT polls, last_result, last_error, last_success_at FROM sources"
    ) == [(1, "failed", "HTTP 500", None)]


async def test_commit_poll_writes_only_the_given_upserts_and_deletes(store: Store) -> None:
    """Accounts not named in a poll keep their row as it was; deleted ones are gone."""
    await commit_poll(
        store,
        SOURCE,
        poll=ok(T0),
        health=SourceHealth(),
        upserts=accounts(record("A"), record("B"), record("C")),
    )
    await commit_poll(
        store,
        SOURCE,
        poll=ok(T1),
        health=SourceHealth(),
        upserts=accounts(record("B", "55.50")),
        deletes=["C"],
    )
    rows = await sqlite_query(
        store, "SELECT account_number, record, observed_at FROM accounts ORDER BY account_number"
    )
    assert rows == [
        ("A", '{"account_number":"A","cash":100.00}', T0.isoformat()),
        ("B", '{"account_number":"B","cash":55.50}', T1.isoformat()),
    ]
    assert await sqlite_query(store, "SELECT polls, last_result FROM sources") == [(2, "ok")]


async def test_sources_do_not_share_accounts(store: Store) -> None:
    """Rows are per source: another source's accounts are neither read nor deleted."""
    await commit_poll(store, "one", poll=ok(), health=SourceHealth(), upserts=accounts(record("A")))
    await commit_poll(
        store, "two", poll=ok(), health=SourceHealth(), upserts=accounts(record("B")), deletes=["A"]
    )
    one, two = await store.load_source("one"), await store.load_source("two")
    assert one.accounts is not None
    assert list(one.accounts) == ["A"]
    assert two.accounts is not None
    assert list(two.accounts) == ["B"]


async def test_alerts_round_trip(store: Store) -> None:
    """Rule alerts and the source_down alert come back as they were committed."""
    low = ActiveAlert("low-cash", "A", "fp-low", T0)
    down = ActiveAlert("source_down", None, "fp-down", T1)
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T1, ok=False, error="timed out"),
        health=SourceHealth(3, down),
        active={("low-cash", "A"): low},
    )
    state = await store.load_source(SOURCE)
    assert state.active == {("low-cash", "A"): low}
    assert state.health == SourceHealth(3, down)
    assert state.health.down is not None
    assert state.health.down.started_at == T1


async def test_alerts_are_kept_unless_replaced(store: Store) -> None:
    """``active=None`` keeps the rule alerts; a mapping replaces them; health owns source_down."""
    low = ActiveAlert("low-cash", "A", "fp-low", T0)
    down = ActiveAlert("source_down", None, "fp-down", T0)
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(3, down), active={("low-cash", "A"): low}
    )
    await commit_poll(store, SOURCE, poll=ok(T1), health=SourceHealth(3, down), active=None)
    state = await store.load_source(SOURCE)
    assert state.active == {("low-cash", "A"): low}
    assert state.health.down == down

    await commit_poll(store, SOURCE, poll=ok(T1), health=SourceHealth(), active={})
    state = await store.load_source(SOURCE)
    assert state.active == {}
    assert state.health == SourceHealth()


async def test_commit_poll_is_atomic(store: Store) -> None:
    """A failure mid-commit writes nothing at all, and the store stays usable."""
    down = ActiveAlert("source_down", None, "fp-down", T0)
    unencodable = notification("n1", current=object())
    with pytest.raises(TypeError, match="cannot encode"):
        await commit_poll(
            store,
            SOURCE,
            poll=ok(count=1),
            health=SourceHealth(0, down),
            upserts=accounts(record("A")),
            active={("low-cash", "A"): ActiveAlert("low-cash", "A", "fp", T0)},
            outbox=[(notification("n0"), ["log"]), (unencodable, ["log"])],
        )
    for table in ("accounts", "sources", "alerts", "outbox"):
        assert await sqlite_query(store, f"SELECT count(*) FROM {table}") == [(0,)]  # noqa: S608
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(), upserts=accounts(record("A"))
    )
    assert (await store.load_source(SOURCE)).accounts is not None


# --------------------------------------------------------------------------- outbox


async def test_commit_poll_queues_one_row_per_sink(store: Store) -> None:
    """Each notification is queued once for every sink it goes to."""
    await commit_poll(
        store,
        SOURCE,
        poll=ok(),
        health=SourceHealth(),
        outbox=[(notification("n1"), ["slack", "log"]), (notification("n2"), ["log"])],
    )
    assert await states(store) == {
        ("n1", "slack"): "pending",
        ("n1", "log"): "pending",
        ("n2", "log"): "pending",
    }


async def test_outbox_insert_is_idempotent_on_id_and_sink(store: Store) -> None:
    """Queueing the same notification for the same sink again adds nothing, nor resets it."""
    await enqueue(store, "n1", ["log"])
    row = await store.next_pending("log")
    assert row is not None
    await store.mark(row.seq, "delivered", now=T0.timestamp())
    await enqueue(store, "n1", ["log", "slack"])
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(), outbox=[(notification("n1"), ["log"])]
    )
    assert await states(store) == {("n1", "log"): "delivered", ("n1", "slack"): "pending"}


async def test_next_pending_is_fifo_per_sink(store: Store) -> None:
    """Each sink gets its own oldest pending row first, whatever other sinks hold."""
    await enqueue(store, "n1", ["a", "b"])
    await enqueue(store, "n2", ["a"])
    await enqueue(store, "n3", ["b"])
    await enqueue(store, "n4", ["a"])
    seen: dict[str, list[str]] = {"a": [], "b": []}
    for sink in ("a", "b"):
        while (row := await store.next_pending(sink)) is not None:
            seen[sink].append(row.id)
            await store.mark(row.seq, "delivered", now=T1.timestamp())
    assert seen == {"a": ["n1", "n2", "n4"], "b": ["n1", "n3"]}
    assert await store.next_pending("c") is None


async def test_outbox_rows_give_back_the_notification(store: Store) -> None:
    """A queued row decodes to the notification that was queued, money exact."""
    await enqueue(store, "n1", ["log"])
    row = await store.next_pending("log")
    assert row is not None
    assert (row.id, row.sink, row.source, row.attempts) == ("n1", "log", SOURCE, 0)
    assert row.created_at == row.next_attempt_at == T0.timestamp()
    assert row.notification() == replace(
        notification("n1"), alert=replace(notification("n1").alert, source=SOURCE)
    )
    assert row.payload["current"] == Decimal("512.25")


async def test_mark_records_each_outcome(store: Store) -> None:
    """``pending`` counts an attempt and moves its next try; ``failed`` ends it; ``expired``
    is not an attempt."""
    await enqueue(store, "n1", ["log"])
    await enqueue(store, "n2", ["log"])
    first = await store.next_pending("log")
    assert first is not None
    now = T1.timestamp()
    await store.mark(first.seq, "pending", now=now, error="HTTP 503", next_attempt_at=now + 4)
    again = await store.next_pending("log")
    assert again is not None
    assert (again.id, again.attempts, again.next_attempt_at) == ("n1", 1, now + 4)
    await store.mark(first.seq, "failed", now=now + 4, error="HTTP 400")
    second = await store.next_pending("log")
    assert second is not None
    assert second.id == "n2"
    await store.mark(second.seq, "expired", now=now + 5)
    assert await store.next_pending("log") is None
    assert await sqlite_query(
        store,
        "SELECT id, state, attempts, last_error, next_attempt_at, updated_at FROM outbox"
        " ORDER BY seq",
    ) == [
        ("n1", "failed", 2, "HTTP 400", now + 4, now + 4),
        ("n2", "expired", 0, None, T0.timestamp(), now + 5),
    ]


async def test_mark_delivered_keeps_the_row_for_status(store: Store) -> None:
    """A delivered row stays in the outbox (not pending) until it is pruned."""
    await enqueue(store, "n1", ["log"])
    row = await store.next_pending("log")
    assert row is not None
    await store.mark(row.seq, "delivered", now=T1.timestamp())
    assert await states(store) == {("n1", "log"): "delivered"}
    assert await store.pending() == 0


async def test_retry_now_makes_every_pending_row_due(store: Store) -> None:
    """Pending rows waiting for a later attempt become due now; others are left alone."""
    await enqueue(store, "n1", ["a"])
    await enqueue(store, "n2", ["b"])
    now = T1.timestamp()
    first = await store.next_pending("a")
    assert first is not None
    await store.mark(first.seq, "pending", now=now, next_attempt_at=now + 300)
    await store.retry_now(now)
    assert await sqlite_query(store, "SELECT id, next_attempt_at FROM outbox ORDER BY seq") == [
        ("n1", now),
        ("n2", T0.timestamp()),
    ]


async def test_pending_counts_all_or_some_sinks(store: Store) -> None:
    """``pending()`` counts every pending row, ``pending(sinks)`` those of the named sinks."""
    await enqueue(store, "n1", ["a", "b"])
    await enqueue(store, "n2", ["a"])
    await enqueue(store, "n3", ["gone"])
    assert await store.pending() == 4
    assert await store.pending(["a"]) == 2
    assert await store.pending(["a", "b"]) == 3
    assert await store.pending([]) == 0
    assert await store.outbox_sinks() == {"a", "b", "gone"}


async def test_expire_marks_old_pending_rows_and_prunes_old_finished_ones(store: Store) -> None:
    """Pending rows created before the cutoff expire (and are returned); finished rows older
    than the keep period are deleted; the rest is untouched."""
    old = T0 - timedelta(seconds=KEEP_FINISHED_SECONDS + 60)
    await enqueue(store, "done-long-ago", ["log"], old)
    done = await store.next_pending("log")
    assert done is not None
    await store.mark(done.seq, "delivered", now=old.timestamp())
    await enqueue(store, "stale", ["log"], old)
    await enqueue(store, "done-recently", ["slack"], T0)
    recent = await store.next_pending("slack")
    assert recent is not None
    await store.mark(recent.seq, "failed", now=T0.timestamp())
    await enqueue(store, "fresh", ["log"], T1)

    expired = await store.expire(older_than=T0.timestamp(), now=T1.timestamp())

    assert [r.id for r in expired] == ["stale"]
    assert await states(store) == {
        ("stale", "log"): "expired",
        ("done-recently", "slack"): "failed",
        ("fresh", "log"): "pending",
    }
    assert await store.expire(older_than=T0.timestamp(), now=T1.timestamp()) == []
