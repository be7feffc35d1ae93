"""``type = "threshold"``: a numeric field compared with a value; one alert per episode. Pure."""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from monitor.config import ThresholdRuleConfig
from monitor.models import ActiveAlert, Status
from monitor.rules.base import Context, Outcome, alert, fingerprint, matches, show

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def holds(rule: ThresholdRuleConfig, value: object) -> bool | None:
    """Whether the condition holds; ``None`` when the field is absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    return OPS[rule.op](value, rule.value)


def _movement(previous: object, current: object) -> str:
    if isinstance(previous, int | Decimal) and isinstance(current, int | Decimal):
        if current < previous:
            return "fell to"
        if current > previous:
            return "rose to"
    return "is"


def evaluate_threshold(rule: ThresholdRuleConfig, ctx: Context) -> Outcome:
    """Fire when the condition becomes true (also on the first poll), resolve when it is false.

    An account that is missing, skipped, or lacks the field keeps its state: an alert is never
    resolved for want of data.
    """
    out = Outcome()
    source = ctx.current.source
    for key, carried in ctx.active.items():
        if key[0] == rule.name and key[1] is not None:
            out.active[key] = carried  # kept unless resolved below
    for number, account in ctx.candidates():
        if number in ctx.skip or not matches(number, rule.accounts):
            continue
        value = account.get(rule.field)
        state = holds(rule, value)
        if state is None:
            continue
        key = (rule.name, number)
        firing = ctx.active.get(key)
        before = ctx.previous.get(number) if ctx.previous is not None else None
        prior = before.get(rule.field) if before is not None else None
        if state and firing is None:
            fp = fingerprint(source, rule.name, number, ctx.now)
            out.active[key] = ActiveAlert(rule.name, number, fp, ctx.now)
            summary = (
                f"{number}: {rule.field} {_movement(prior, value)} {show(value)} "
                f"({rule.op} {rule.value})"
            )
            out.alerts.append(
                alert(
                    ctx,
                    status=Status.FIRING,
                    fingerprint=fp,
                    rule=rule,
                    account=account,
                    field=rule.field,
                    previous=prior,
                    current=value,
                    summary=summary,
                )
            )
        elif not state and firing is not None:
            del out.active[key]
            summary = (
                f"{number}: {rule.field} back to {show(value)} (no longer {rule.op} {rule.value})"
            )
            out.alerts.append(
                alert(
                    ctx,
                    status=Status.RESOLVED,
                    fingerprint=firing.fingerprint,
                    rule=rule,
                    account=account,
                    field=rule.field,
                    previous=prior,
                    current=value,
                    summary=summary,
                )
            )
    # Firing alerts of accounts the rule no longer selects (its `accounts` changed) are dropped.
    for key in [k for k in out.active if k[1] is not None and not matches(k[1], rule.accounts)]:
        del out.active[key]
    return out
