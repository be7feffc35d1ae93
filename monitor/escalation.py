"""Escalation: an alert that keeps firing unacknowledged goes to more sinks, step by step. Pure.

A condition rule's ``escalate = [{ after = "15m", sinks = [...] }, ...]`` sends the alert to
each step's sinks once, when it has fired for ``after`` without being acknowledged. The steps
sent are counted on the alert's state (``ActiveAlert.escalated``), which the store keeps: a
restart neither starts the clock over (it runs from ``started_at``) nor sends a step twice. An
acknowledged episode escalates no further; a new episode starts from the first step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.config import EscalationStep, RuleConfig
from monitor.models import Account, ActiveAlert, Alert, Snapshot, Status
from monitor.rules import AlertKey
from monitor.rules.base import Context, RuleProblem, alert, watched_field
from monitor.silences import Ack

__all__ = ["Escalated", "Escalation", "escalate", "next_escalation"]


@dataclass(frozen=True, slots=True)
class Escalation:
    """One alert to send to more sinks now, with the id its notification gets."""

    id: str
    alert: Alert
    sinks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Escalated:
    """What :func:`escalate` found: the escalations due, the alert states with their steps
    counted, and what the rules' templates could not render (logged like the rules')."""

    due: list[Escalation]
    active: dict[AlertKey, ActiveAlert]
    problems: tuple[RuleProblem, ...] = ()


def escalate(
    rules: Sequence[RuleConfig],
    active: Mapping[AlertKey, ActiveAlert],
    accounts: Mapping[str, Account],
    acks: Mapping[str, Ack],
    *,
    source: str,
    now: datetime,
) -> Escalated:
    """The escalations due at ``now``, and ``active`` with their steps counted."""
    by_name: dict[str, tuple[RuleConfig, tuple[EscalationStep, ...]]] = {
        r.name: (r, steps) for r in rules if (steps := getattr(r, "escalate", ()))
    }
    if not by_name:
        return Escalated([], dict(active))
    ctx = Context(previous=None, current=Snapshot(source, now, accounts), active={})
    out: list[Escalation] = []
    state = dict(active)
    for key, current in active.items():
        found = by_name.get(current.rule)
        if found is None or current.state != "firing" or current.fingerprint in acks:
            continue
        rule, steps = found
        due = [
            i
            for i in range(current.escalated, len(steps))
            if now - current.started_at >= steps[i].after
        ]
        if not due:
            continue
        number = current.account_number
        account = accounts.get(number) if number is not None else None
        field = watched_field(rule)
        waited = now - current.started_at
        made = alert(
            ctx,
            status=Status.FIRING,
            fingerprint=current.fingerprint,
            rule=rule,
            account=account,
            number=number,
            field=field,
            previous=None,
            current=account.get(field) if account is not None and field is not None else None,
            summary=f"{number}: {rule.name} firing for {_minutes(waited)} unacknowledged"
            " (escalated)",
            started_at=current.started_at,
        )
        sinks: list[str] = []
        for i in due:
            sinks += [s for s in steps[i].sinks if s not in sinks]
        text = f"{current.fingerprint}\x1fescalate\x1f{due[-1]}"
        ident = hashlib.sha256(text.encode()).hexdigest()[:32]
        out.append(Escalation(ident, made, tuple(sinks)))
        state[key] = replace(current, escalated=due[-1] + 1)
    return Escalated(out, state, tuple(ctx.problems))


def next_escalation(
    rules: Sequence[RuleConfig],
    active: Mapping[AlertKey, ActiveAlert],
    acks: Mapping[str, Ack],
) -> datetime | None:
    """When the next step of an escalation falls due (``None``: none will, as things are).

    Steps fall due with time alone, not with what a poll sees: with polls minutes apart (the
    account stream on), the daemon steps the source when this time comes instead of waiting
    for the next poll."""
    steps_of = {r.name: steps for r in rules if (steps := getattr(r, "escalate", ()))}
    due = [
        current.started_at + steps[current.escalated].after
        for current in active.values()
        if current.state == "firing"
        and current.fingerprint not in acks
        and (steps := steps_of.get(current.rule, ()))
        and current.escalated < len(steps)
    ]
    return min(due, default=None)


def _minutes(elapsed: timedelta) -> str:
    seconds = int(elapsed.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
