"""``restriction_change`` and ``change``: a field differs from the previous snapshot. Pure.

These are events, not conditions: each change is one ``firing`` notification with its own
fingerprint, and there is no ``resolved`` one. The first poll only records the baseline, and an
account seen for the first time has nothing to compare with.
"""

from __future__ import annotations

from monitor.config import ChangeRuleConfig, RestrictionChangeRuleConfig
from monitor.rules.base import Context, Outcome, compared, event, show


def _changes(
    rule: RestrictionChangeRuleConfig | ChangeRuleConfig, field: str, ctx: Context
) -> Outcome:
    out = Outcome()
    for number, account, old, new in compared(ctx, rule, field):
        if field == "restriction":
            reason = account.get("restriction_reason")
            summary = f"{number}: restriction changed from {show(old)} to {show(new)}"
            if reason:
                summary += f" (reason: {reason})"
        else:
            summary = f"{number}: {field} changed from {show(old)} to {show(new)}"
        out.alerts.append(
            event(ctx, rule, account, summary=summary, field=field, previous=old, current=new)
        )
    return out


def evaluate_restriction_change(rule: RestrictionChangeRuleConfig, ctx: Context) -> Outcome:
    """Fire when ``restriction`` differs from the previous snapshot, in either direction."""
    return _changes(rule, "restriction", ctx)


def evaluate_change(rule: ChangeRuleConfig, ctx: Context) -> Outcome:
    """Fire when the rule's ``field`` differs from the previous snapshot."""
    return _changes(rule, rule.field, ctx)
