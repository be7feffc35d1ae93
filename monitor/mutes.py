"""``[[mute]]`` windows: when notifications are held, and what is sent when a window ends. Pure.

While a window covering a rule is open, the rule's alerts still change state (and that state
is recorded), but their notifications are held in the state database instead of queued. When
no window covers the rule any more, :func:`settle` decides per sink and alert episode
(fingerprint) what the held notifications become:

* still firing (only ``firing`` held): the latest one is sent (repeats collapse into one);
* fired and resolved inside the window: one ``resolved`` notification saying so
  (``mute_resolved = "summary"``, the default), or nothing (``"drop"``);
* resolved inside the window after firing before it (only its end held, or a repeat and its
  end): the ``resolved`` is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.config import WEEKDAYS, MuteConfig
from monitor.models import Notification, Status


def _clock(text: str) -> time | None:
    """``"08:30"`` -> 08:30; ``"24:00"`` -> ``None`` (the end of the day)."""
    if text == "24:00":
        return None
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def window_at(mute: MuteConfig, now: datetime) -> tuple[datetime, datetime] | None:
    """The window of ``mute`` open at ``now`` as (start, end), or ``None``."""
    zone = ZoneInfo(mute.timezone)
    local = now.astimezone(zone)
    # "23:59" ends a window at the end of the day; it starts one at 23:59.
    start_clock = _clock(mute.start) or time(0)
    end_clock = None if mute.end == "23:59" else _clock(mute.end)
    for back in (0, 1):  # a window that began yesterday may run past midnight
        day = local.date() - timedelta(days=back)
        if WEEKDAYS[day.weekday()] not in mute.days:
            continue
        start = datetime.combine(day, start_clock, tzinfo=zone)
        if end_clock is None:
            end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        elif end_clock > start_clock:
            end = datetime.combine(day, end_clock, tzinfo=zone)
        else:
            end = datetime.combine(day + timedelta(days=1), end_clock, tzinfo=zone)
        if start <= local < end:
            return start, end
    return None


def muting(mutes: Iterable[MuteConfig], rule: str, now: datetime) -> MuteConfig | None:
    """The first window covering ``rule`` that is open at ``now``."""
    return next((m for m in mutes if m.covers(rule) and window_at(m, now) is not None), None)


@dataclass(frozen=True, slots=True)
class Held:
    """One held notification for one sink (a row of the ``held`` table)."""

    seq: int
    sink: str
    source: str
    mute: str
    notification: Notification


@dataclass(frozen=True, slots=True)
class Settlement:
    #: (notification, sink, source) to queue now.
    release: list[tuple[Notification, str, str]]
    #: Held rows that are done with (released, summarised or dropped).
    settled: list[int]


def settle(
    held: Sequence[Held],
    *,
    still_muted: Callable[[Held], bool],
    drop_resolved: Callable[[str], bool],
) -> Settlement:
    """What the held notifications no longer muted (by a window or a silence) become (see
    the module's doc)."""
    groups: dict[tuple[str, str], list[Held]] = {}
    for row in held:
        if not still_muted(row):
            key = (row.sink, row.notification.alert.fingerprint)
            groups.setdefault(key, []).append(row)
    out = Settlement([], [])
    for rows in groups.values():
        out.settled.extend(r.seq for r in rows)
        first, last = rows[0], rows[-1]
        alert = last.notification.alert
        # Still firing (send the latest), or its firing went out before the window: only its
        # end was held, or a repeat (notified after the episode began) and its end.
        opened = first.notification.alert
        before = opened.status is Status.RESOLVED or (
            opened.started_at is not None and opened.started_at < opened.observed_at
        )
        if alert.status is Status.FIRING or before:
            out.release.append((last.notification, last.sink, last.source))
        elif not drop_resolved(alert.rule):
            out.release.append((summarised(first, last), last.sink, last.source))
    return out


def summarised(first: Held, last: Held) -> Notification:
    """One ``resolved`` notification for an alert that fired and resolved while muted."""
    fired = first.notification.alert
    ended = last.notification.alert
    when = fired.observed_at.strftime("%Y-%m-%d %H:%M UTC")
    summary = f"{ended.summary} (fired {when} and resolved while muted by '{last.mute}')"
    text = f"{first.notification.id}\x1f{last.notification.id}\x1fmuted"
    ident = hashlib.sha256(text.encode()).hexdigest()[:32]
    return Notification(ident, replace(ended, summary=summary, started_at=fired.observed_at))
