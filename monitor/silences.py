"""Silences and acknowledgements: what an operator said about alerts, outside the TOML. Pure.

A :class:`Silence` is an ad-hoc mute window with matchers (rule, account glob, source, labels):
while it is active, the notifications of the alerts it matches are held exactly as a
``[[mute]]`` window holds them (:mod:`monitor.mutes` settles them when it ends). An
:class:`Ack` acknowledges one alert episode (its fingerprint): its ``repeat`` reminders and its
escalation stop, its resolution is still notified and carries who acknowledged it.

Both are written by the CLI or the HTTP API (with the daemon running or not) and read by the
daemon into a :class:`ControlState`, an input of :func:`monitor.cycle.step` and of
:func:`monitor.delivery.release_held`. Times are epoch seconds (what the store keeps).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from fnmatch import fnmatchcase

from monitor.models import Alert

__all__ = [
    "EMPTY",
    "Ack",
    "ControlState",
    "Silence",
    "new_silence_id",
    "parse_until",
]

#: The prefix of a held row's ``mute`` when a silence (not a ``[[mute]]`` window) holds it.
HOLDER_PREFIX = "silence:"


@dataclass(frozen=True, slots=True)
class Silence:
    """An ad-hoc mute window: it holds the notifications of the alerts all its matchers match
    from ``starts_at`` until ``ends_at`` (or until it is expired by hand, ``expired_at``)."""

    id: str
    starts_at: float
    ends_at: float
    rule: str | None = None
    account: str | None = None  # a glob, as rules' ``accounts``
    source: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    comment: str = ""
    author: str = ""
    created_at: float = 0.0
    expired_at: float | None = None

    @property
    def holder(self) -> str:
        """The name a held notification records as what holds it."""
        return HOLDER_PREFIX + self.id

    @property
    def until(self) -> float:
        """When it stops holding: its end, or when it was expired if that came first."""
        return self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.until

    def matches(self, alert: Alert) -> bool:
        """Whether every matcher given matches ``alert`` (a silence has at least one)."""
        if self.rule is not None and alert.rule != self.rule:
            return False
        if self.account is not None and (
            alert.account_number is None or not fnmatchcase(alert.account_number, self.account)
        ):
            return False
        if self.source is not None and alert.source != self.source:
            return False
        return all(alert.labels.get(k) == v for k, v in self.labels.items())

    def matchers(self) -> dict[str, object]:
        """The matchers given, by their CLI / API name."""
        found: dict[str, object] = {}
        for key in ("rule", "account", "source"):
            value = getattr(self, key)
            if value is not None:
                found[key] = value
        if self.labels:
            found["labels"] = dict(self.labels)
        return found


@dataclass(frozen=True, slots=True)
class Ack:
    """One alert episode acknowledged: by whom, when (epoch seconds), why."""

    fingerprint: str
    rule: str
    account_number: str | None
    source: str
    at: float
    author: str = ""
    comment: str = ""
    #: The notification id it was given by, if it was given by one.
    notification_id: str | None = None


@dataclass(frozen=True, slots=True)
class ControlState:
    """The silences and acknowledgements the daemon knows of."""

    silences: tuple[Silence, ...] = ()
    acks: Mapping[str, Ack] = field(default_factory=dict)

    def silencing(self, alert: Alert, now: datetime) -> Silence | None:
        """The first active silence that matches ``alert``."""
        moment = now.timestamp()
        return next((s for s in self.silences if s.active(moment) and s.matches(alert)), None)

    def active_silences(self, now: float) -> list[Silence]:
        return [s for s in self.silences if s.active(now)]


EMPTY = ControlState()


def new_silence_id(now: float) -> str:
    """A short id that is new every time: 12 hex digits."""
    text = f"{now!r}\x1f{secrets.token_hex(8)}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_until(text: str, now: datetime) -> datetime:
    """``--until``: an ISO 8601 time (without a zone: local time), or ``HH:MM`` today in local
    time (``now`` must be in that zone, as ``datetime.now().astimezone()`` gives it).

    Raises ``ValueError`` naming what is wrong; a time not after ``now`` is refused too."""
    text = text.strip()
    moment: datetime | None = None
    if len(text) in (4, 5) and ":" in text:
        try:
            clock = time.fromisoformat(text.zfill(5))
        except ValueError:
            clock = None
        if clock is not None:
            moment = datetime.combine(now.date(), clock, tzinfo=now.tzinfo)
    if moment is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"'{text}' is not a time: give HH:MM (today) or ISO 8601 "
                "(2026-05-01T18:00, 2026-05-01T18:00:00+02:00)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=now.tzinfo)
    if moment <= now:
        raise ValueError(f"'{text}' is not in the future")
    return moment


def resolve_account(numbers: Iterable[str], pattern: str) -> tuple[str, bool]:
    """The account a silence names (``silence add --account``, the bot's ``/silence``), as
    ``/balance`` reads it: ``12345678`` is ``12345678@vision`` when that is the one polled
    account with that number (a silence matches whole account numbers or globs); and whether
    any polled account matches."""
    known = sorted(set(numbers))
    if pattern not in known and not any(c in pattern for c in "*?["):
        same = [n for n in known if n.split("@", 1)[0] == pattern]
        if len(same) == 1:
            return same[0], True
    return pattern, any(fnmatchcase(n, pattern) for n in known)
