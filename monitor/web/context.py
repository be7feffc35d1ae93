"""What the dashboard's handlers read: the store, the config in force, the scheduler's next
polls and the clock (each a callable, so a reload or a test changes what they see)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitor.config import Config
from monitor.store.base import Store


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


def _no_polls() -> Mapping[str, float]:
    return {}


@dataclass(frozen=True)
class WebContext:
    store: Store
    config: Callable[[], Config]
    #: Epoch seconds of each source's next scheduled poll.
    next_polls: Callable[[], Mapping[str, float]] = _no_polls
    now: Callable[[], datetime] = field(default=_utcnow)
