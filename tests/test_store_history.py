"""The dashboard's reads of the Store, on every ``backend``: each account's tracked fields over
time (``series``), the polls' outcomes, the last deliveries and the stored accounts; what
``[history] keep`` prunes; and the query code of the page, the API and ``history`` on top."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sinks_helpers import make_notification
from store_helpers import Backend, commit_poll, queue_notification

from monitor.cycle import PollRecord, SeriesPoint
from monitor.history import account_history, parse_moment
from monitor.models import Account, JSONValue
from monitor.rules import SourceHealth
from monitor.store import DeliveryRow, PollRow, SeriesRow, Store
from monitor.testing import EPOCH

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
t0 = T0.timestamp()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


async def poll(
    store: Store,
    minutes: float,
    *points: SeriesPoint,
    ok: bool = True,
    source: str = SOURCE,
) -> None:
    at = T0 + timedelta(minutes=minutes)
    await commit_poll(
        store,
        source,
        poll=PollRecord(at, ok=ok, error=None if ok else "HTTP 503"),
        health=SourceHealth(),
        series=list(points),
    )


async def accounts_now(store: Store, *records: dict[str, JSONValue], source: str = SOURCE) -> None:
    """The stored records (what a series holds after its last change)."""
    await commit_poll(
        store,
        source,
        poll=PollRecord(T0 - timedelta(hours=1), ok=True),
        health=SourceHealth(),
        upserts=[Account(str(r["account_number"]), r) for r in records],
    )


@pytest.mark.parametrize("compacted", [False, True])
async def test_series_are_the_points_of_the_range_and_the_value_in_force_at_its_start(
    store: Store, compacted: bool
) -> None:
    """A range gets its own points and, per series, the value in force at its start (the
    value before its first change since; the stored record when it has not changed since);
    other accounts, fields and sources stay out; values come back as written. Alike before
    and after the journal is compacted."""
    await accounts_now(
        store,
        {"account_number": "A1", "cash": None, "restriction": "none", "daytrades_count": 2},
        {"account_number": "A2", "cash": Decimal("5")},
    )
    await poll(store, 10, ("A1", "cash", Decimal("1000.00"), Decimal("900.50")))
    await poll(store, 20, ("A1", "cash", Decimal("900.50"), Decimal("800")))
    await poll(store, 30, ("A1", "cash", Decimal("800"), None))
    await poll(store, 20, ("A1", "cash", Decimal("0"), Decimal("1")), source="other")
    if compacted:
        assert await store.compact_history(before=t0 + 25 * 60) == 3
    rows = await store.series(
        SOURCE, ["A1"], ["cash", "restriction"], since=t0 + 15 * 60, until=t0 + 25 * 60
    )
    assert rows == [
        SeriesRow(SOURCE, "A1", "cash", t0 + 15 * 60, "900.50"),  # in force: before the 800
        SeriesRow(SOURCE, "A1", "cash", t0 + 20 * 60, "800"),
        SeriesRow(SOURCE, "A1", "restriction", t0 + 15 * 60, "none"),  # never changed
    ]
    every = await store.series(SOURCE, None, ["cash"], since=t0, until=t0 + 5 * 60)
    assert [(r.account_number, r.value) for r in every] == [("A1", "1000.00"), ("A2", "5")]
    assert await store.series(SOURCE, [], ["cash"], since=t0, until=t0 + 60) == []
    at_change = await store.series(SOURCE, ["A1"], ["cash"], since=t0 + 600, until=t0 + 600)
    assert at_change == [SeriesRow(SOURCE, "A1", "cash", t0 + 600, "900.50")]


async def test_compacting_moves_the_journal_once(store: Store, backend: Backend) -> None:
    """Rows before the cutoff move to the table read by account; compacting again moves
    nothing and loses nothing."""
    await poll(store, 0, ("A1", "cash", None, Decimal("1")))
    await poll(store, 60, ("A1", "cash", Decimal("1"), Decimal("2")))
    assert await store.compact_history(before=t0 + 30 * 60) == 1
    assert await store.compact_history(before=t0 + 30 * 60) == 0
    assert await backend.rows("SELECT count(*) FROM history_journal") == [(1,)]
    assert await backend.rows("SELECT count(*) FROM account_history") == [(1,)]


async def test_history_is_pruned_by_keep(store: Store) -> None:
    """``prune_history`` removes account history (both tables) and poll outcomes older than
    the cutoff; the value in force then is still known from the next row's ``previous``."""
    await accounts_now(store, {"account_number": "A1", "cash": Decimal("3")})
    await poll(store, 0, ("A1", "cash", Decimal("0"), Decimal("1")))
    await poll(store, 10, ("A1", "cash", Decimal("1"), Decimal("1.5")))
    await store.compact_history(before=t0 + 5 * 60)
    await poll(store, 60, ("A1", "cash", Decimal("1.5"), Decimal("2")))
    pruned = await store.prune_history(before=t0 + 30 * 60)
    assert {k: pruned[k] for k in ("history_journal", "account_history", "polls")} == {
        "history_journal": 1,
        "account_history": 1,
        "polls": 3,
    }
    rows = await store.series(SOURCE, ["A1"], ["cash"], since=t0, until=t0 + 7200)
    assert [r.value for r in rows] == ["1.5", "2"]
    assert [p.at for p in await store.recent_polls(SOURCE, limit=10)] == [t0 + 3600]


async def test_recent_polls_are_the_last_ones_oldest_first(store: Store) -> None:
    """Every poll leaves its outcome, the error of a failed one included."""
    for minute in range(5):
        await poll(store, minute, ok=minute != 3)
    polls = await store.recent_polls(SOURCE, limit=3)
    assert polls == [
        PollRow(SOURCE, t0 + 120, True, None),
        PollRow(SOURCE, t0 + 180, False, "HTTP 503"),
        PollRow(SOURCE, t0 + 240, True, None),
    ]
    assert await store.recent_polls("nobody", limit=3) == []


async def test_deliveries_are_the_last_outbox_rows_with_their_state(store: Store) -> None:
    """Newest first, one row per sink, with attempts and the last error of a retry."""
    await queue_notification(store, SOURCE, make_notification(), ["log", "chat"], T0)
    rows = await store.deliveries(limit=10)
    assert [(r.sink, r.state, r.attempts) for r in rows] == [
        ("chat", "pending", 0),
        ("log", "pending", 0),
    ]
    await store.mark(rows[0].seq, "pending", now=t0 + 1, error="HTTP 500", next_attempt_at=t0 + 9)
    first = (await store.deliveries(limit=1))[0]
    assert isinstance(first, DeliveryRow)
    assert (first.sink, first.attempts, first.last_error) == ("chat", 1, "HTTP 500")
    assert first.payload["rule"] == make_notification().alert.rule


async def test_accounts_are_the_stored_records(store: Store) -> None:
    record: dict[str, JSONValue] = {
        "account_number": "A1",
        "cash": Decimal("10.5"),
        "restriction_reason": "<b>x</b>",
    }
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True),
        health=SourceHealth(),
        upserts=[Account("A1", record)],
    )
    [row] = await store.accounts()
    assert (row.source, row.account_number, row.observed_at) == (SOURCE, "A1", T0)
    assert row.record["restriction_reason"] == "<b>x</b>"
    assert Decimal(str(row.record["cash"])) == Decimal("10.5")


async def test_account_history_clamps_carries_and_types_the_values(store: Store) -> None:
    """The query of the page, the API and ``history``: the value in force moves to the
    range's start, the last one is carried to its end, money is Decimal, counts int."""
    await accounts_now(
        store, {"account_number": "A1", "cash": Decimal("12.34"), "daytrades_count": 1}
    )
    await poll(store, 0, ("A1", "cash", None, Decimal("1000.00")), ("A1", "daytrades_count", 0, 1))
    await poll(store, 30, ("A1", "cash", Decimal("1000.00"), Decimal("12.34")))
    series = await account_history(
        store,
        source=SOURCE,
        account_number="A1",
        fields=["cash", "daytrades_count"],
        since=t0 + 600,
        until=t0 + 3600,
    )
    cash, trades = series
    assert cash.points == (
        (t0 + 600, Decimal("1000.00")),
        (t0 + 1800, Decimal("12.34")),
        (t0 + 3600, Decimal("12.34")),
    )
    assert trades.points == ((t0 + 600, 1), (t0 + 3600, 1))
    assert cash.money
    assert trades.numeric
    assert not trades.money


async def test_a_dip_survives_the_query_s_downsampling(store: Store) -> None:
    """2,000 points of one series come back as at most 1,000, the dip among them."""
    values = [Decimal("5000.00")] * 2000
    values[1234] = Decimal("1.00")
    before = None
    for i, v in enumerate(values):
        await poll(store, i, ("A1", "cash", before, v + (i % 2)))
        before = v + (i % 2)
    [cash] = await account_history(
        store, source=SOURCE, account_number="A1", fields=["cash"], since=t0, until=t0 + 2000 * 60
    )
    assert cash.total == 2000
    assert len(cash.points) <= 1000
    assert (t0 + 1234 * 60, Decimal("1.00")) in cash.points


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", EPOCH - timedelta(days=7)),
        ("90m", EPOCH - timedelta(minutes=90)),
        ("2024-05-01T12:00:00Z", T0),
        ("2024-05-01T12:00:00", T0),
    ],
)
def test_parse_moment(text: str, expected: datetime) -> None:
    assert parse_moment(text, EPOCH) == expected


def test_parse_moment_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_moment("last tuesday", EPOCH)
