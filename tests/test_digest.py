"""The pure side of digests: when they are due, what period they cover, what they say, and
each sink's format within its limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from monitor import digest_render
from monitor.config import DigestConfig
from monitor.digest import Digest, build
from monitor.digest_data import (
    AlertLine,
    DepartedAccount,
    DigestData,
    SourcePolls,
    StillFiring,
    StoredAccount,
)
from monitor.digest_schedule import digest_id, due_today, previous_occurrence
from monitor.models import JSONValue

NY = ZoneInfo("America/New_York")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def cfg(**fields: object) -> DigestConfig:
    return DigestConfig.model_validate({"name": "close", "at": "16:15", "sinks": ["s"], **fields})


def ny(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


@pytest.mark.parametrize(
    ("fields", "now", "holidays", "expected"),
    [
        # Tuesday 17:00, after today's: the digest of today covers since Monday's.
        ({}, ny(2026, 12, 1, 17, 0), (), ny(2026, 11, 30, 16, 15)),
        # Tuesday 10:00, before today's: the same period (today's digest so far).
        ({}, ny(2026, 12, 1, 10, 0), (), ny(2026, 11, 30, 16, 15)),
        # Monday on weekdays only: since Friday's.
        ({"days": WEEKDAYS}, ny(2026, 11, 30, 16, 15), (), ny(2026, 11, 27, 16, 15)),
        # Saturday (no digest that day): since Friday's, the last one before now.
        ({"days": WEEKDAYS}, ny(2026, 12, 5, 12, 0), (), ny(2026, 12, 4, 16, 15)),
        # market_days: the Friday before is a holiday, so since Thursday's.
        (
            {"days": WEEKDAYS, "market_days": True},
            ny(2026, 11, 30, 16, 30),
            (date(2026, 11, 27),),
            ny(2026, 11, 26, 16, 15),
        ),
        # The holiday counts only with market_days.
        (
            {"days": WEEKDAYS},
            ny(2026, 11, 30, 16, 30),
            (date(2026, 11, 27),),
            ny(2026, 11, 27, 16, 15),
        ),
        # Across the end of DST (1 Nov 2026): 16:15 local on both days, 25 hours apart.
        ({}, ny(2026, 11, 1, 16, 20), (), ny(2026, 10, 31, 16, 15)),
        # Just after midnight on Monday, weekdays only: since Friday's 00:05.
        ({"at": "00:05", "days": WEEKDAYS}, ny(2026, 11, 30, 0, 10), (), ny(2026, 11, 27, 0, 5)),
        # The day after spring-forward: 02:30 did not exist on 8 March, it went at 03:30 EDT.
        ({"at": "02:30"}, ny(2026, 3, 9, 3, 0), (), ny(2026, 3, 8, 3, 30)),
        # The day after fall-back: 01:30 happened twice on 1 November, the first (EDT) counts.
        (
            {"at": "01:30"},
            ny(2026, 11, 2, 12, 0),
            (),
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC).astimezone(NY),
        ),
        # Weekly on Sunday, rendered that Sunday after it: since the Sunday before.
        ({"days": ["sun"]}, ny(2026, 12, 6, 17, 0), (), ny(2026, 11, 29, 16, 15)),
    ],
)
def test_previous_occurrence(
    fields: dict[str, object], now: datetime, holidays: tuple[date, ...], expected: datetime
) -> None:
    found = previous_occurrence(cfg(**fields), now, NY, frozenset(holidays))
    assert found == expected
    assert found is not None
    assert found.utcoffset() == expected.utcoffset()


def test_a_missing_wall_time_on_spring_forward_day_is_after_the_shift() -> None:
    """02:30 does not exist on 8 March 2026 in New York: the digest goes at 03:30 EDT."""
    due = due_today(cfg(at="02:30"), ny(2026, 3, 8, 12, 0), NY, frozenset())
    assert due is not None
    assert due.astimezone(UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "now", "due"),
    [
        ({}, ny(2026, 12, 1, 16, 14), False),
        ({}, ny(2026, 12, 1, 16, 15), True),
        ({}, ny(2026, 12, 1, 23, 59), True),  # a catch-up later that day
        ({"days": WEEKDAYS}, ny(2026, 12, 5, 17, 0), False),  # Saturday
        ({"days": WEEKDAYS, "market_days": True}, ny(2026, 12, 25, 17, 0), False),  # Christmas
    ],
)
def test_due_today(fields: dict[str, object], now: datetime, due: bool) -> None:
    holidays = frozenset({date(2026, 12, 25)})
    assert (due_today(cfg(**fields), now, NY, holidays) is not None) is due


def test_the_id_is_stable_per_name_and_day() -> None:
    day = date(2026, 12, 1)
    assert digest_id("close", day) == digest_id("close", day)
    assert digest_id("close", day) != digest_id("close", date(2026, 12, 2))
    assert digest_id("close", day) != digest_id("open", day)


def record(value: str, **fields: JSONValue) -> dict[str, JSONValue]:
    base: dict[str, JSONValue] = {
        "account_value_total": Decimal(value),
        "cash": Decimal("100.00"),
        "cash_to_withdraw": Decimal("50.00"),
        "margin_type": "marginx2",
        "margin_buying_power": Decimal("200.00"),
        "non_margin_buying_power": Decimal("100.00"),
        "restriction": "none",
        "daytrades_count": 1,
    }
    return base | fields


SINCE = ny(2026, 11, 30, 16, 15)
UNTIL = ny(2026, 12, 1, 16, 15)


def make(data: DigestData, **fields: object) -> Digest:
    return build(
        cfg(**fields),
        data,
        ident="id-1",
        timezone="America/New_York",
        since=SINCE,
        until=UNTIL,
        day=date(2026, 12, 1),
    )


def test_figures_change_percent_new_accounts_and_totals() -> None:
    data = DigestData(
        accounts=(
            StoredAccount("default", "A1", record("1100.00"), then=Decimal("1000.00")),
            StoredAccount(
                "default",
                "B2",
                record(
                    "500.00",
                    margin_type="cash",
                    restriction="restricted",
                    restriction_reason="pattern day trader",
                ),
                new=True,
            ),
        )
    )
    d = make(data)
    a1, b2 = d.accounts
    assert (a1.change, a1.percent, a1.buying_power) == (
        Decimal("100.00"),
        Decimal("10.00"),
        Decimal("200.00"),
    )
    assert (b2.change, b2.percent, b2.buying_power) == (None, None, Decimal("100.00"))
    t = d.totals
    assert (t.accounts, t.value, t.change, t.percent, t.cash, t.cash_to_withdraw) == (
        2, Decimal("1600.00"), Decimal("100.00"), Decimal("10.00"), Decimal("200.00"),
        Decimal("100.00"),
    )  # fmt: skip
    text = digest_render.text(d)
    assert "A1: value 1,100.00 (+100.00, +10.00%)" in text
    assert "B2: value 500.00 (new since 2026-11-30 16:15 EST)" in text
    assert "restriction restricted (pattern day trader)" in text
    assert "Total of 2 accounts: value 1,600.00 (+100.00, +10.00%)" in text
    assert digest_render.ALL_CLEAR in text
    assert Digest.from_payload(d.payload()) == d


def test_alerts_in_the_period_failed_sources_and_globs() -> None:
    data = DigestData(
        accounts=(
            StoredAccount("default", "A1", record("1.00"), then=Decimal("2.00")),
            StoredAccount("default", "ZZ", record("9.00"), then=Decimal("9.00")),
        ),
        alerts=(
            AlertLine(
                "firing", "low-cash", "default", "A1", "cash fell", UNTIL - timedelta(hours=1)
            ),
            AlertLine("resolved", "low-cash", "default", "A1", "cash back", UNTIL),
            AlertLine("firing", "old", "default", "A1", "before", SINCE),  # not in (since, until]
            AlertLine("firing", "other", "default", "ZZ", "not covered", UNTIL),
        ),
        polls=(SourcePolls("default", 10, 2, "HTTP 503"), SourcePolls("x", 5, 0)),
    )
    d = make(data, accounts=["A*"])
    assert [a.account_number for a in d.accounts] == ["A1"]
    assert [(a.status, a.rule) for a in d.alerts] == [
        ("firing", "low-cash"),
        ("resolved", "low-cash"),
    ]
    assert [s.source for s in d.failed_sources] == ["default"]
    assert not d.all_clear
    text = digest_render.text(d)
    assert "Alerts: 1 fired, 1 resolved" in text
    assert "source default: 2 polls failed; last error: HTTP 503" in text
    assert digest_render.ALL_CLEAR not in text
    assert d.totals.percent == Decimal("-50.00")
    assert "(-1.00, -50.00%)" in text


def many() -> Digest:
    accounts = tuple(
        StoredAccount("default", f"{n:08d}", record("1000.00"), then=Decimal("900.00"))
        for n in range(400)
    )
    alerts = tuple(
        AlertLine("firing", "low-cash", "default", f"{n:08d}", "cash fell " * 5, UNTIL)
        for n in range(300)
    )
    return make(DigestData(accounts=accounts, alerts=alerts))


def test_a_long_digest_fits_telegram_with_totals_kept() -> None:
    html = digest_render.telegram_html(many())
    assert len(html) <= digest_render.TELEGRAM_LIMIT
    assert "<b>Total of 400 accounts: value 400,000.00 (+40,000.00, +11.11%)" in html
    assert "more accounts" in html
    assert "more alerts" in html  # the alerts keep their room


def test_a_long_digest_fits_slack_and_discord() -> None:
    d = many()
    slack = digest_render.slack_message(d)
    assert all(len(b["text"]["text"]) <= 3000 for b in slack["blocks"])
    assert "Total of 400 accounts" in slack["blocks"][0]["text"]["text"]
    discord = digest_render.discord_message(d)
    [embed] = discord["embeds"]
    assert len(embed["description"]) <= 4096
    assert "Total of 400 accounts" in embed["description"]
    assert (
        sum(len(embed[k]) for k in ("title", "description")) + len(embed["footer"]["text"]) <= 6000
    )


def test_an_episode_is_one_line_however_often_it_was_notified() -> None:
    """Repeats, escalations and acks are firing notifications of an episode already open: the
    digest counts the episode once when it fired, not at all when it fired before the period
    (``open_before``), and its end when it resolved."""
    hour = timedelta(hours=1)

    def line(status: str, fp: str, at: datetime) -> AlertLine:
        return AlertLine(status, f"rule-{fp}", "default", "A1", f"{fp} {status}", at, fp)

    data = DigestData(
        accounts=(StoredAccount("default", "A1", record("1.00"), then=Decimal("1.00")),),
        alerts=(
            line("firing", "old", SINCE + hour),  # a repeat of an episode open at since
            line("resolved", "old", SINCE + 2 * hour),
            line("firing", "new", SINCE + 3 * hour),
            line("firing", "new", SINCE + 4 * hour),  # its repeat
            line("firing", "new", SINCE + 5 * hour),  # its escalation
            line("resolved", "new", SINCE + 6 * hour),
            line("firing", "new", SINCE + 7 * hour),  # a new episode
            line("firing", "long", SINCE + 8 * hour),  # a repeat, still firing
        ),
        open_before=frozenset({"old", "long"}),
    )
    d = make(data)
    assert [(a.fingerprint, a.status) for a in d.alerts] == [
        ("old", "resolved"),
        ("new", "firing"),
        ("new", "resolved"),
        ("new", "firing"),
    ]
    assert "Alerts: 2 fired, 2 resolved" in digest_render.text(d)
    assert Digest.from_payload(d.payload()) == d


def test_an_alert_firing_since_before_the_period_is_no_all_clear() -> None:
    """Nothing fired in the period, but an alert that fired before it still fires: the digest
    says so instead of "all clear"; one that fired in the period is not listed twice."""
    data = DigestData(
        accounts=(StoredAccount("default", "A1", record("1.00"), then=Decimal("1.00")),),
        firing=(
            StillFiring("restricted", "default", "A1", SINCE - timedelta(days=2), "fp-1"),
            StillFiring("low-cash", "default", "A1", UNTIL - timedelta(hours=1), "fp-2"),
            StillFiring("low-cash", "default", "ZZ", SINCE - timedelta(days=2), "fp-3"),
        ),
    )
    d = make(data, accounts=["A*"])
    assert [f.rule for f in d.still_firing] == ["restricted"]
    assert not d.all_clear
    text = digest_render.text(d)
    assert digest_render.ALL_CLEAR not in text
    assert "🔥 still firing since 11-28 16:15: restricted on A1" in text
    assert Digest.from_payload(d.payload()) == d
    assert make(DigestData(accounts=data.accounts)).all_clear


@pytest.mark.parametrize(
    ("left_at", "listed"),
    [
        (SINCE - timedelta(minutes=1), False),  # the previous digest no longer had it
        (SINCE + timedelta(hours=2), True),
        (UNTIL, True),
    ],
)
def test_an_account_that_left_in_the_period_is_said_to_have_left(
    left_at: datetime, listed: bool
) -> None:
    data = DigestData(
        accounts=(StoredAccount("default", "A1", record("1.00"), then=Decimal("1.00")),),
        departed=(
            DepartedAccount("default", "A2", Decimal("1234.5"), left_at),
            DepartedAccount("default", "ZZ", Decimal("1"), left_at),  # not covered
        ),
    )
    d = make(data, accounts=["A*"])
    assert [a.account_number for a in d.departed] == (["A2"] if listed else [])
    assert d.totals.accounts == 1
    text = digest_render.text(d)
    local = left_at.astimezone(NY).strftime("%m-%d %H:%M")
    assert (f"A2: left {local}, last value 1,234.50" in text) is listed
    assert Digest.from_payload(d.payload()) == d


@pytest.mark.parametrize(
    ("then", "now", "change", "percent"),
    [
        ("1000.00", "1100.00", "100.00", "10.00"),
        ("1000.00", "900.00", "-100.00", "-10.00"),
        ("0", "500.00", "500.00", None),  # no percent of nothing
        ("-200.00", "-100.00", "100.00", "50.00"),  # a deficit halved is up, not down
        ("-200.00", "-300.00", "-100.00", "-50.00"),
        ("1000.00", "0", "-1000.00", "-100.00"),
    ],
)
def test_change_and_percent(then: str, now: str, change: str, percent: str | None) -> None:
    d = make(
        DigestData(accounts=(StoredAccount("default", "A1", record(now), then=Decimal(then)),))
    )
    [a] = d.accounts
    assert a.change == Decimal(change)
    assert a.percent == (None if percent is None else Decimal(percent))
    assert (d.totals.change, d.totals.percent) == (a.change, a.percent)


def test_an_event_is_fired_once_and_never_resolved() -> None:
    """An event rule's notification has no end: the resolve queued for a receiver that keeps
    events open (PagerDuty) is its bookkeeping, not an alert that resolved."""
    at = SINCE + timedelta(hours=1)
    data = DigestData(
        alerts=(
            AlertLine("firing", "cash-moved", "default", "A1", "cash moved", at, "e1"),
            AlertLine("resolved", "cash-moved", "default", "A1", "cash moved", at, "e1"),
            AlertLine("resolved", "low-cash", "default", "A1", "cash back", at, "c1"),
        )
    )
    d = build(cfg(), data, ident="i", timezone="UTC", since=SINCE, until=UNTIL,
              events=frozenset({"cash-moved"}))  # fmt: skip
    assert [(a.rule, a.status) for a in d.alerts] == [
        ("cash-moved", "firing"),
        ("low-cash", "resolved"),
    ]


@pytest.mark.parametrize(
    ("source", "account", "summary", "expected"),
    [
        ("default", "A1", "cash fell", "🔥 12-01 11:15 FIRING low-cash on A1: cash fell"),
        ("ib", "A1", "cash fell", "🔥 12-01 11:15 FIRING low-cash on A1@ib: cash fell"),
        ("ib", None, "cash fell", "🔥 12-01 11:15 FIRING low-cash on source ib: cash fell"),
        # a default summary starts with its account: said once, not "on A1: A1: cash fell"
        ("default", "A1", "A1: cash fell", "🔥 12-01 11:15 FIRING low-cash on A1: cash fell"),
        ("ib", "A1", "A1: cash fell", "🔥 12-01 11:15 FIRING low-cash on A1@ib: cash fell"),
        ("default", "A1", "A10: cash fell", "🔥 12-01 11:15 FIRING low-cash on A1: A10: cash fell"),
    ],
)
def test_an_alert_line_names_its_account(
    source: str, account: str | None, summary: str, expected: str
) -> None:
    """A summary ("cash fell") may not say whose: the line does, as the account lines do, and
    a summary that starts with its account ("A1: cash fell") does not say it twice."""
    at = ny(2026, 12, 1, 11, 15)
    line = AlertLine("firing", "low-cash", source, account, summary, at, "f")
    assert digest_render.alert_line(make(DigestData()), line) == expected
