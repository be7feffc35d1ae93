"""``type = "delta"``: a numeric field moved by ``by`` (or ``by_pct`` percent). Pure.

Without ``window`` it compares with the previous poll and is an event (one ``firing``
notification per move, like ``change``). With ``window`` it compares with the value at the start
of the window, from the stored history (the oldest known value when the history is shorter),
and is a condition: it fires once, and resolves when the move is no longer inside the window.
A move counts when it is at least ``by`` (``by_pct``) in the rule's ``direction``.
"""

from __future__ import annotations

from decimal import Decimal

from monitor.config import DeltaRuleConfig, format_duration
from monitor.models import Account, JSONValue
from monitor.rules import lifecycle
from monitor.rules.base import Context, Outcome, compared, event, show


def moved(rule: DeltaRuleConfig, base: JSONValue, value: JSONValue) -> bool | None:
    """Whether ``base -> value`` is a move the rule looks for; ``None`` when not numbers (or a
    percentage of zero)."""
    if not _number(base) or not _number(value):
        return None
    assert isinstance(base, int | Decimal)  # noqa: S101 - checked just above
    assert isinstance(value, int | Decimal)  # noqa: S101
    change = Decimal(value) - Decimal(base)
    if rule.by_pct is not None:
        if base == 0:
            return None
        change = change / abs(Decimal(base)) * 100
        amount = rule.by_pct
    else:
        assert rule.by is not None  # noqa: S101 - the config requires one of the two
        amount = rule.by
    if rule.direction == "down":
        return -change >= amount
    if rule.direction == "up":
        return change >= amount
    return abs(change) >= amount


def _number(value: JSONValue) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def describe(rule: DeltaRuleConfig, base: JSONValue, value: JSONValue) -> str:
    """``fell by 1200.00 (-10.3%) from 11650.00 to 10450.00``."""
    if not isinstance(base, int | Decimal) or not isinstance(value, int | Decimal):
        return f"{show(base)} -> {show(value)}"
    change = Decimal(value) - Decimal(base)
    verb = "fell" if change < 0 else "rose" if change > 0 else "moved"
    text = f"{verb} by {show(abs(change))}"
    if base != 0:
        pct = (change / abs(Decimal(base)) * 100).quantize(Decimal("0.1"))
        text += f" ({pct:+}%)"
    return f"{text} from {show(base)} to {show(value)}"


def _want(rule: DeltaRuleConfig) -> str:
    amount = f"{rule.by_pct}%" if rule.by_pct is not None else show(rule.by)
    way = {"down": "a fall", "up": "a rise", "any": "a move"}[rule.direction]
    return f"{way} of {amount}"


def _check(
    rule: DeltaRuleConfig, ctx: Context, number: str, account: Account
) -> lifecycle.Verdict | None:
    assert rule.window is not None  # noqa: S101 - only windowed rules are conditions
    value = account.get(rule.field)
    base = ctx.value_at(number, rule.field, ctx.now - rule.window)
    state = moved(rule, base, value)
    if state is None:
        return None
    window = format_duration(rule.window)
    return lifecycle.Verdict(
        holds=state,
        field=rule.field,
        previous=base,
        current=value,
        firing=f"{number}: {rule.field} {describe(rule, base, value)} within {window}",
        resolved=(
            f"{number}: {rule.field} at {show(value)}, no longer {_want(rule)} within {window}"
        ),
    )


def evaluate_delta(rule: DeltaRuleConfig, ctx: Context) -> Outcome:
    if rule.window is not None:
        # The window moves with time: an account whose field changed inside it may start or
        # stop matching without a new record, so those are looked at on every poll, and so are
        # those with an alert (once the move left the window, one entry may be all that is left).
        moving = [
            n for (n, f), entries in ctx.history.items() if f == rule.field and len(entries) > 1
        ] + [n for _, n in ctx.alerts_of(rule.name) if n is not None]
        return lifecycle.run(rule, ctx, _check, extra=moving)
    out = Outcome()
    for number, account, old, new in compared(ctx, rule, rule.field):
        if moved(rule, old, new):
            summary = f"{number}: {rule.field} {describe(rule, old, new)}"
            out.alerts.append(
                event(
                    ctx, rule, account, summary=summary, field=rule.field, previous=old, current=new
                )
            )
    return out
