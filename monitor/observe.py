"""What the daemon tells the outside about its sources: systemd's status line, ``/readyz``
and the schedule gauges of ``/metrics`` (missed polls, next poll).

Lateness is counted in scheduled polls, never in seconds: a source polled every 10 minutes off
hours, or not at all during a cron line's quiet night, is not late for waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.health import Readiness
from monitor.metrics import MISSED_POLLS_LIMIT
from monitor.pipeline import SourcePipeline
from monitor.schedule import missed_polls

#: /readyz fails when the last successful poll is older than this many intervals.
READY_INTERVALS = 3


def status_line(pipelines: Mapping[str, SourcePipeline] | None) -> str:
    """One short human line for ``systemctl status`` (``None``: still starting)."""
    if pipelines is None:
        return "starting"
    polled = [p for p in pipelines.values() if p.last is not None]
    if not polled:
        return "started, first poll pending"
    firing = sum(p.firing for p in pipelines.values())
    failing = [p for p in polled if p.last is not None and not p.last.ok]
    times = [p.last_poll_at for p in polled if p.last_poll_at is not None]
    when = max(times).strftime("%H:%M:%SZ") if times else "?"
    if len(pipelines) == 1:
        last = polled[0].last
        head = (
            f"last poll {when} ok, {last.accounts} accounts"
            if last is not None and last.ok
            else f"last poll {when} FAILED: {last.error if last else '?'}"
        )
    else:
        head = f"{len(pipelines)} sources at {when}: {len(polled) - len(failing)} ok"
        if failing:
            head += ", failing: " + ", ".join(p.source for p in failing)
    return f"{head}; {firing} alerts firing"


def readiness(
    pipelines: Mapping[str, SourcePipeline], triggers: Mapping[str, Any], now: datetime
) -> Readiness:
    """Ready when every source polled successfully within its last three scheduled polls
    (``triggers``: each source's APScheduler trigger, which knows when polls were due)."""
    reasons: list[str] = []
    sources: dict[str, Any] = {}
    for name, pipeline in pipelines.items():
        success = pipeline.last_success
        sources[name] = {"last_success_at": success.isoformat() if success else None}
        if success is None:
            reasons.append(f"source {name}: no successful poll yet")
            continue
        trigger = triggers.get(name)
        if trigger is not None and missed_polls(trigger, success, now, READY_INTERVALS) >= (
            READY_INTERVALS
        ):
            why = f"source {name}: no successful poll in the last {READY_INTERVALS} polls"
            last = pipeline.last
            if last is not None and not last.ok:
                why += f" (last error: {last.error})"
            reasons.append(why)
    return Readiness(not reasons, reasons, {"sources": sources})


def missed_since_success(
    trigger: Any, last_success: datetime | None, scheduled_at: datetime, now: datetime
) -> int:
    """``balance_monitor_missed_polls`` of one source: the polls ``trigger`` scheduled after its
    last successful poll (after ``scheduled_at``, when it was first scheduled, if it never
    succeeded), up to ``now``, counted up to :data:`MISSED_POLLS_LIMIT`."""
    since = last_success if last_success is not None else scheduled_at
    return missed_polls(trigger, since, now, MISSED_POLLS_LIMIT)


def missed_by_source(
    pipelines: Mapping[str, SourcePipeline],
    triggers: Mapping[str, Any],
    scheduled_at: Mapping[str, datetime],
    now: datetime,
) -> dict[str, int]:
    """:func:`missed_since_success` of every scheduled source."""
    return {
        name: missed_since_success(trigger, pipeline.last_success, scheduled_at[name], now)
        for name, pipeline in pipelines.items()
        if (trigger := triggers.get(name)) is not None and name in scheduled_at
    }
