"""``account_added`` and ``account_removed``: the response's set of accounts changed. Pure.

Events, like ``change``: one ``firing`` notification per account, never on the first poll (there
is nothing to compare with). An account whose record is merely unusable this poll has not left.
"""

from __future__ import annotations

from monitor.config import AccountAddedRuleConfig, AccountRemovedRuleConfig
from monitor.rules.base import Context, Outcome, event, matches


def evaluate_added(rule: AccountAddedRuleConfig, ctx: Context) -> Outcome:
    out = Outcome()
    if ctx.previous is None:
        return out
    for number, account in ctx.candidates():
        if number in ctx.previous or number in ctx.skip or not matches(number, rule.accounts):
            continue
        out.alerts.append(
            event(ctx, rule, account, summary=f"{number}: new account in the response")
        )
    return out


def evaluate_removed(rule: AccountRemovedRuleConfig, ctx: Context) -> Outcome:
    out = Outcome()
    last = ctx.previous or {}
    for number in ctx.removed():
        if matches(number, rule.accounts):
            summary = f"{number}: account no longer in the response"
            out.alerts.append(event(ctx, rule, last[number], summary=summary))
    return out
