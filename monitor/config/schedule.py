"""``[schedule]``: when sources are polled (a fixed interval, a market-hours preset, or cron)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import field_validator, model_validator

from monitor.config.types import (
    FrozenModel,
    Interval,
    check_timezone,
    format_duration,
    key_problem,
    within,
)

MARKET_PRESETS = ("us-equities",)


class ScheduleConfig(FrozenModel):
    """``[schedule]``: a fixed interval, a market-hours preset, or a cron expression."""

    interval: Interval = timedelta(seconds=30)
    jitter: Annotated[timedelta, within("0s", "1h")] = timedelta(0)
    #: With ``market_hours``: the interval outside the market's hours and on weekends/holidays.
    off_hours_interval: Interval | None = None
    market_hours: Literal["us-equities"] | None = None
    #: Dates (``YYYY-MM-DD``, in the market's time zone) with no session.
    holidays: tuple[date, ...] = ()
    #: A crontab line (``"*/1 4-19 * * mon-fri"``), instead of ``interval``.
    cron: str | None = None
    timezone: str = "America/New_York"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleConfig:
        if self.cron is not None:
            if self.market_hours is not None:
                raise ValueError("give either cron or market_hours, not both")
            check_cron(self.cron, self.timezone)
        if self.off_hours_interval is not None and self.market_hours is None:
            raise ValueError("off_hours_interval needs market_hours")
        if self.holidays and self.market_hours is None:
            raise ValueError("holidays needs market_hours")
        return self


def check_cron(expression: str, timezone: str) -> None:
    """Raise ``ValueError`` naming what is wrong with a crontab line."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise key_problem("cron", str(exc)) from None


def describe_schedule(schedule: ScheduleConfig) -> str:
    if schedule.cron is not None:
        return f"cron '{schedule.cron}' ({schedule.timezone})"
    text = f"every {format_duration(schedule.interval)}"
    if schedule.market_hours is not None:
        off = schedule.off_hours_interval or schedule.interval
        text += f" in {schedule.market_hours} hours, every {format_duration(off)} outside"
    return text
