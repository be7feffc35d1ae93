"""``[[digests]]``: a scheduled summary of the accounts, the alerts and the sources' health."""

from __future__ import annotations

import re
from datetime import time

from pydantic import Field, field_validator

from monitor.config.mutes import WEEKDAYS, Weekdays
from monitor.config.types import FrozenModel, Name, check_timezone

_AT = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(:[0-5]\d)?")


class DigestConfig(FrozenModel):
    """``[[digests]]``: one message per sink at ``at`` (local time of ``timezone``) on ``days``."""

    name: Name
    #: ``"16:15"``: the local time of ``timezone`` (24-hour HH:MM; HH:MM:SS is accepted too).
    at: str
    #: An IANA zone; ``[schedule] timezone`` (the market's) when left out.
    timezone: str | None = None
    #: The days it is sent on (every day when left out).
    days: Weekdays = WEEKDAYS
    #: Skip the exchange's holidays (the calendar of ``[schedule] market_hours``, with
    #: ``[schedule] holidays``).
    market_days: bool = False
    sinks: tuple[Name, ...] = Field(min_length=1)
    #: Account number globs, as in rules.
    accounts: tuple[str, ...] = Field(default=("*",), min_length=1)
    #: The sources it covers; every source when left out.
    sources: tuple[Name, ...] | None = Field(default=None, min_length=1)

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if not _AT.fullmatch(value):
            raise ValueError("must be a time like '16:15' (24-hour HH:MM)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @property
    def clock(self) -> time:
        """``at`` as a time of day."""
        parts = [int(part) for part in self.at.split(":")]
        return time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)

    @property
    def weekdays(self) -> frozenset[int]:
        """``days`` as ``date.weekday()`` numbers (Monday is 0)."""
        return frozenset(WEEKDAYS.index(day) for day in self.days)
