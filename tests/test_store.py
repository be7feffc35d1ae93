"""The Store, written once against its Protocol: each test runs on every ``backend``.

What a backend does on its own (SQLite files, WAL, the read-only open, the migration from an
older schema, how values are stored) is in ``test_store_sqlite.py``. Where a test needs what
the Store does not read back (the state of delivered and failed outbox rows) it asks the
backend for the rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sinks_helpers import make_notification
from store_helpers import Backend, commit_poll, queue_notification

from monitor.cycle import Departed, PollRecord
from monitor.errors import StoreError
from monitor.models import Account, ActiveAlert, Alert, Notification, Severity, Status
from monitor.parse import parse_records
from monitor.rules import AlertKey, SourceHealth
from monitor.store import (
    KEEP_FINISHED_SECONDS,
    AlertRow,
    OutboxSummary,
    SinkQueue,
    SourceRow,
    Store,
    schema,
)

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)
FAR = T0.timestamp() + 10 * 365 * 86400  # a `now` at which every pending row is due


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """A store on a new database of each backend, closed afterwards."""
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


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


def note(nid: str, fp: str = "fp-1", status: Status = Status.FIRING) -> Notification:
    return replace(
        make_notification(fingerprint=fp, status=status, observed_at=T0, started_at=T0), id=nid
    )


def ok(at: datetime = T0, count: int | None = None) -> PollRecord:
    return PollRecord(at, ok=True, account_count=count)


async def enqueue(store: Store, nid: str, sinks: Sequence[str], at: datetime = T0) -> None:
    await queue_notification(store, SOURCE, notification(nid), sinks, at)


async def states(backend: Backend) -> dict[tuple[str, str], str]:
    """``(id, sink) -> state`` of every outbox row, finished ones included."""
    rows = await backend.rows("SELECT id, sink, state FROM outbox")
    return {(nid, sink): state for nid, sink, state in rows}


# --------------------------------------------------------------------------- lifecycle


async def test_a_new_store_is_empty(store: Store) -> None:
    """A new database has no source, alert, outbox or held row."""
    assert await store.sources() == []
    assert await store.alerts() == []
    assert await store.pending() == 0
    assert await store.outbox_sinks() == set()
    assert await store.outbox_summary() == OutboxSummary((), 0)
    assert await store.held() == []
    assert await store.held_count() == 0
    assert await store.held_by_mute() == {}


async def test_reopening_keeps_the_data(backend: Backend) -> None:
    """What one store committed, the next store on the same database reads back."""
    store = await backend.open()
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(), upserts=accounts(record("A"))
    )
    await store.close()
    store = await backend.open()
    try:
        state = await store.load_source(SOURCE)
    finally:
        await store.close()
    assert state.accounts is not None
    assert list(state.accounts) == ["A"]


async def test_use_after_close_is_a_store_error(backend: Backend) -> None:
    """A closed store refuses every call with StoreError; closing twice is harmless."""
    store = await backend.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load_source(SOURCE)
    with pytest.raises(StoreError, match="closed"):
        await store.pending()


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
    assert await store.sources() == [
        SourceRow(SOURCE, T0, "failed", "HTTP 500", None, 2, None, 1, 0)
    ]


async def test_commit_poll_writes_only_the_given_upserts_and_deletes(store: Store) -> None:
    """Accounts not named in a poll keep what they were; upserted ones change; deleted ones
    are gone. The source records both polls and the last success."""
    first = accounts(record("A"), record("B"), record("C"))
    await commit_poll(store, SOURCE, poll=ok(T0, 3), health=SourceHealth(), upserts=first)
    changed = accounts(record("B", "55.50"))
    await commit_poll(
        store,
        SOURCE,
        poll=ok(T1),
        health=SourceHealth(),
        upserts=changed,
        deletes=["C"],
    )
    state = await store.load_source(SOURCE)
    assert state.accounts == {"A": first[0], "B": changed[0]}
    assert state.last_success_at == T1
    assert await store.sources() == [SourceRow(SOURCE, T1, "ok", None, T1, 0, 3, 2, 2)]


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
    assert [(r.source, r.accounts_known) for r in await store.sources()] == [("one", 1), ("two", 1)]


async def test_departed_accounts_are_kept_per_source_until_forgotten(store: Store) -> None:
    """An account that left is kept with its last record and when it left, for its source
    only and not among its accounts; once forgotten (it came back) it is gone from them."""
    first = accounts(record("A", vendor_field={"x": [1]}), record("B"))
    await commit_poll(store, SOURCE, poll=ok(T0, 2), health=SourceHealth(), upserts=first)
    await commit_poll(
        store,
        SOURCE,
        poll=ok(T1, 1),
        health=SourceHealth(),
        deletes=["A"],
        departed=[first[0]],
    )
    await commit_poll(store, "other", poll=ok(T1, 0), health=SourceHealth())

    state = await store.load_source(SOURCE)
    assert state.accounts == {"B": first[1]}
    assert state.departed == {"A": Departed(first[0], T1)}
    assert (await store.load_source("other")).departed == {}
    assert [(r.source, r.accounts_known) for r in await store.sources()] == [
        ("default", 1),
        ("other", 0),
    ]

    later = T1 + timedelta(seconds=30)
    await commit_poll(
        store, SOURCE, poll=ok(later, 2), health=SourceHealth(), upserts=first[:1], forget=["A"]
    )
    state = await store.load_source(SOURCE)
    assert state.departed == {}
    assert state.accounts == {"A": first[0], "B": first[1]}


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
    state = await store.load_source(SOURCE)
    assert (state.accounts, state.health, state.active) == (None, SourceHealth(), {})
    assert await store.sources() == []
    assert await store.alerts() == []
    assert await store.pending() == 0
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(), upserts=accounts(record("A"))
    )
    assert (await store.load_source(SOURCE)).accounts is not None


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
    assert sorted((a.rule, a.state) for a in await store.alerts()) == [
        ("low-cash", "firing"),
        ("slow", "pending"),
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


async def test_alerts_lists_every_source_s_alerts_oldest_first(store: Store) -> None:
    """``alerts()`` has the rule alerts and source_down (no account) of every source, firing
    and pending, by start."""
    low = ActiveAlert("low-cash", "A1", "fp-1", T1)
    slow = ActiveAlert("slow", "A2", "", T0 + timedelta(seconds=10), "pending")
    await commit_poll(
        store, "one", poll=ok(), health=SourceHealth(), active={("low-cash", "A1"): low}
    )
    await commit_poll(
        store,
        "two",
        poll=ok(),
        health=SourceHealth(3, ActiveAlert("source_down", None, "fp-down", T0)),
        active={("slow", "A2"): slow},
    )
    assert await store.alerts() == [
        AlertRow("two", "source_down", None, "fp-down", T0, "firing"),
        AlertRow("two", "slow", "A2", "", T0 + timedelta(seconds=10), "pending"),
        AlertRow("one", "low-cash", "A1", "fp-1", T1, "firing"),
    ]


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


# --------------------------------------------------------------------------- outbox


async def test_commit_poll_queues_one_row_per_sink(store: Store) -> None:
    """Each notification is queued once for every sink it goes to, due at once."""
    await commit_poll(
        store,
        SOURCE,
        poll=ok(),
        health=SourceHealth(),
        outbox=[(notification("n1"), ["slack", "log"]), (notification("n2"), ["log"])],
    )
    now = T0.timestamp()
    assert [r.id for r in await store.next_batch("slack", limit=10, now=now)] == ["n1"]
    assert [r.id for r in await store.next_batch("log", limit=10, now=now)] == ["n1", "n2"]
    assert await store.pending() == 3


async def test_outbox_insert_is_idempotent_on_id_and_sink(store: Store, backend: Backend) -> None:
    """Queueing the same notification for the same sink again adds nothing, nor resets it."""
    await enqueue(store, "n1", ["log"])
    row = await store.next_pending("log")
    assert row is not None
    await store.mark(row.seq, "delivered", now=T0.timestamp())
    await enqueue(store, "n1", ["log", "slack"])
    await commit_poll(
        store, SOURCE, poll=ok(), health=SourceHealth(), outbox=[(notification("n1"), ["log"])]
    )
    assert await states(backend) == {("n1", "log"): "delivered", ("n1", "slack"): "pending"}


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


async def test_mark_records_each_outcome(store: Store, backend: Backend) -> None:
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
    assert await backend.rows(
        "SELECT id, state, attempts, last_error, next_attempt_at, updated_at FROM outbox"
        " ORDER BY seq"
    ) == [
        ("n1", "failed", 2, "HTTP 400", now + 4, now + 4),
        ("n2", "expired", 0, None, T0.timestamp(), now + 5),
    ]


async def test_mark_delivered_keeps_the_row_for_status(store: Store, backend: Backend) -> None:
    """A delivered row stays in the outbox (not pending) until it is pruned."""
    await enqueue(store, "n1", ["log"])
    row = await store.next_pending("log")
    assert row is not None
    await store.mark(row.seq, "delivered", now=T1.timestamp())
    assert await states(backend) == {("n1", "log"): "delivered"}
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
    due = [await store.next_pending(sink) for sink in ("a", "b")]
    assert [(r.id, r.next_attempt_at) for r in due if r is not None] == [
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


async def test_expire_marks_old_pending_rows_and_prunes_old_finished_ones(
    store: Store, backend: Backend
) -> None:
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
    assert await states(backend) == {
        ("stale", "log"): "expired",
        ("done-recently", "slack"): "failed",
        ("fresh", "log"): "pending",
    }
    assert await store.expire(older_than=T0.timestamp(), now=T1.timestamp()) == []


async def test_prune_history_deletes_the_rows_of_every_history_table_before_the_cutoff(
    store: Store, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every table ``[history] keep`` bounds loses its rows older than the cutoff, in one
    call; the count per table says what went. (The outbox stands in for a history table.)"""
    empty = await store.prune_history(before=T1.timestamp())  # nothing old: nothing goes
    assert empty == dict.fromkeys((t for t, _ in schema.HISTORY_TABLES), 0)
    monkeypatch.setattr(schema, "HISTORY_TABLES", (("outbox", "created_at"),))
    await enqueue(store, "old", ["log"], T0)
    await enqueue(store, "new", ["log"], T1)

    assert await store.prune_history(before=T1.timestamp()) == {"outbox": 1}

    assert await states(backend) == {("new", "log"): "pending"}
    assert await store.prune_history(before=T1.timestamp()) == {"outbox": 0}


async def test_next_batch_takes_the_due_pending_rows_in_order_up_to_a_limit(store: Store) -> None:
    """Only pending rows of the sink that are due, oldest first, at most ``limit``."""
    for nid in ("n1", "n2", "n3", "n4", "n5"):
        await queue_notification(store, SOURCE, note(nid, fp=f"fp-{nid}"), ["chat", "other"], T0)
    now = T0.timestamp()
    seqs = {r.id: r.seq for r in await store.next_batch("chat", limit=10, now=now)}
    await store.mark(seqs["n2"], "delivered", now=now)
    await store.mark(seqs["n3"], "pending", now=now, next_attempt_at=now + 60)

    assert [r.id for r in await store.next_batch("chat", limit=10, now=now)] == ["n1", "n4", "n5"]
    assert [r.id for r in await store.next_batch("chat", limit=2, now=now)] == ["n1", "n4"]
    due = await store.next_batch("chat", limit=10, now=now + 60)
    assert [r.id for r in due] == ["n1", "n3", "n4", "n5"]
    assert due[1].attempts == 1
    assert due[0].notification() == note("n1", fp="fp-n1")


async def test_outbox_summary_counts_each_sink_s_queue_and_what_failed(store: Store) -> None:
    """Per sink with pending rows: how many, the oldest, the most attempts; and how many rows
    failed or expired (delivered ones count nowhere)."""
    for nid, at in (("n1", T0), ("n2", T1)):
        await enqueue(store, nid, ["a", "b"], at)
    await enqueue(store, "n3", ["c"], T1)
    b1 = await store.next_pending("b")
    c3 = await store.next_pending("c")
    assert b1 is not None
    assert c3 is not None
    now = T1.timestamp()
    await store.mark(b1.seq, "failed", now=now)
    await store.mark(c3.seq, "delivered", now=now)
    await store.expire(older_than=T0.timestamp() + 1, now=now)  # n1 for a: still pending
    a2 = await store.next_pending("a")
    assert a2 is not None
    assert a2.id == "n2"
    await store.mark(a2.seq, "pending", now=now, next_attempt_at=now + 2)
    await store.mark(a2.seq, "pending", now=now, next_attempt_at=now + 4)

    assert await store.outbox_summary() == OutboxSummary(
        (SinkQueue("a", 1, now, 2), SinkQueue("b", 1, now, 0)), 2
    )


# --------------------------------------------------------------------------- mute windows


async def test_held_rows_are_one_per_sink_and_counted_per_window(store: Store) -> None:
    """A held delivery is kept once per sink with its window; counts are per window."""
    await commit_poll(
        store,
        SOURCE,
        poll=ok(),
        health=SourceHealth(),
        held=[(note("n1"), ["ops", "audit"], "night"), (note("n2", "fp-2"), ["ops"], "lunch")],
    )
    assert [(r.id, r.sink, r.mute) for r in await store.held()] == [
        ("n1", "ops", "night"),
        ("n1", "audit", "night"),
        ("n2", "ops", "lunch"),
    ]
    assert await store.held_count() == 3
    assert await store.held_by_mute() == {"lunch": 1, "night": 2}
    assert await store.pending() == 0


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
    queued = await store.next_batch("ops", limit=10, now=later)
    assert [(r.id, r.sink, r.created_at) for r in queued] == [("n1", "ops", later)]
    assert await store.pending() == 1


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
    assert await store.pending() == 0


# --------------------------------------------------------------------------- firing_deliveries


async def deliver(store: Store, n: Notification, sink: str, state: str = "delivered") -> None:
    await queue_notification(store, SOURCE, n, [sink], T0)
    [row] = [r for r in await store.next_batch(sink, limit=100, now=FAR) if r.id == n.id]
    if state != "pending":
        await store.mark(row.seq, state, now=T0.timestamp())


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


async def test_pruning_keeps_the_rows_of_alerts_still_firing(
    store: Store, backend: Backend
) -> None:
    """After seven days finished rows are pruned, except those of alerts still firing (a
    restoring sink needs them); a pending row is never pruned."""
    await firing(store, ActiveAlert("low-cash", "A1", "fp-1", T0))
    await deliver(store, note("still", "fp-1"), "am")
    await deliver(store, note("over", "fp-old"), "am")
    await deliver(store, note("failed", "fp-old2"), "am", state="failed")
    now = T0.timestamp() + KEEP_FINISHED_SECONDS + 60
    await store.expire(older_than=0.0, now=now)
    assert await backend.rows("SELECT id FROM outbox ORDER BY seq") == [("still",)]
    assert [n.id for n in await store.firing_deliveries("am")] == ["still"]


async def test_pruning_leaves_rows_younger_than_seven_days(store: Store, backend: Backend) -> None:
    await deliver(store, note("over", "fp-old"), "am")
    await store.expire(older_than=0.0, now=T0.timestamp() + KEEP_FINISHED_SECONDS - 60)
    assert await backend.rows("SELECT id FROM outbox") == [("over",)]


async def test_pruning_follows_the_keep_period_it_is_given(store: Store, backend: Backend) -> None:
    """``[delivery] keep_finished``: finished rows go once older than the period given."""
    await deliver(store, note("over", "fp-old"), "am")
    await store.expire(older_than=0.0, now=T0.timestamp() + 3000, keep_finished=3600)
    assert await backend.rows("SELECT id FROM outbox") == [("over",)]
    await store.expire(older_than=0.0, now=T0.timestamp() + 3700, keep_finished=3600)
    assert await backend.rows("SELECT id FROM outbox") == []


# --------------------------------------------------------------------------- the Telegram bot


async def test_a_bot_offset_is_kept_by_sink_and_never_moves_back(store: Store) -> None:
    """None before the first update; each bot its own; a stale (lower) write is ignored, so a
    replica handing over late cannot make the next one answer a command again."""
    assert await store.bot_offset("tg") is None
    await store.set_bot_offset("tg", 101, now=T0.timestamp())
    await store.set_bot_offset("other", 7, now=T0.timestamp())
    await store.set_bot_offset("tg", 100, now=T1.timestamp())
    assert await store.bot_offset("tg") == 101
    await store.set_bot_offset("tg", 102, now=T1.timestamp())
    assert (await store.bot_offset("tg"), await store.bot_offset("other")) == (102, 7)
