"""``restriction_change`` and ``change``: a field differs from the previous snapshot. Pure.

These are events, not conditions: each change is one ``firing`` notification with its own
fingerprint, and there is no ``resolved`` one. The first poll only records the baseline, and an
account seen for the first time has nothing to compare with.
"""

from __future__ import annotations

from monitor.config import ChangeRuleConfig, RestrictionChangeRuleConfig
from monitor.models import Status
from monitor.rules.base import Context, Outcome, alert, fingerprint, matches, show


def _changes(
    rule: RestrictionChangeRuleConfig | ChangeRuleConfig, field: str, ctx: Context
) -> Outcome:
    out = Outcome()
    if ctx.previous is None:
        return out
    for number, account in ctx.candidates():
        before = ctx.previous.get(number)
        if before is None or number in ctx.skip or not matches(number, rule.accounts):
            continue
        old, new = before.get(field), account.get(field)
        if old == new:
            continue
        if field == "restriction":
            reason = account.get("restriction_reason")
            summary = f"{number}: restriction changed from {show(old)} to {show(new)}"
            if reason:
                summary += f" (reason: {reason})"
        else:
            summary = f"{number}: {field} changed from {show(old)} to {show(new)}"
        out.alerts.append(
            alert(
                ctx,
                status=Status.FIRING,
                fingerprint=fingerprint(ctx.current.source, rule.name, number, ctx.now, field),
                rule=rule,
                account=account,
                field=field,
                previous=old,
                current=new,
                summary=summary,
            )
        )
    return out


def evaluate_restriction_change(rule: RestrictionChangeRuleConfig, ctx: Context) -> Outcome:
    """Fire when ``restriction`` differs from the previous snapshot, in either direction."""
    return _changes(rule, "restriction", ctx)


def evaluate_change(rule: ChangeRuleConfig, ctx: Context) -> Outcome:
    """Fire when the rule's ``field`` differs from the previous snapshot."""
    return _changes(rule, rule.field, ctx)
