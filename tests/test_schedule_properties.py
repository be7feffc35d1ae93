"""Properties of the market-hours arithmetic over the NYSE calendar, for any moment of a century
(hypothesis; skipped where it is not installed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.schedule import MARKETS, in_session, next_open, next_poll, trading_holidays

ET = ZoneInfo("America/New_York")
US = MARKETS["us-equities"]
NYSE = trading_holidays(US)
FAST = timedelta(seconds=15)
#: Hypothesis bounds are naive; the moments it draws are in UTC.
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2099, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def trading_day(day: date) -> bool:
    return day.weekday() < 5 and day not in NYSE


@settings(max_examples=200, deadline=None)
@given(moments)
def test_next_open_is_the_first_trading_morning(moment: datetime) -> None:
    """next_open is 04:00 New York time of a weekday that is no NYSE holiday, at or after the
    moment, and no such morning lies between them."""
    opens = next_open(moment, US, NYSE)
    local = opens.astimezone(ET)

    assert opens >= moment
    assert local.time() == time(4)
    assert trading_day(local.date())
    day = moment.astimezone(ET).date()
    while day < local.date():
        morning = datetime.combine(day, time(4), tzinfo=ET)
        assert not (trading_day(day) and morning >= moment), day
        day += timedelta(days=1)


#: Every NYSE holiday of the century. The package fills its calendar a year at a time, when a
#: date of that year is first asked about: ask for each year first (``in``), then list.
_CALENDAR = NYSE.calendar
assert _CALENDAR is not None  # an empty calendar is falsy: it must not be mistaken for none
_CENTURY = [date(year, 1, 1) in _CALENDAR for year in range(2000, 2100)]
holidays = st.sampled_from(sorted(d for d in _CALENDAR if 2000 <= d.year <= 2099))


@settings(max_examples=100, deadline=None)
@given(holidays, st.times())
def test_no_session_on_an_nyse_holiday(day: date, moment: time) -> None:
    """At any time of any NYSE holiday the market is closed."""
    assert not in_session(datetime.combine(day, moment, tzinfo=ET), US, NYSE)


@settings(max_examples=200, deadline=None)
@given(moments, st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3)))
def test_a_poll_is_never_late_for_the_open(previous: datetime, off: timedelta) -> None:
    """The next poll comes after the previous one: the interval later in session; outside it,
    at most the off-hours interval later and never after the next open."""
    result = next_poll(
        previous, previous, interval=FAST, off_interval=off, market=US, holidays=NYSE
    )

    assert result > previous
    if in_session(previous, US, NYSE):
        assert result == previous + FAST
    else:
        assert result <= previous + off
        assert result <= next_open(previous, US, NYSE)
