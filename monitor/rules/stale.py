"""``type = "stale"``: a field has not changed for longer than ``for``. Pure.

The wait starts when an account is first seen and again whenever the field changes; a value in
``ignore`` is never stale (``unsettled_cash = 0`` is settled, not stuck). The alert resolves
when the value changes (and the wait starts over) or becomes an ignored value.
"""

from __future__ import annotations

from decimal import Decimal

from monitor.config import StaleRuleConfig, format_duration
from monitor.models import Account, JSONValue
from monitor.rules import lifecycle
from monitor.rules.base import Context, Outcome, show


def _ignored(rule: StaleRuleConfig, value: JSONValue) -> bool:
    for ignored in rule.ignore:
        numeric = isinstance(ignored, int | Decimal) and not isinstance(ignored, bool)
        if numeric and isinstance(value, int | Decimal) and not isinstance(value, bool):
            if Decimal(value) == Decimal(ignored):
                return True
        elif ignored == value:
            return True
    return False


def _check(
    rule: StaleRuleConfig, ctx: Context, number: str, account: Account
) -> lifecycle.Verdict | None:
    if rule.field not in account.record:
        return None
    value = account.get(rule.field)
    before = ctx.previous.get(number) if ctx.previous is not None else None
    # No previous record with the field (first seen, or the field was missing): no change, as
    # an alert is never resolved (nor its wait restarted) for want of data.
    prior = value
    if before is not None and rule.field in before.record:
        prior = before.get(rule.field)
    after = format_duration(rule.for_)
    return lifecycle.Verdict(
        holds=not _ignored(rule, value),
        field=rule.field,
        previous=prior,
        current=value,
        firing=f"{number}: {rule.field} unchanged at {show(value)} for {after}",
        resolved=f"{number}: {rule.field} changed from {show(prior)} to {show(value)}",
        restart=prior != value,
    )


def evaluate_stale(rule: StaleRuleConfig, ctx: Context) -> Outcome:
    return lifecycle.run(rule, ctx, _check)
