"""``[[mute]]`` windows: when they are open (pure), what held notifications become (pure),
releasing them from a real state database, and a poll that a window holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sinks_helpers import make_notification
from store_helpers import commit_poll, sqlite_query

from monitor.config import Config, MuteConfig, config_from_dict
from monitor.cycle import PollRecord
from monitor.delivery import release_held
from monitor.errors import FetchError
from monitor.models import Notification, Status
from monitor.mutes import Held, muting, settle, window_at
from monitor.pipeline import SourcePipeline
from monitor.rules import SourceHealth
from monitor.store import Store
from monitor.testing import EPOCH, FakeFetcher, ManualClock

NY = ZoneInfo("America/New_York")
SOURCE = "default"


def mute(**values: Any) -> MuteConfig:
    return MuteConfig.model_validate({"name": "quiet", **values})


def ny(text: str) -> datetime:
    """A wall time in New York (``2024-05-04 07:59``)."""
    return datetime.fromisoformat(text).replace(tzinfo=NY)


# --------------------------------------------------------------------------- window_at

WEEKEND: dict[str, Any] = {"days": ["sat", "sun"]}
FRIDAY_NIGHT: dict[str, Any] = {"days": ["fri"], "start": "20:00", "end": "08:00"}
NIGHTLY: dict[str, Any] = {"start": "22:00", "end": "06:00"}

# 2024-05-03 is a Friday (New York is at UTC-4 in May).
WINDOWS: list[tuple[str, dict[str, Any], str, tuple[str, str] | None]] = [
    ("weekend: saturday midnight", WEEKEND, "2024-05-04 00:00", ("05-04 00:00", "05-05 00:00")),
    ("weekend: sunday evening", WEEKEND, "2024-05-05 23:59", ("05-05 00:00", "05-06 00:00")),
    ("weekend: not on friday", WEEKEND, "2024-05-03 23:59", None),
    ("weekend: monday is over", WEEKEND, "2024-05-06 00:00", None),
    (
        "23:59 is the end of the day",
        {"days": ["sat"], "start": "18:00", "end": "23:59"},
        "2024-05-04 23:59",
        ("05-04 18:00", "05-05 00:00"),
    ),
    (
        "24:00 is the end of the day",
        {"days": ["sat"], "start": "18:00", "end": "24:00"},
        "2024-05-04 23:59",
        ("05-04 18:00", "05-05 00:00"),
    ),
    ("overnight: before it", FRIDAY_NIGHT, "2024-05-03 19:59", None),
    ("overnight: its start", FRIDAY_NIGHT, "2024-05-03 20:00", ("05-03 20:00", "05-04 08:00")),
    (
        "overnight: into the next day",
        FRIDAY_NIGHT,
        "2024-05-04 07:59",
        ("05-03 20:00", "05-04 08:00"),
    ),
    ("overnight: its end is open", FRIDAY_NIGHT, "2024-05-04 08:00", None),
    ("overnight: saturday is no start day", FRIDAY_NIGHT, "2024-05-04 21:00", None),
    ("overnight: thursday is no start day", FRIDAY_NIGHT, "2024-05-03 07:00", None),
    ("nightly: late evening", NIGHTLY, "2024-05-06 23:00", ("05-06 22:00", "05-07 06:00")),
    ("nightly: early morning", NIGHTLY, "2024-05-07 05:59", ("05-06 22:00", "05-07 06:00")),
    ("nightly: daytime", NIGHTLY, "2024-05-07 12:00", None),
    (
        "a window may start at 23:59",
        {"days": ["fri"], "start": "23:59", "end": "06:00"},
        "2024-05-04 01:00",
        ("05-03 23:59", "05-04 06:00"),
    ),
    (
        "a window starting at 23:59 is not open earlier that day",
        {"days": ["fri"], "start": "23:59", "end": "06:00"},
        "2024-05-03 01:00",
        None,
    ),
]


@pytest.mark.parametrize(
    ("values", "local", "expected"),
    [pytest.param(v, at, want, id=name) for name, v, at, want in WINDOWS],
)
def test_window_at(values: dict[str, Any], local: str, expected: tuple[str, str] | None) -> None:
    """The window open at a New York wall time, as (start, end) wall times, or None."""
    window = window_at(mute(**values), ny(local).astimezone(UTC))
    if expected is None:
        assert window is None
    else:
        assert window is not None
        assert [w.strftime("%m-%d %H:%M") for w in window] == list(expected)
        assert all(w.tzinfo is not None for w in window)


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        pytest.param("2024-03-10T05:59:00", None, id="00:59 EST: before"),
        pytest.param(
            "2024-03-10T06:30:00",
            ("2024-03-10T01:00:00-05:00", "2024-03-10T03:30:00-04:00"),
            id="01:30 EST: inside",
        ),
        pytest.param(
            "2024-03-10T07:15:00",
            ("2024-03-10T01:00:00-05:00", "2024-03-10T03:30:00-04:00"),
            id="03:15 EDT: inside, after the jump",
        ),
        pytest.param("2024-03-10T07:30:00", None, id="03:30 EDT: its end"),
    ],
)
def test_window_at_on_the_day_clocks_spring_forward(
    utc: str, expected: tuple[str, str] | None
) -> None:
    """On 2024-03-10 New York jumps from 02:00 EST to 03:00 EDT: a window 01:00-03:30 follows
    the wall clock (it lasts 1h30 of real time) and its ends carry the right offsets."""
    quiet = mute(days=["sun"], start="01:00", end="03:30")
    window = window_at(quiet, datetime.fromisoformat(utc).replace(tzinfo=UTC))
    if expected is None:
        assert window is None
    else:
        assert window is not None
        assert (window[0].isoformat(), window[1].isoformat()) == expected
        assert window[1].timestamp() - window[0].timestamp() == 90 * 60


def test_a_whole_day_window_on_the_dst_day_lasts_23_hours() -> None:
    """The Sunday the clocks spring forward, a whole-day window ends at the next midnight."""
    window = window_at(mute(days=["sun"]), datetime(2024, 3, 11, 3, 59, tzinfo=UTC))
    assert window is not None
    assert (window[0].isoformat(), window[1].isoformat()) == (
        "2024-03-10T00:00:00-05:00",
        "2024-03-11T00:00:00-04:00",
    )
    assert window[1].timestamp() - window[0].timestamp() == 23 * 3600
    assert window_at(mute(days=["sun"]), datetime(2024, 3, 11, 4, 0, tzinfo=UTC)) is None


def test_window_at_uses_the_mute_timezone() -> None:
    """The same instant is inside a London evening window and outside a New York one."""
    instant = datetime(2024, 5, 4, 21, 30, tzinfo=UTC)  # 22:30 in London, 17:30 in New York
    london = mute(start="22:00", end="23:00", timezone="Europe/London")
    assert window_at(london, instant) is not None
    assert window_at(mute(start="22:00", end="23:00"), instant) is None


def test_muting_picks_the_first_open_window_covering_the_rule() -> None:
    """A window with ``rules`` covers only those; without, every rule incl. ``source_down``;
    a closed window covers nothing."""
    saturday = ny("2024-05-04 12:00")
    cash = MuteConfig(name="cash", days=("sat",), rules=("low-cash",))
    weekend = MuteConfig(name="weekend", days=("sat", "sun"))
    weekdays = MuteConfig(name="weekdays", days=("mon", "tue", "wed", "thu", "fri"))

    assert muting([cash, weekend], "low-cash", saturday) is cash
    assert muting([cash, weekend], "restricted", saturday) is weekend
    assert muting([cash, weekend], "source_down", saturday) is weekend
    assert muting([cash], "source_down", saturday) is None
    assert muting([weekdays], "low-cash", saturday) is None
    assert muting([weekdays, cash], "low-cash", saturday) is cash
    assert muting([], "low-cash", saturday) is None


# --------------------------------------------------------------------------- settle

T0 = datetime(2024, 5, 4, 12, 0, tzinfo=UTC)


def note(
    nid: str,
    status: Status = Status.FIRING,
    *,
    fp: str = "fp-1",
    rule: str = "low-cash",
    at: datetime = T0,
    started: datetime | None = None,
    summary: str = "A1: cash fell to 512.25 (< 1000)",
) -> Notification:
    base = make_notification(
        status=status,
        fingerprint=fp,
        rule=rule,
        observed_at=at,
        started_at=started if started is not None else at,
        summary=summary,
    )
    return replace(base, id=nid)


def held(*items: tuple[Notification, str], mute: str = "night") -> list[Held]:
    return [Held(seq, sink, SOURCE, mute, n) for seq, (n, sink) in enumerate(items, start=1)]


def settled(
    rows: Sequence[Held], *, muted: frozenset[str] = frozenset(), drop: frozenset[str] = frozenset()
) -> tuple[list[tuple[Notification, str, str]], list[int]]:
    out = settle(
        rows,
        still_muted=lambda r: r.notification.alert.rule in muted,
        drop_resolved=lambda r: r in drop,
    )
    return out.release, sorted(out.settled)


def test_settle_sends_the_latest_firing_of_an_alert_still_firing() -> None:
    """Repeats held while muted collapse into the latest one."""
    first = note("n1")
    again = note("n2", at=T0 + timedelta(hours=1), started=T0)
    release, done = settled(held((first, "ops"), (again, "ops")))
    assert release == [(again, "ops", SOURCE)]
    assert done == [1, 2]


@pytest.mark.parametrize("drop", [False, True])
def test_settle_summarises_an_alert_that_fired_and_resolved_while_muted(drop: bool) -> None:
    """One ``resolved`` notification saying so (with a new, stable id and the firing's
    start), or nothing with ``mute_resolved = "drop"``; the rows are settled either way."""
    fired = note("n1")
    ended = note(
        "n2", Status.RESOLVED, at=T0 + timedelta(hours=2), started=T0, summary="A1: cash back"
    )
    rows = held((fired, "ops"), (ended, "ops"))
    release, done = settled(rows, drop=frozenset({"low-cash"}) if drop else frozenset())
    assert done == [1, 2]
    if drop:
        assert release == []
        return
    [(summary, sink, source)] = release
    assert (sink, source) == ("ops", SOURCE)
    assert summary.alert.status is Status.RESOLVED
    assert summary.alert.fingerprint == "fp-1"
    assert summary.alert.summary == (
        "A1: cash back (fired 2024-05-04 12:00 UTC and resolved while muted by 'night')"
    )
    assert summary.alert.started_at == T0
    assert summary.alert.observed_at == T0 + timedelta(hours=2)
    assert summary.id not in ("n1", "n2")
    assert settled(rows)[0][0][0].id == summary.id  # the same id when settled again


def test_settle_releases_a_resolved_whose_firing_went_out_before_the_window() -> None:
    """Only the end was held: it goes out as is, also with ``mute_resolved = "drop"``."""
    ended = note("n2", Status.RESOLVED, at=T0, started=T0 - timedelta(days=1))
    for drop in (frozenset(), frozenset({"low-cash"})):
        assert settled(held((ended, "ops")), drop=drop) == ([(ended, "ops", SOURCE)], [1])


def test_settle_releases_a_resolved_after_a_held_repeat_as_is() -> None:
    """The alert fired before the window, a repeat and its end were held: the receiver knows
    the alert, so its end goes out as is (never dropped, never called 'fired while muted')."""
    before = T0 - timedelta(days=1)
    repeat = note("n1", at=T0, started=before)
    ended = note("n2", Status.RESOLVED, at=T0 + timedelta(hours=1), started=before)
    for drop in (frozenset(), frozenset({"low-cash"})):
        rows = held((repeat, "ops"), (ended, "ops"))
        assert settled(rows, drop=drop) == ([(ended, "ops", SOURCE)], [1, 2])


def test_settle_releases_each_event() -> None:
    """Events (no resolve, one fingerprint each) are each released."""
    one = note("e1", fp="fp-e1", rule="restricted")
    two = note("e2", fp="fp-e2", rule="restricted", at=T0 + timedelta(minutes=5))
    release, done = settled(held((one, "ops"), (two, "ops")))
    assert release == [(one, "ops", SOURCE), (two, "ops", SOURCE)]
    assert done == [1, 2]


def test_settle_keeps_what_a_window_still_mutes_and_works_per_sink() -> None:
    """A rule still muted keeps its rows; the others are settled for each sink apart."""
    cash = note("n1")
    other = note("n2", fp="fp-2", rule="restricted")
    rows = held((cash, "ops"), (cash, "audit"), (other, "ops"))
    release, done = settled(rows, muted=frozenset({"restricted"}))
    assert release == [(cash, "ops", SOURCE), (cash, "audit", SOURCE)]
    assert done == [1, 2]


def test_settle_of_nothing_is_nothing() -> None:
    assert settled([]) == ([], [])


# --------------------------------------------------------------------------- release_held

RULES: list[dict[str, Any]] = [
    {"type": "threshold", "name": "low-cash", "field": "cash", "op": "<", "value": 1000},
    {
        "type": "threshold",
        "name": "quiet-cash",
        "field": "cash",
        "op": "<",
        "value": 100,
        "mute_resolved": "drop",
    },
    {"type": "restriction_change", "name": "restricted"},
]
# EPOCH (2024-05-01T12:00Z) is a Wednesday, 08:00 in New York.
MAINTENANCE = {"name": "maintenance", "days": ["wed"], "start": "07:00", "end": "09:00"}
AFTER = EPOCH + timedelta(hours=1, minutes=30)


def make_config(
    tmp_path: Path,
    *,
    mutes: Sequence[dict[str, Any]] = (MAINTENANCE,),
    sinks: Sequence[str] = ("ops", "audit"),
    rules: Sequence[dict[str, Any]] = RULES,
) -> Config:
    return config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t0ken", "down_after": 1},
            "state": {"path": str(tmp_path / "state.db")},
            "sinks": [{"type": "log", "name": name} for name in sinks],
            "rules": list(rules),
            "mute": list(mutes),
        },
        base_dir=tmp_path,
    )


async def hold(
    store: Store, *items: tuple[Notification, Sequence[str]], mute: str = "maintenance"
) -> None:
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(EPOCH, ok=True),
        health=SourceHealth(),
        held=[(n, sinks, mute) for n, sinks in items],
    )


async def outbox(store: Store) -> list[tuple[str, str, str, str]]:
    """``(id, sink, status, summary)`` of every row, in order."""
    rows = await sqlite_query(store, "SELECT id, sink, payload FROM outbox ORDER BY seq")
    return [(i, s, json.loads(p)["status"], json.loads(p)["summary"]) for i, s, p in rows]


async def held_rows(store: Store) -> list[tuple[str, str, str]]:
    return await sqlite_query(store, "SELECT id, sink, mute FROM held ORDER BY seq")


async def test_held_rows_keep_their_mute_and_payload(store: Store) -> None:
    """commit_poll writes one held row per sink with the mute's name; Store.held reads them
    back as the same notifications."""
    n = note("n1", at=EPOCH)
    await hold(store, (n, ["ops", "audit"]))
    assert await held_rows(store) == [("n1", "ops", "maintenance"), ("n1", "audit", "maintenance")]
    rows = await store.held()
    assert [(r.sink, r.mute, r.source) for r in rows] == [
        ("ops", "maintenance", SOURCE),
        ("audit", "maintenance", SOURCE),
    ]
    assert rows[0].notification() == n
    assert await outbox(store) == []


async def test_release_held_waits_while_the_window_is_open(tmp_path: Path, store: Store) -> None:
    """Inside the window nothing is released and nothing is settled."""
    await hold(store, (note("n1", at=EPOCH), ["ops"]))
    assert await release_held(store, make_config(tmp_path), EPOCH + timedelta(minutes=30)) == 0
    assert await outbox(store) == []
    assert len(await held_rows(store)) == 1


async def test_release_held_after_the_window(tmp_path: Path, store: Store) -> None:
    """After the window: a still-firing alert's latest firing, the summary of one that fired
    and resolved, an event; the rows are gone and a second call does nothing."""
    config = make_config(tmp_path)
    still = note("f2", fp="fp-still", at=EPOCH + timedelta(minutes=10), started=EPOCH)
    fired = note("r1", fp="fp-ended", at=EPOCH)
    ended = note("r2", Status.RESOLVED, fp="fp-ended", at=EPOCH + timedelta(minutes=20))
    event = note("e1", fp="fp-event", rule="restricted", summary="A1: restricted")
    await hold(
        store,
        (note("f1", fp="fp-still", at=EPOCH), ["ops"]),
        (fired, ["ops"]),
        (still, ["ops"]),
        (ended, ["ops"]),
        (event, ["audit"]),
    )

    assert await release_held(store, config, AFTER) == 3

    rows = await outbox(store)
    assert [(i, s, status) for i, s, status, _ in rows] == [
        ("f2", "ops", "firing"),
        (rows[1][0], "ops", "resolved"),
        ("e1", "audit", "firing"),
    ]
    assert "resolved while muted by 'maintenance'" in rows[1][3]
    assert await held_rows(store) == []
    assert await release_held(store, config, AFTER) == 0


async def test_release_held_drops_what_the_rule_says_to_drop(tmp_path: Path, store: Store) -> None:
    """``mute_resolved = "drop"``: an alert that fired and resolved while muted leaves no trace."""
    fired = note("q1", fp="fp-q", rule="quiet-cash", at=EPOCH)
    ended = note("q2", Status.RESOLVED, fp="fp-q", rule="quiet-cash", at=EPOCH)
    await hold(store, (fired, ["ops"]), (ended, ["ops"]))
    assert await release_held(store, make_config(tmp_path), AFTER) == 0
    assert await outbox(store) == []
    assert await held_rows(store) == []


async def test_release_held_drops_sinks_no_longer_configured(tmp_path: Path, store: Store) -> None:
    """A held row for a sink removed from the config is settled without being queued."""
    await hold(store, (note("n1", at=EPOCH), ["ops", "audit"]))
    config = make_config(tmp_path, sinks=("ops",))
    assert await release_held(store, config, AFTER) == 1
    assert [(i, s) for i, s, _, _ in await outbox(store)] == [("n1", "ops")]
    assert await held_rows(store) == []


async def test_release_held_settles_rows_of_a_mute_no_longer_configured(
    tmp_path: Path, store: Store
) -> None:
    """A reload that removed the window releases what it held."""
    await hold(store, (note("n1", at=EPOCH), ["ops"]))
    config = make_config(tmp_path, mutes=())
    assert await release_held(store, config, EPOCH) == 1
    assert await held_rows(store) == []


# --------------------------------------------------------------------------- a muted poll


def account(number: str, cash: str = "5000.00", **fields: Any) -> dict[str, Any]:
    return {"account_number": number, "restriction": "none", "cash": Decimal(cash), **fields}


class Muted:
    """A pipeline on a real store, a fake fetcher and a manual clock starting at EPOCH
    (inside the ``maintenance`` window)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.clock = ManualClock()
        self.fetcher = FakeFetcher()
        self.pipeline = SourcePipeline(
            source=SOURCE,
            config=config,
            rules=config.rules,
            fetcher=self.fetcher,
            store=store,
            on_queued=lambda: None,
            clock=self.clock,
            down_after=1,
        )

    async def poll(self, *answers: Any) -> None:
        self.fetcher.push(*answers)
        await self.pipeline.poll()

    async def alerts(self) -> list[tuple[str, str, str]]:
        return await sqlite_query(self.store, "SELECT rule, account_number, state FROM alerts")


async def test_a_muted_poll_holds_the_notification_then_releases_it(
    tmp_path: Path, store: Store
) -> None:
    """A threshold rule muted by a window covering now: the poll records the firing alert but
    queues nothing and holds one row; once the clock is past the window, release_held queues
    the one firing notification."""
    config = make_config(tmp_path, sinks=("ops",))
    h = Muted(config, store)
    await h.pipeline.load()

    await h.poll([account("A1", "500.00")])

    assert await outbox(store) == []
    [(_, sink, name)] = await held_rows(store)
    assert (sink, name) == ("ops", "maintenance")
    assert await h.alerts() == [("low-cash", "A1", "firing")]

    h.clock.set(AFTER)
    assert await release_held(store, config, h.clock()) == 1
    [(_, sink, status, summary)] = await outbox(store)
    assert (sink, status) == ("ops", "firing")
    assert summary == "A1: cash is 500.00 (< 1000)"
    assert await held_rows(store) == []


async def test_an_alert_that_fires_and_resolves_while_muted_is_summarised(
    tmp_path: Path, store: Store
) -> None:
    """Firing and resolved both held (the alert state still comes and goes); after the window
    one resolved notification says it fired and resolved while muted."""
    config = make_config(tmp_path, sinks=("ops",))
    h = Muted(config, store)
    await h.pipeline.load()
    await h.poll([account("A1", "500.00")])
    h.clock.advance(timedelta(minutes=10))
    await h.poll([account("A1", "1500.00")])

    assert await h.alerts() == []
    assert len(await held_rows(store)) == 2
    assert await outbox(store) == []

    assert await release_held(store, config, AFTER) == 1
    [(_, _, status, summary)] = await outbox(store)
    assert status == "resolved"
    assert summary == (
        "A1: cash back to 1500.00 (no longer < 1000)"
        " (fired 2024-05-01 12:00 UTC and resolved while muted by 'maintenance')"
    )


async def test_a_window_for_some_rules_leaves_the_others_alone(
    tmp_path: Path, store: Store
) -> None:
    """A window naming rules holds only theirs: ``source_down`` is queued as usual."""
    cash_only = {**MAINTENANCE, "rules": ["low-cash"]}
    config = make_config(tmp_path, sinks=("ops",), mutes=[cash_only])
    h = Muted(config, store)
    await h.pipeline.load()
    await h.poll(FetchError("HTTP 503"))

    assert [(s, status) for _, s, status, _ in await outbox(store)] == [("ops", "firing")]
    assert await held_rows(store) == []


async def test_source_down_is_muted_by_a_window_for_every_rule(
    tmp_path: Path, store: Store
) -> None:
    """A window without ``rules`` also holds the built-in ``source_down``."""
    config = make_config(tmp_path, sinks=("ops",))
    h = Muted(config, store)
    await h.pipeline.load()
    await h.poll(FetchError("HTTP 503"))

    assert await outbox(store) == []
    [(_, sink, name)] = await held_rows(store)
    assert (sink, name) == ("ops", "maintenance")
    assert await h.alerts() == [("source_down", "", "firing")]


async def test_the_end_of_an_alert_notified_before_the_window_is_never_dropped(
    tmp_path: Path, store: Store
) -> None:
    """Fired (and sent) before the window, repeated and resolved inside it: after the window
    the resolved goes out as is, even for a rule with ``mute_resolved = "drop"``."""
    rule = {**RULES[1], "value": 1000, "repeat": "1h"}
    config = make_config(tmp_path, sinks=("ops",), rules=[rule])
    h = Muted(config, store)
    h.clock.set(EPOCH - timedelta(hours=2))  # 06:00 in New York, before the window
    await h.pipeline.load()
    await h.poll([account("A1", "500.00")])
    assert [status for _, _, status, _ in await outbox(store)] == ["firing"]

    h.clock.advance(timedelta(hours=1, minutes=10))  # 07:10: the repeat is held
    await h.poll()
    h.clock.advance(timedelta(minutes=10))
    await h.poll([account("A1", "1500.00")])
    assert len(await held_rows(store)) == 2

    assert await release_held(store, config, AFTER) == 1
    rows = await outbox(store)
    assert [status for _, _, status, _ in rows] == ["firing", "resolved"]
    assert rows[1][3] == "A1: cash back to 1500.00 (no longer < 1000)"
