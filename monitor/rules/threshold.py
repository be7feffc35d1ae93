"""``type = "threshold"``: a numeric field compared with a value, with hysteresis. Pure."""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from monitor.config import ThresholdRuleConfig
from monitor.models import Account
from monitor.rules import lifecycle
from monitor.rules.base import Context, Outcome, show

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def holds(rule: ThresholdRuleConfig, value: object, against: Decimal | None = None) -> bool | None:
    """Whether ``value op against`` (default: the rule's value); ``None`` when not a number."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    return OPS[rule.op](value, rule.value if against is None else against)


def _movement(previous: object, current: object) -> str:
    if isinstance(previous, int | Decimal) and isinstance(current, int | Decimal):
        if current < previous:
            return "fell to"
        if current > previous:
            return "rose to"
    return "is"


def _check(
    rule: ThresholdRuleConfig, ctx: Context, number: str, account: Account
) -> lifecycle.Verdict | None:
    value = account.get(rule.field)
    state = holds(rule, value)
    if state is None:
        return None
    before = ctx.previous.get(number) if ctx.previous is not None else None
    prior = before.get(rule.field) if before is not None else None
    clears = None if rule.clear is None else not holds(rule, value, rule.clear)
    limit = rule.value if rule.clear is None else rule.clear
    return lifecycle.Verdict(
        holds=state,
        field=rule.field,
        previous=prior,
        current=value,
        firing=(
            f"{number}: {rule.field} {_movement(prior, value)} {show(value)} "
            + (f"({rule.op} {rule.value})" if state else f"(not yet clear: {rule.op} {limit})")
        ),
        resolved=f"{number}: {rule.field} back to {show(value)} (no longer {rule.op} {limit})",
        clears=clears,
    )


def _may_hold(rule: ThresholdRuleConfig, account: Account) -> bool:
    return holds(rule, account.get(rule.field)) is True


def evaluate_threshold(rule: ThresholdRuleConfig, ctx: Context) -> Outcome:
    """Fire when the condition holds (also on the first poll; after ``for`` if set), resolve
    when it no longer does (against ``clear`` when set)."""
    return lifecycle.run(rule, ctx, _check, may_hold=_may_hold)
