"""Alert rules: ``evaluate(rules, previous, current, active, now)``. Pure.

Each rule type lives in its own module and is looked up in :data:`EVALUATORS` by the TOML
``type``, the same literal the config's discriminated union uses. An evaluator sees the previous
accounts (``None`` on the very first poll), the current snapshot and the alerts that are firing,
and returns the alerts to notify and the new firing state. Nothing here reads the clock or does
I/O: ``now`` comes in as a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from monitor.config import (
    AccountAddedRuleConfig,
    AccountRemovedRuleConfig,
    ChangeRuleConfig,
    DeltaRuleConfig,
    ExpressionRuleConfig,
    RestrictionChangeRuleConfig,
    RuleConfig,
    StaleRuleConfig,
    ThresholdRuleConfig,
)
from monitor.diff import diff
from monitor.models import Account, ActiveAlert, Alert, Change, Snapshot, Status
from monitor.rules.base import (
    AlertKey,
    Context,
    Evaluation,
    Evaluator,
    History,
    Outcome,
    alert,
    index_by_rule,
    watched_field,
)
from monitor.rules.change import evaluate_change, evaluate_restriction_change
from monitor.rules.delta import evaluate_delta
from monitor.rules.expression import evaluate_expression
from monitor.rules.membership import evaluate_added, evaluate_removed
from monitor.rules.source_down import SourceHealth, evaluate_source
from monitor.rules.stale import evaluate_stale
from monitor.rules.threshold import evaluate_threshold

__all__ = [
    "EVALUATORS",
    "AlertKey",
    "Evaluation",
    "History",
    "SourceHealth",
    "evaluate",
    "evaluate_source",
    "retired_alerts",
]

_R = TypeVar("_R")


def _for(kind: type[_R], evaluator: Callable[[_R, Context], Outcome]) -> Evaluator:
    """``evaluator`` for any rule config, checking that it is of the type it takes."""

    def run(rule: RuleConfig, ctx: Context) -> Outcome:
        if not isinstance(rule, kind):
            raise TypeError(f"the {kind.__name__} evaluator got a {rule.type} rule")
        return evaluator(rule, ctx)

    return run


#: The evaluator of each rule type, by the TOML ``type`` (the keys of ``RULE_CONFIG_TYPES``).
EVALUATORS: Mapping[str, Evaluator] = {
    "restriction_change": _for(RestrictionChangeRuleConfig, evaluate_restriction_change),
    "threshold": _for(ThresholdRuleConfig, evaluate_threshold),
    "change": _for(ChangeRuleConfig, evaluate_change),
    "expression": _for(ExpressionRuleConfig, evaluate_expression),
    "delta": _for(DeltaRuleConfig, evaluate_delta),
    "account_added": _for(AccountAddedRuleConfig, evaluate_added),
    "account_removed": _for(AccountRemovedRuleConfig, evaluate_removed),
    "stale": _for(StaleRuleConfig, evaluate_stale),
}


def evaluate(
    rules: Sequence[RuleConfig],
    previous: Mapping[str, Account] | None,
    current: Snapshot,
    active: Mapping[AlertKey, ActiveAlert],
    *,
    skip: frozenset[str] = frozenset(),
    only: frozenset[str] | None = None,
    history: History | None = None,
    changes: Sequence[Change] | None = None,
) -> Evaluation:
    """Run every rule over one successful poll.

    ``skip`` names accounts whose record was unusable this poll: their state is left alone.
    ``only`` (when known) names the accounts whose record changed since ``previous``: the
    others cannot change any rule's outcome and are not looked at.
    ``history`` holds the values over time of the fields windowed ``delta`` rules look at.
    ``changes`` is :func:`monitor.diff.diff` of ``previous`` and ``current`` (worked out here
    when not given): what ``change``, ``restriction_change`` and ``delta`` rules see.
    The returned state holds the alerts (pending and firing) of these rules only: those of
    rules that no longer exist are dropped, and ``source_down`` is :func:`evaluate_source`'s.
    """
    if changes is None:
        changes = diff(previous, current.accounts, only=only)
    changed: dict[str, list[Change]] = {}
    for change in changes:
        if change.kind == "changed" and change.field is not None:
            changed.setdefault(change.field, []).append(change)
    ctx = Context(
        previous=previous,
        current=current,
        active=active,
        skip=skip,
        only=only,
        history=history if history is not None else {},
        gone=frozenset(c.account_number for c in changes if c.kind == "removed"),
        changed=changed,
        by_rule=index_by_rule(active),
    )
    ordered = ctx.candidates()  # sorted once, not once per rule
    ctx = replace(ctx, ordered=ordered, ordered_numbers=frozenset(n for n, _ in ordered))
    alerts = []
    state: dict[AlertKey, ActiveAlert] = {}
    for rule in rules:
        outcome: Outcome = EVALUATORS[rule.type](rule, ctx)
        alerts.extend(outcome.alerts)
        state.update(outcome.active)
    return Evaluation(alerts=tuple(alerts), active=state, problems=tuple(ctx.problems))


def retired_alerts(
    rule: RuleConfig, states: Iterable[ActiveAlert], *, source: str, now: datetime
) -> list[Alert]:
    """Resolved alerts for firing alerts of a rule a reload removed: receivers are not left
    holding an alert nobody will end (``send_resolved`` is applied by the sinks' selection)."""
    ctx = Context(previous=None, current=Snapshot(source, now, {}), active={})
    return [
        alert(
            ctx,
            status=Status.RESOLVED,
            fingerprint=state.fingerprint,
            rule=rule,
            account=None,
            number=state.account_number,
            field=watched_field(rule),
            previous=None,
            current=None,
            summary=f"{state.account_number}: rule {rule.name} was removed from the configuration",
            started_at=state.started_at,
        )
        for state in states
    ]
