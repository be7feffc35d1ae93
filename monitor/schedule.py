"""When to poll: a fixed interval, a cron line, or market hours (fast in session, slow outside).

The market-hours arithmetic is pure (``in_session``, ``next_open``, ``next_poll``) and tested
with a table around DST changes and weekends; :class:`MarketHoursTrigger` adapts it to
APScheduler. ``us-equities`` is 04:00 (pre-market) to 20:00 (after-hours) America/New_York,
Monday to Friday, less the configured holidays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import ScheduleConfig


@dataclass(frozen=True, slots=True)
class Market:
    """A weekly session window in a time zone."""

    name: str
    timezone: tzinfo
    opens: time
    closes: time
    weekdays: frozenset[int]  # Monday is 0


MARKETS: dict[str, Market] = {
    "us-equities": Market(
        "us-equities", ZoneInfo("America/New_York"), time(4, 0), time(20, 0), frozenset(range(5))
    ),
}


def in_session(moment: datetime, market: Market, holidays: frozenset[date] = frozenset()) -> bool:
    local = moment.astimezone(market.timezone)
    return (
        local.weekday() in market.weekdays
        and local.date() not in holidays
        and market.opens <= local.time() < market.closes
    )


def next_open(
    moment: datetime, market: Market, holidays: frozenset[date] = frozenset()
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
    holidays: frozenset[date] = frozenset(),
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
    """APScheduler trigger around :func:`next_poll`."""

    def __init__(
        self,
        *,
        interval: timedelta,
        off_interval: timedelta,
        market: Market,
        holidays: Iterable[date] = (),
        jitter: float | None = None,
    ) -> None:
        self.interval = interval
        self.off_interval = off_interval
        self.market = market
        self.holidays = frozenset(holidays)
        self.jitter = jitter

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
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
        return MarketHoursTrigger(
            interval=every,
            off_interval=schedule.off_hours_interval or every,
            market=MARKETS[schedule.market_hours],
            holidays=schedule.holidays,
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
