"""One poll of one source as a pure step: what it saw -> the new state and every write. Pure.

:func:`step` (added with the pure poll step) takes the source's state, the parse outcome or the
fetch error, the rules, the mutes and ``now``; it returns the new state and one
:class:`PollWrite` describing everything the poll writes: account upserts and deletes, alert
state, history points, source health, and the notifications queued or held. The store writes a
``PollWrite`` in one transaction (:meth:`monitor.store.Store.commit`); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from monitor.models import Account, ActiveAlert, JSONValue, Notification
from monitor.rules import AlertKey, SourceHealth

__all__ = ["Delivery", "HistoryPoint", "PollRecord", "PollWrite", "SourceState"]

#: One value of a field from the time it was seen: (account, field, observed_at, value).
HistoryPoint: TypeAlias = tuple[str, str, datetime, JSONValue]
#: (account number, field) -> the field's values over time, oldest first.
HistoryMap: TypeAlias = dict[tuple[str, str], list[tuple[datetime, JSONValue]]]


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store keeps of a source between polls (and hands back at start-up)."""

    accounts: dict[str, Account] | None  # None: no successful poll yet (baseline pending)
    health: SourceHealth
    active: dict[AlertKey, ActiveAlert]
    last_success_at: datetime | None = None
    history: HistoryMap | None = None


@dataclass(frozen=True, slots=True)
class PollRecord:
    """The outcome of one poll, for ``sources`` and ``status``."""

    at: datetime
    ok: bool
    error: str | None = None
    account_count: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification and the sinks it goes to: queued for delivery now, or held by the mute
    window ``held_by`` until it closes."""

    notification: Notification
    sinks: tuple[str, ...]
    held_by: str | None = None


@dataclass(frozen=True, slots=True)
class PollWrite:
    """Everything one poll writes, in one transaction.

    ``active`` (when not ``None``) replaces the source's rule alerts; only the rows that differ
    from ``active_before`` are written when that is given. ``health.down`` is the source's
    ``source_down`` alert. ``history`` adds values of windowed fields, ``history_deletes``
    drops those that left every window.
    """

    source: str
    poll: PollRecord
    health: SourceHealth
    upserts: tuple[Account, ...] = ()
    deletes: tuple[str, ...] = ()
    active: Mapping[AlertKey, ActiveAlert] | None = None
    active_before: Mapping[AlertKey, ActiveAlert] | None = None
    history: tuple[HistoryPoint, ...] = ()
    history_deletes: tuple[HistoryPoint, ...] = ()
    deliveries: tuple[Delivery, ...] = ()

    @property
    def queued(self) -> tuple[Delivery, ...]:
        """The deliveries that go to the outbox now."""
        return tuple(d for d in self.deliveries if d.held_by is None)

    @property
    def held(self) -> tuple[Delivery, ...]:
        """The deliveries a mute window holds."""
        return tuple(d for d in self.deliveries if d.held_by is not None)
