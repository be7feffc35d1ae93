"""When a digest (``[[digests]]``) is due, and the period it covers. Pure: ``now`` is a parameter.

A digest covers the time since its *previous scheduled occurrence*: for the digest of a day
that is a digest day, the occurrence before that day's (so the scheduled message, a catch-up
after a restart and ``balance-monitor digest NAME --print`` later that day all compare with
the same moment); on any other day, the last occurrence before ``now``.
"""

from __future__ import annotations

import uuid
from collections.abc import Container
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.config import DigestConfig

#: How far back the previous occurrence is looked for (``days`` and holidays leave gaps).
LOOKBACK_DAYS = 400
_NAMESPACE = uuid.UUID("6f1c2a43-5d0e-4f55-9a0e-3b0f7d1c9e21")


def occurrence(digest: DigestConfig, day: date, zone: ZoneInfo) -> datetime:
    """The moment of ``day``'s ``at`` in ``zone``: on a spring-forward day a time that does
    not exist is the same wall time after the shift (02:30 becomes 03:30)."""
    local = datetime.combine(day, digest.clock, tzinfo=zone)
    return local.astimezone(UTC).astimezone(zone)


def is_digest_day(digest: DigestConfig, day: date, holidays: Container[date]) -> bool:
    """Whether ``day`` is one of ``days`` (and, with ``market_days``, no exchange holiday)."""
    return day.weekday() in digest.weekdays and not (digest.market_days and day in holidays)


def due_today(
    digest: DigestConfig, now: datetime, zone: ZoneInfo, holidays: Container[date]
) -> datetime | None:
    """Today's occurrence (in ``zone``) if today is a digest day and it has come; else None."""
    today = now.astimezone(zone).date()
    if not is_digest_day(digest, today, holidays):
        return None
    moment = occurrence(digest, today, zone)
    return moment if moment <= now else None


def previous_occurrence(
    digest: DigestConfig, now: datetime, zone: ZoneInfo, holidays: Container[date]
) -> datetime | None:
    """The start of the period a digest rendered at ``now`` covers: the scheduled occurrence
    before today's (on a digest day) or before ``now`` (on another day); ``None`` when there
    is none within :data:`LOOKBACK_DAYS`."""
    today = now.astimezone(zone).date()
    bound = occurrence(digest, today, zone) if is_digest_day(digest, today, holidays) else now
    for back in range(LOOKBACK_DAYS + 1):
        day = today - timedelta(days=back)
        if is_digest_day(digest, day, holidays):
            moment = occurrence(digest, day, zone)
            if moment < bound:
                return moment
    return None


def digest_id(name: str, day: date) -> str:
    """The scheduled digest's notification id: the same for a name and a local day, whoever
    (a restart, a catch-up, another replica) queues it."""
    return str(uuid.uuid5(_NAMESPACE, f"digest:{name}:{day.isoformat()}"))


def manual_id() -> str:
    """A digest asked for by hand has an id of its own: it never stands in for the scheduled."""
    return str(uuid.uuid4())
