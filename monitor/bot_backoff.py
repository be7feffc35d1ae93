"""How long the Telegram bot waits after a failed ``getUpdates``, pure: one table of cases.

:mod:`monitor.telegram_bot` asks :func:`after_failure` with the failure's ``status`` and
``retry_after``, how many failures in a row there were, and a jitter in [0, 1), and logs what it
says. Nothing here sleeps or reads the clock.
"""

from __future__ import annotations

import enum
import math

__all__ = [
    "AUTH_WAIT",
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "CONFLICT_WAIT",
    "RETRY_AFTER_MAX",
    "Failure",
    "after_failure",
    "backoff",
]

#: The backoff after a failed ``getUpdates``: from this, doubling, to :data:`BACKOFF_MAX`.
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
#: How long a 409 (another consumer of the bot's updates) waits before asking again.
CONFLICT_WAIT = 60.0
#: The longest wait a 429's ``retry_after`` gets (Telegram's can be hours after a flood): the
#: bot asks again then, and waits again if still refused.
RETRY_AFTER_MAX = 300.0
#: How long a 401 or 404 (a wrong or revoked token: asking again changes nothing) waits; a
#: reload with the right token starts the bot again at once.
AUTH_WAIT = 600.0


class Failure(enum.Enum):
    """What a failed call means for the bot (each is logged as an event of its own)."""

    FAILED = "failed"  # a connection error, a timeout, a 5xx: the doubling backoff
    CONFLICT = "conflict"  # 409: another consumer of the bot's updates
    UNAUTHORIZED = "unauthorized"  # 401/404: a wrong token, or no Bot API at api_url
    RATE_LIMITED = "rate_limited"  # retry_after given (a 429)


def backoff(failures: int, jitter: float) -> float:
    """The ``failures``-th wait in a row: 1, 2, 4 ... 60 s, times 0.5 to 1 (``jitter``)."""
    steps = min(10, max(0, failures - 1))
    return min(BACKOFF_MAX, BACKOFF_MIN * 2.0**steps) * (0.5 + jitter / 2)


def after_failure(
    status: int | None, retry_after: float | None, failures: int, jitter: float
) -> tuple[Failure, float]:
    """What a failure is and the seconds to wait: ``retry_after`` within 0 and
    :data:`RETRY_AFTER_MAX` (not a number: the most), jittered long waits for a conflict or a
    wrong token, else :func:`backoff`."""
    if status == 409:
        return Failure.CONFLICT, CONFLICT_WAIT * (0.5 + jitter / 2)
    if status in {401, 404}:
        return Failure.UNAUTHORIZED, AUTH_WAIT * (0.5 + jitter / 2)
    if retry_after is not None:
        if math.isnan(retry_after):
            return Failure.RATE_LIMITED, RETRY_AFTER_MAX
        return Failure.RATE_LIMITED, min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    return Failure.FAILED, backoff(failures, jitter)
