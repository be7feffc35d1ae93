"""When to poll: a fixed interval, a cron line, or market hours (fast in session, slow outside).

The market-hours arithmetic is pure (``in_session``, ``next_open``, ``next_poll``) and tested
with a table around DST changes and weekends; :class:`MarketHoursTrigger` adapts it to
APScheduler. ``us-equities`` is 04:00 (pre-market) to 20:00 (after-hours) America/New_York,
Monday to Friday, less the NYSE's holidays (the ``holidays`` package's calendar, for the years
it knows) and the dates listed in ``[schedule] holidays``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from importlib.metadata import version
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import ScheduleConfig

if TYPE_CHECKING:
    from holidays import HolidayBase

log = structlog.get_logger("monitor.schedule")


@dataclass(frozen=True, slots=True)
class Market:
    """A weekly session window in a time zone."""

    name: str
    timezone: tzinfo
    opens: time
    closes: time
    weekdays: frozenset[int]  # Monday is 0
    #: The exchange whose holidays close the market, as the ``holidays`` package names it.
    exchange: str | None = None


MARKETS: dict[str, Market] = {
    "us-equities": Market(
        "us-equities",
        ZoneInfo("America/New_York"),
        time(4, 0),
        time(20, 0),
        frozenset(range(5)),
        exchange="NYSE",
    ),
}


class Holidays:
    """The days a market has no session: its exchange's calendar (a ``holidays`` package
    ``HolidayBase``, which works a year out when it is first asked about it) and the dates the
    user listed. Outside the calendar's years only the listed dates count."""

    def __init__(
        self, listed: Iterable[date] = (), calendar: HolidayBase | None = None, exchange: str = ""
    ) -> None:
        self.listed = frozenset(listed)
        self.calendar = calendar
        self.exchange = exchange

    def __contains__(self, day: object) -> bool:
        return day in self.listed or (self.calendar is not None and day in self.calendar)

    @property
    def years(self) -> tuple[int, int] | None:
        """The first and last year the calendar knows; ``None`` without a calendar."""
        if self.calendar is None:
            return None
        return self.calendar.start_year, self.calendar.end_year

    def knows(self, year: int) -> bool:
        """Whether the calendar covers ``year`` (always, without a calendar)."""
        years = self.years
        return years is None or years[0] <= year <= years[1]

    def __str__(self) -> str:
        listed = f"{len(self.listed)} listed dates"
        if self.years is None:
            return listed
        first, last = self.years
        calendar = f"{self.exchange} holidays {first}-{last} (holidays {version('holidays')})"
        return f"{calendar} and {listed}" if self.listed else calendar

    def __repr__(self) -> str:
        return f"<Holidays {self}>"


def trading_holidays(market: Market, listed: Iterable[date] = ()) -> Holidays:
    """``market``'s exchange calendar from the ``holidays`` package, plus ``listed``."""
    if market.exchange is None:
        return Holidays(listed)
    from holidays import financial_holidays  # 50 ms: only for a market-hours schedule

    return Holidays(listed, financial_holidays(market.exchange), market.exchange)


def in_session(moment: datetime, market: Market, holidays: Container[date] = frozenset()) -> bool:
    local = moment.astimezone(market.timezone)
    return (
        local.weekday() in market.weekdays
        and local.date() not in holidays
        and market.opens <= local.time() < market.closes
    )


def next_open(
    moment: datetime, market: Market, holidays: Container[date] = frozenset()
) -> datetime:
    """The first session start at or after ``moment`` (in ``moment``'s time zone)."""
    local = moment.astimezone(market.timezone)
    day = local.date()
    for _ in range(400):
        if day.weekday() in market.weekdays and day not in holidays:
            start = datetime.combine(day, market.opens, tzinfo=market.timezone)
            if start >= local:
                return start.astimezone(moment.tzinfo)
        day += timedelta(days=1)
    raise ValueError(f"{market.name}: no session within 400 days")


def next_poll(
    previous: datetime | None,
    now: datetime,
    *,
    interval: timedelta,
    off_interval: timedelta,
    market: Market,
    holidays: Container[date] = frozenset(),
) -> datetime:
    """The next poll after ``previous``: ``interval`` in session, else ``off_interval``, but
    never later than the next session's start (so polling speeds up the moment it opens).

    Intervals are real time (computed in UTC), whatever ``previous``'s time zone: ten minutes
    after 01:55 EDT on the fall-back night is 01:05 EST. The result is in ``previous``'s zone.
    """
    if previous is None:
        return now
    start = previous.astimezone(UTC)
    if in_session(start, market, holidays):
        return (start + interval).astimezone(previous.tzinfo)
    upcoming = min(start + off_interval, next_open(start, market, holidays))
    return upcoming.astimezone(previous.tzinfo)


class MarketHoursTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler trigger around :func:`next_poll`. The first time it is asked about a year
    its holiday calendar does not cover, it logs ``market_holidays_unknown``."""

    def __init__(
        self,
        *,
        interval: timedelta,
        off_interval: timedelta,
        market: Market,
        holidays: Holidays | Iterable[date] = (),
        jitter: float | None = None,
    ) -> None:
        self.interval = interval
        self.off_interval = off_interval
        self.market = market
        self.holidays = holidays if isinstance(holidays, Holidays) else Holidays(holidays)
        self.jitter = jitter
        self._warned = False

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        year = now.astimezone(self.market.timezone).year
        if not self._warned and not self.holidays.knows(year):
            self._warned = True
            log.warning(
                "market_holidays_unknown",
                market=self.market.name,
                year=year,
                calendar=str(self.holidays),
            )
        moment = next_poll(
            previous_fire_time,
            now,
            interval=self.interval,
            off_interval=self.off_interval,
            market=self.market,
            holidays=self.holidays,
        )
        result: datetime = self._apply_jitter(moment, self.jitter, now)
        return result

    def __str__(self) -> str:
        return f"market_hours[{self.market.name}]"


def make_trigger(schedule: ScheduleConfig, interval: timedelta | None = None) -> Any:
    """The APScheduler trigger for a schedule; ``interval`` overrides ``schedule.interval``."""
    every = interval or schedule.interval
    jitter = schedule.jitter.total_seconds() or None
    if schedule.cron is not None:
        cron = CronTrigger.from_crontab(schedule.cron, timezone=ZoneInfo(schedule.timezone))
        cron.jitter = jitter
        return cron
    if schedule.market_hours is not None:
        market = MARKETS[schedule.market_hours]
        return MarketHoursTrigger(
            interval=every,
            off_interval=schedule.off_hours_interval or every,
            market=market,
            holidays=trading_holidays(market, schedule.holidays),
            jitter=jitter,
        )
    return IntervalTrigger(seconds=every.total_seconds(), jitter=jitter, timezone=UTC)


def missed_polls(trigger: Any, since: datetime, now: datetime, limit: int = 3) -> int:
    """How many scheduled polls fell in ``(since, now]``, counting up to ``limit``."""
    count, moment = 0, since
    while count < limit:
        nxt: datetime | None = trigger.get_next_fire_time(moment, moment)
        if nxt is None or nxt > now:
            break
        count += 1
        moment = nxt
    return count
