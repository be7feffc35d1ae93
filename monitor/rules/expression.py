"""``type = "expression"``: a condition in the Common Expression Language. Pure.

The expression was compiled (and test-evaluated) when the config loaded; here it runs per
account over the record and the previous poll's record (``previous.<field>``). An account on
which it cannot be evaluated (a field missing, ``previous`` on an account seen for the first
time) keeps its state, and the reason is reported once as a problem.
"""

from __future__ import annotations

from monitor.config import ExpressionRuleConfig
from monitor.models import Account
from monitor.rules import lifecycle
from monitor.rules.base import Context, Outcome, RuleProblem


def _check(
    rule: ExpressionRuleConfig, ctx: Context, number: str, account: Account
) -> lifecycle.Verdict | None:
    # Imported here: the CEL library costs start-up time and memory only where it is used.
    from monitor.expr import ExpressionError, compile_expression

    before = ctx.previous.get(number) if ctx.previous is not None else None
    try:
        state = compile_expression(rule.when, extra_fields=rule.fields).evaluate(
            account.record, before.record if before is not None else None
        )
    except ExpressionError as exc:
        ctx.problems.append(RuleProblem(rule.name, "cannot evaluate `when`", str(exc), number))
        return None
    return lifecycle.Verdict(
        holds=state,
        field=None,
        previous=None,
        current=None,
        firing=f"{number}: {rule.when}",
        resolved=f"{number}: no longer {rule.when}",
    )


def evaluate_expression(rule: ExpressionRuleConfig, ctx: Context) -> Outcome:
    return lifecycle.run(rule, ctx, _check)
