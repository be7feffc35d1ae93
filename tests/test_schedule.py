"""When to poll: the market-hours arithmetic as tables around DST changes, weekends and
holidays; the trigger each kind of schedule builds; missed polls; the schedule's validation."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from structlog.testing import capture_logs

from monitor.config import ScheduleConfig, config_from_dict
from monitor.errors import ConfigError
from monitor.schedule import (
    MARKETS,
    Holidays,
    MarketHoursTrigger,
    in_session,
    make_trigger,
    missed_polls,
    next_open,
    next_poll,
    trading_holidays,
)

ET = ZoneInfo("America/New_York")
US = MARKETS["us-equities"]
CHRISTMAS = frozenset({date(2026, 12, 25)})  # a Friday
FAST = timedelta(seconds=15)
SLOW = timedelta(minutes=10)


def et(
    month: int, day: int, hour: int, minute: int = 0, second: int = 0, *, fold: int = 0
) -> datetime:
    """Wall time in New York in 2026 (``fold=1``: the second 01:xx of the fall-back night)."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=ET, fold=fold)


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def same_instant(a: datetime, b: datetime) -> bool:
    """Equal as instants (aware datetimes sharing a tzinfo compare by wall time, ignoring fold)."""
    return a.astimezone(UTC) == b.astimezone(UTC)


# --------------------------------------------------------------------------- in_session


@pytest.mark.parametrize(
    ("moment", "holidays", "expected"),
    [
        pytest.param(et(6, 15, 4), frozenset(), True, id="mon-04:00-opens"),
        pytest.param(et(6, 15, 3, 59, 59), frozenset(), False, id="mon-03:59:59"),
        pytest.param(et(6, 15, 12), frozenset(), True, id="mon-noon"),
        pytest.param(et(6, 19, 19, 59, 59), frozenset(), True, id="fri-19:59:59"),
        pytest.param(et(6, 19, 20), frozenset(), False, id="fri-20:00-closed"),
        pytest.param(et(6, 20, 12), frozenset(), False, id="saturday"),
        pytest.param(et(6, 21, 12), frozenset(), False, id="sunday"),
        pytest.param(et(12, 25, 12), CHRISTMAS, False, id="holiday"),
        pytest.param(et(12, 25, 12), frozenset(), True, id="holiday-not-configured"),
        pytest.param(et(12, 24, 12), CHRISTMAS, True, id="day-before-holiday"),
        # The same UTC wall time is in or out of session depending on DST.
        pytest.param(utc(3, 6, 8, 30), frozenset(), False, id="utc-08:30-is-03:30-EST"),
        pytest.param(utc(3, 9, 8, 30), frozenset(), True, id="utc-08:30-is-04:30-EDT"),
        pytest.param(utc(10, 30, 8, 30), frozenset(), True, id="utc-08:30-is-04:30-EDT-oct"),
        pytest.param(utc(11, 2, 8, 30), frozenset(), False, id="utc-08:30-is-03:30-EST-nov"),
        pytest.param(utc(11, 3, 0, 30), frozenset(), True, id="utc-tue-00:30-is-mon-19:30-EST"),
        pytest.param(utc(6, 20, 0, 30), frozenset(), False, id="utc-sat-00:30-is-fri-20:30-EDT"),
        pytest.param(utc(6, 19, 23, 59), frozenset(), True, id="utc-fri-23:59-is-19:59-EDT"),
        pytest.param(utc(10, 27, 0, 30), frozenset(), False, id="utc-00:30-is-20:30-EDT"),
    ],
)
def test_in_session(moment: datetime, holidays: frozenset[date], expected: bool) -> None:
    """04:00 to 20:00 New York time, Monday to Friday, not on a configured holiday, judged by
    New York wall time whatever zone the moment is in."""
    assert in_session(moment, US, holidays) is expected


# --------------------------------------------------------------------------- next_open


@pytest.mark.parametrize(
    ("moment", "holidays", "expected"),
    [
        pytest.param(et(6, 15, 3), frozenset(), et(6, 15, 4), id="mon-before-open"),
        pytest.param(et(6, 15, 4), frozenset(), et(6, 15, 4), id="at-open-is-now"),
        pytest.param(et(6, 15, 12), frozenset(), et(6, 16, 4), id="in-session-is-tomorrow"),
        pytest.param(et(6, 19, 19, 59), frozenset(), et(6, 22, 4), id="fri-19:59-to-mon"),
        pytest.param(et(6, 19, 20), frozenset(), et(6, 22, 4), id="fri-close-to-mon"),
        pytest.param(et(6, 20, 12), frozenset(), et(6, 22, 4), id="sat-to-mon"),
        pytest.param(et(6, 21, 23, 59), frozenset(), et(6, 22, 4), id="sun-night-to-mon"),
        pytest.param(et(12, 24, 20), CHRISTMAS, et(12, 28, 4), id="holiday-friday-skipped"),
        pytest.param(et(12, 24, 20), frozenset(), et(12, 25, 4), id="no-holiday-given"),
        # Friday 20:00 EST to Monday 04:00 EDT: the weekend is an hour shorter.
        pytest.param(utc(3, 7, 1), frozenset(), utc(3, 9, 8), id="spring-forward-weekend"),
        # Friday 20:00 EDT to Monday 04:00 EST: the weekend is an hour longer.
        pytest.param(utc(10, 31, 0), frozenset(), utc(11, 2, 9), id="fall-back-weekend"),
    ],
)
def test_next_open(moment: datetime, holidays: frozenset[date], expected: datetime) -> None:
    """The first session start at or after the moment, skipping weekends and holidays, at
    04:00 New York time on both sides of a DST change, in the moment's own zone."""
    result = next_open(moment, US, holidays)
    assert result == expected
    assert result.tzinfo is moment.tzinfo


def test_next_open_without_any_session_raises() -> None:
    """A year of holidays (a configuration mistake) is a clear error, not an endless loop."""
    every_day = frozenset(date(2026, 1, 1) + timedelta(days=n) for n in range(500))
    with pytest.raises(ValueError, match="no session within 400 days"):
        next_open(et(1, 1, 0), US, every_day)


# --------------------------------------------------------------------------- next_poll


@pytest.mark.parametrize(
    ("previous", "off", "holidays", "expected"),
    [
        pytest.param(et(6, 15, 12), SLOW, frozenset(), et(6, 15, 12, 0, 15), id="in-session"),
        pytest.param(et(6, 19, 19, 59), SLOW, frozenset(), et(6, 19, 19, 59, 15), id="fri-19:59"),
        pytest.param(
            et(6, 19, 19, 59, 50), SLOW, frozenset(), et(6, 19, 20, 0, 5), id="last-fast-poll"
        ),
        pytest.param(et(6, 19, 20), SLOW, frozenset(), et(6, 19, 20, 10), id="fri-close-slow"),
        pytest.param(et(6, 20, 12), SLOW, frozenset(), et(6, 20, 12, 10), id="saturday-slow"),
        pytest.param(et(6, 15, 3, 55), SLOW, frozenset(), et(6, 15, 4), id="capped-at-open"),
        pytest.param(et(6, 15, 3, 50), SLOW, frozenset(), et(6, 15, 4), id="exactly-at-open"),
        pytest.param(et(6, 15, 3, 45), SLOW, frozenset(), et(6, 15, 3, 55), id="before-cap"),
        pytest.param(
            et(6, 19, 20), timedelta(days=3), frozenset(), et(6, 22, 4), id="sat-to-mon-capped"
        ),
        pytest.param(
            et(6, 20, 23, 30), timedelta(hours=1), frozenset(), et(6, 21, 0, 30), id="sat-night"
        ),
        pytest.param(
            et(12, 24, 23, 55), timedelta(hours=6), CHRISTMAS, et(12, 25, 5, 55), id="holiday-slow"
        ),
        pytest.param(
            et(12, 24, 20), timedelta(days=4), CHRISTMAS, et(12, 28, 4), id="holiday-capped"
        ),
        pytest.param(
            et(12, 24, 23, 55), timedelta(hours=6), frozenset(), et(12, 25, 4), id="not-a-holiday"
        ),
        # Spring forward: 01:55 EST + 10 min is 03:05 EDT.
        pytest.param(et(3, 8, 1, 55), SLOW, frozenset(), et(3, 8, 3, 5), id="spring-forward"),
        pytest.param(utc(3, 8, 6, 55), SLOW, frozenset(), utc(3, 8, 7, 5), id="spring-forward-utc"),
        # Fall back: 01:55 EDT + 10 min is 01:05 EST (the second 01:05), not 02:05.
        pytest.param(et(11, 1, 1, 55), SLOW, frozenset(), et(11, 1, 1, 5, fold=1), id="fall-back"),
        pytest.param(utc(11, 1, 5, 55), SLOW, frozenset(), utc(11, 1, 6, 5), id="fall-back-utc"),
        # Monday's open after each change is 04:00 local: 08:00 UTC in March, 09:00 in November.
        pytest.param(utc(3, 9, 7, 55), SLOW, frozenset(), utc(3, 9, 8), id="open-after-spring"),
        pytest.param(utc(3, 6, 8, 55), SLOW, frozenset(), utc(3, 6, 9), id="open-before-spring"),
        pytest.param(utc(11, 2, 8, 55), SLOW, frozenset(), utc(11, 2, 9), id="open-after-fall"),
        pytest.param(
            utc(11, 2, 8, 30), FAST, frozenset(), utc(11, 2, 8, 30) + FAST, id="even-off-hours"
        ),
    ],
)
def test_next_poll(
    previous: datetime, off: timedelta, holidays: frozenset[date], expected: datetime
) -> None:
    """In session the next poll is the interval later; outside it the off-hours interval, in
    real time across DST changes, but never after the next open; in previous's own zone."""
    result = next_poll(
        previous,
        previous,
        interval=FAST,
        off_interval=off,
        market=US,
        holidays=holidays,
    )
    assert same_instant(result, expected), (result, expected)
    assert result.tzinfo is previous.tzinfo


def test_the_first_poll_is_now() -> None:
    """Without a previous poll the trigger fires at once, in or out of session."""
    now = et(6, 20, 12)
    assert next_poll(None, now, interval=FAST, off_interval=SLOW, market=US) == now


def test_a_weekend_of_polls_is_slow_then_fast_at_the_open() -> None:
    """Stepping the trigger from Friday's close to Monday's open: every poll is 10 min apart
    until the last one lands exactly at 04:00, then they are 15 s apart."""
    trigger = MarketHoursTrigger(interval=FAST, off_interval=SLOW, market=US)
    moment = et(6, 19, 20).astimezone(UTC)
    fired = [moment]
    while moment < et(6, 22, 4, 1):
        nxt = trigger.get_next_fire_time(moment, moment)
        assert nxt is not None
        fired.append(moment := nxt)

    gaps = {b - a for a, b in itertools.pairwise(fired)}
    assert gaps == {SLOW, FAST}
    assert et(6, 22, 4) in fired
    assert len(fired) == 56 * 6 + 1 + 4  # 56 hours of 10-min polls, the open, then 15 s ones


# --------------------------------------------------------------------------- triggers


def schedule(**keys: Any) -> ScheduleConfig:
    return ScheduleConfig.model_validate(keys)


def test_a_plain_interval_is_an_interval_trigger() -> None:
    """[schedule] interval (with jitter) is APScheduler's IntervalTrigger in UTC."""
    trigger = make_trigger(schedule(interval="45s", jitter="2s"))

    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == timedelta(seconds=45)
    assert trigger.jitter == 2
    assert trigger.timezone == UTC


def test_a_source_interval_overrides_the_schedule() -> None:
    """A source's own interval replaces [schedule] interval."""
    trigger = make_trigger(schedule(interval="45s"), timedelta(seconds=5))

    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == timedelta(seconds=5)


def test_cron_is_a_cron_trigger_in_its_timezone() -> None:
    """cron with timezone is a CronTrigger firing at the New York wall times it names."""
    trigger = make_trigger(schedule(cron="30 9 * * mon-fri", timezone="America/New_York"))

    assert isinstance(trigger, CronTrigger)
    assert str(trigger.timezone) == "America/New_York"
    fire = trigger.get_next_fire_time(None, et(3, 6, 12))
    assert same_instant(fire, et(3, 9, 9, 30))
    assert fire.astimezone(UTC) == utc(3, 9, 13, 30)  # EDT already


def test_market_hours_is_a_market_trigger() -> None:
    """market_hours builds a MarketHoursTrigger with both intervals and the holidays."""
    trigger = make_trigger(
        schedule(
            interval="15s",
            off_hours_interval="10m",
            market_hours="us-equities",
            holidays=["2026-12-25"],
        )
    )

    assert isinstance(trigger, MarketHoursTrigger)
    assert (trigger.interval, trigger.off_interval) == (FAST, SLOW)
    assert trigger.holidays.listed == CHRISTMAS
    assert trigger.holidays.exchange == "NYSE"
    assert trigger.market is US
    assert str(trigger) == "market_hours[us-equities]"


def test_market_hours_without_off_hours_interval_polls_evenly() -> None:
    """Without off_hours_interval the off-hours interval is the interval; a source's own
    interval replaces the in-session one."""
    config = schedule(interval="15s", market_hours="us-equities")
    assert make_trigger(config).off_interval == FAST

    override = make_trigger(
        schedule(interval="15s", off_hours_interval="10m", market_hours="us-equities"),
        timedelta(seconds=5),
    )
    assert (override.interval, override.off_interval) == (timedelta(seconds=5), SLOW)


def test_market_trigger_jitter_stays_within_bounds() -> None:
    """Jitter delays a market-hours poll by at most the jitter."""
    trigger = make_trigger(schedule(interval="15s", market_hours="us-equities", jitter="3s"))
    previous = et(6, 15, 12).astimezone(UTC)

    for _ in range(20):
        fire = trigger.get_next_fire_time(previous, previous)
        assert previous + FAST <= fire <= previous + FAST + timedelta(seconds=3)


# --------------------------------------------------------------------------- holidays


def us_equities(*listed: str) -> Holidays:
    """The holidays of a us-equities schedule that lists these dates."""
    trigger = make_trigger(schedule(market_hours="us-equities", holidays=list(listed)))
    assert isinstance(trigger, MarketHoursTrigger)
    return trigger.holidays


@pytest.mark.parametrize(
    ("day", "trading"),
    [
        pytest.param(date(2026, 11, 26), False, id="thanksgiving-2026"),
        pytest.param(date(2027, 3, 26), False, id="good-friday-2027"),
        pytest.param(date(2026, 7, 3), False, id="independence-day-observed-friday"),
        pytest.param(date(2027, 12, 24), False, id="christmas-2027-observed-friday"),
        pytest.param(date(2027, 1, 18), False, id="mlk-day-2027"),
        pytest.param(date(2026, 11, 25), True, id="day-before-thanksgiving"),
        pytest.param(date(2026, 11, 27), True, id="day-after-thanksgiving-half-day"),
        pytest.param(date(2027, 3, 29), True, id="easter-monday-trades"),
    ],
)
def test_us_equities_follows_the_nyse_calendar(day: date, trading: bool) -> None:
    """Without any listed holiday, the preset closes on the NYSE's holidays (the holidays
    package), observed days included, and trades on the days around them."""
    noon = datetime.combine(day, time(12), tzinfo=ET)

    assert in_session(noon, US, us_equities()) is trading


def test_listed_holidays_add_to_the_calendar() -> None:
    """A date in [schedule] holidays closes the market too; the calendar's days stay closed."""
    holidays = us_equities("2026-11-27")

    assert date(2026, 11, 27) in holidays
    assert date(2026, 11, 26) in holidays
    assert date(2026, 11, 25) not in holidays
    assert not in_session(et(11, 27, 12), US, holidays)


def test_thanksgiving_is_polled_slowly() -> None:
    """After Wednesday's close the next fast poll is Friday's open, not Thursday's."""
    trigger = make_trigger(
        schedule(interval="15s", off_hours_interval="1d", market_hours="us-equities")
    )
    wednesday_close = et(11, 25, 20).astimezone(UTC)

    fire = trigger.get_next_fire_time(wednesday_close, wednesday_close)

    assert same_instant(fire, et(11, 26, 20))  # a day later, off-hours still
    assert same_instant(trigger.get_next_fire_time(fire, fire), et(11, 27, 4))


def test_the_calendar_says_which_years_it_knows() -> None:
    """The installed package's NYSE calendar spans this year and the next ones."""
    holidays = us_equities()

    assert holidays.years is not None
    first, last = holidays.years
    assert first <= 2026
    assert last >= 2030
    assert holidays.knows(2026)
    assert not holidays.knows(last + 1)
    assert str(holidays).startswith(f"NYSE holidays {first}-{last} (holidays ")


def test_a_market_without_an_exchange_has_only_listed_holidays() -> None:
    """trading_holidays of a market with no exchange calendar is the listed dates alone."""
    plain = trading_holidays(replace(US, exchange=None), [date(2026, 12, 25)])

    assert plain.years is None
    assert plain.knows(2101)
    assert date(2026, 12, 25) in plain
    assert date(2026, 11, 26) not in plain


def test_a_year_beyond_the_calendar_is_logged_once() -> None:
    """Polling in a year the installed calendar does not cover logs one warning (only weekends
    and listed dates close the market then); a year it covers logs nothing."""
    trigger = make_trigger(schedule(market_hours="us-equities", interval="15s"))
    assert trigger.holidays.years is not None
    beyond = trigger.holidays.years[1] + 1
    now = datetime(beyond, 6, 15, 12, tzinfo=UTC)

    with capture_logs() as events:
        trigger.get_next_fire_time(None, utc(6, 15, 12))
        trigger.get_next_fire_time(None, now)
        trigger.get_next_fire_time(now, now)

    assert events == [
        {
            "event": "market_holidays_unknown",
            "log_level": "warning",
            "market": "us-equities",
            "year": beyond,
            "calendar": str(trigger.holidays),
        }
    ]


# --------------------------------------------------------------------------- missed polls


@pytest.mark.parametrize(
    ("config", "since", "now", "limit", "expected"),
    [
        pytest.param({"interval": "30s"}, utc(6, 15, 12), utc(6, 15, 12, 0), 3, 0, id="none"),
        pytest.param(
            {"interval": "30s"},
            utc(6, 15, 12),
            utc(6, 15, 12) + timedelta(seconds=29),
            3,
            0,
            id="just-before",
        ),
        pytest.param(
            {"interval": "30s"},
            utc(6, 15, 12),
            utc(6, 15, 12) + timedelta(seconds=30),
            3,
            1,
            id="inclusive",
        ),
        pytest.param(
            {"interval": "30s"},
            utc(6, 15, 12),
            utc(6, 15, 12) + timedelta(seconds=95),
            3,
            3,
            id="limit",
        ),
        pytest.param(
            {"interval": "30s"},
            utc(6, 15, 12),
            utc(6, 15, 12) + timedelta(seconds=95),
            10,
            3,
            id="under-a-big-limit",
        ),
        pytest.param({"cron": "*/5 * * * *"}, et(6, 15, 12), et(6, 15, 12, 16), 10, 3, id="cron"),
        pytest.param(
            {"interval": "15s", "off_hours_interval": "10m", "market_hours": "us-equities"},
            et(6, 19, 20),
            et(6, 19, 20, 25),
            10,
            2,
            id="market-off-hours",
        ),
        pytest.param(
            {"interval": "15s", "off_hours_interval": "1d", "market_hours": "us-equities"},
            et(6, 19, 20),
            et(6, 22, 4, 0, 20),
            10,
            4,
            id="market-weekend-then-open",
        ),
    ],
)
def test_missed_polls(
    config: dict[str, Any], since: datetime, now: datetime, limit: int, expected: int
) -> None:
    """Scheduled polls in (since, now], counted up to the limit (readiness uses three)."""
    trigger = make_trigger(schedule(**config))
    assert missed_polls(trigger, since, now, limit) == expected


# --------------------------------------------------------------------------- validation

BASE: dict[str, Any] = {
    "api": {"url": "https://api.lime.co/accounts", "token": "t"},
    "sinks": [{"name": "console", "type": "log"}],
}


def problems(section: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(BASE | {"schedule": section}, base_dir=Path("/etc/balance-monitor"))
    return caught.value.problems


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        pytest.param(
            {"cron": "*/5 * *"},
            ["schedule.cron: Wrong number of fields; got 3, expected 5"],
            id="cron-fields",
        ),
        pytest.param(
            {"cron": "* * * * mon-fry"},
            ['schedule.cron: Invalid weekday name "fry"'],
            id="cron-weekday",
        ),
        pytest.param(
            {"timezone": "Mars/Olympus_Mons"},
            ["schedule.timezone: unknown time zone 'Mars/Olympus_Mons'"],
            id="unknown-timezone",
        ),
        pytest.param(
            {"off_hours_interval": "10m"},
            ["schedule: off_hours_interval needs market_hours"],
            id="off-hours-without-market",
        ),
        pytest.param(
            {"holidays": ["2026-12-25"]},
            ["schedule: holidays needs market_hours"],
            id="holidays-without-market",
        ),
        pytest.param(
            {"cron": "* * * * *", "market_hours": "us-equities"},
            ["schedule: give either cron or market_hours, not both"],
            id="cron-and-market",
        ),
        pytest.param(
            {"market_hours": "lse"},
            ["schedule.market_hours: must be one of us-equities"],
            id="unknown-market",
        ),
        pytest.param(
            {"market_hours": "us-equities", "off_hours_interval": "0.5s"},
            ["schedule.off_hours_interval: must be at least 1s"],
            id="off-hours-too-short",
        ),
        pytest.param({"cron": "* * * * *", "tz": "UTC"}, ["schedule.tz: unknown key"], id="typo"),
    ],
)
def test_bad_schedules_name_the_key(section: dict[str, Any], expected: list[str]) -> None:
    """Every schedule mistake is one problem line that names its key, cron included."""
    assert problems(section) == expected


def test_a_good_market_schedule_loads() -> None:
    """The documented preset loads, with holidays as dates."""
    config = config_from_dict(
        BASE
        | {
            "schedule": {
                "interval": "15s",
                "off_hours_interval": "10m",
                "market_hours": "us-equities",
                "holidays": [date(2026, 12, 25), "2026-11-26"],
            }
        },
        base_dir=Path("/etc/balance-monitor"),
    )
    assert config.schedule.holidays == (date(2026, 12, 25), date(2026, 11, 26))
    assert config.schedule.off_hours_interval == SLOW
