"""Alert rules: ``evaluate(rules, previous, current, active, now)``. Pure.

Each rule type lives in its own module and is looked up in :data:`EVALUATORS` by the TOML
``type``, the same literal the config's discriminated union uses. An evaluator sees the previous
accounts (``None`` on the very first poll), the current snapshot and the alerts that are firing,
and returns the alerts to notify and the new firing state. Nothing here reads the clock or does
I/O: ``now`` comes in as a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from monitor.config import RuleConfig
from monitor.models import Account, ActiveAlert, Snapshot
from monitor.rules.base import AlertKey, Context, Evaluation, Evaluator, Outcome
from monitor.rules.change import evaluate_change, evaluate_restriction_change
from monitor.rules.source_down import SourceHealth, evaluate_source
from monitor.rules.threshold import evaluate_threshold

__all__ = [
    "EVALUATORS",
    "AlertKey",
    "Evaluation",
    "SourceHealth",
    "evaluate",
    "evaluate_source",
]

EVALUATORS: Mapping[str, Evaluator] = {
    "restriction_change": evaluate_restriction_change,
    "threshold": evaluate_threshold,
    "change": evaluate_change,
}


def evaluate(
    rules: Sequence[RuleConfig],
    previous: Mapping[str, Account] | None,
    current: Snapshot,
    active: Mapping[AlertKey, ActiveAlert],
    *,
    skip: frozenset[str] = frozenset(),
    only: frozenset[str] | None = None,
) -> Evaluation:
    """Run every rule over one successful poll.

    ``skip`` names accounts whose record was unusable this poll: their state is left alone.
    ``only`` (when known) names the accounts whose record changed since ``previous``: the
    others cannot change any rule's outcome and are not looked at.
    The returned state holds the firing alerts of these rules only: those of rules that no
    longer exist are dropped, and ``source_down`` is :func:`evaluate_source`'s.
    """
    ctx = Context(previous=previous, current=current, active=active, skip=skip, only=only)
    alerts = []
    state: dict[AlertKey, ActiveAlert] = {}
    for rule in rules:
        outcome: Outcome = EVALUATORS[rule.type](rule, ctx)
        alerts.extend(outcome.alerts)
        state.update(outcome.active)
    return Evaluation(alerts=tuple(alerts), active=state)
