"""``[[mute]]``: quiet hours, a weekly window in a time zone during which notifications wait."""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeAlias

from pydantic import AfterValidator, Field, field_validator, model_validator

from monitor.config.types import FrozenModel, Name, check_timezone

Weekday: TypeAlias = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")


def _weekdays(value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
    if not value:
        raise ValueError("must not be empty")
    return tuple(day for day in WEEKDAYS if day in value)


#: ``days`` of a mute window or a digest: at least one, in the week's order, each once.
Weekdays: TypeAlias = Annotated[tuple[Weekday, ...], AfterValidator(_weekdays)]


class MuteConfig(FrozenModel):
    """``[[mute]]``: quiet hours. Alert state still changes; notifications are held."""

    name: Name
    #: The days a window starts on (all days when left out).
    days: Weekdays = WEEKDAYS
    start: str = "00:00"
    #: ``"23:59"`` and ``"24:00"`` mean the end of the day; an ``end`` before ``start`` runs
    #: past midnight into the next day.
    end: str = "24:00"
    timezone: str = "America/New_York"
    #: The rules it mutes (``source_down`` included); every rule when left out.
    rules: tuple[Name, ...] | None = Field(default=None, min_length=1)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError("must be a time like '08:30' (24-hour HH:MM)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _span(self) -> MuteConfig:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        return self

    def covers(self, rule: str) -> bool:
        return self.rules is None or rule in self.rules
