"""Alert rules: ``evaluate(rules, previous, current, active, now)``. Pure.

Each rule type lives in its own module and is looked up in :data:`EVALUATORS` by the TOML
``type``, the same literal the config's discriminated union uses. An evaluator sees the previous
accounts (``None`` on the very first poll), the current snapshot and the alerts that are firing,
and returns the alerts to notify and the new firing state. Nothing here reads the clock or does
I/O: ``now`` comes in as a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from monitor.config import RuleConfig
from monitor.models import Account, ActiveAlert, Alert, Snapshot, Status
from monitor.rules.base import (
    AlertKey,
    Context,
    Evaluation,
    Evaluator,
    History,
    Outcome,
    alert,
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

EVALUATORS: Mapping[str, Evaluator] = {
    "restriction_change": evaluate_restriction_change,
    "threshold": evaluate_threshold,
    "change": evaluate_change,
    "expression": evaluate_expression,
    "delta": evaluate_delta,
    "account_added": evaluate_added,
    "account_removed": evaluate_removed,
    "stale": evaluate_stale,
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
) -> Evaluation:
    """Run every rule over one successful poll.

    ``skip`` names accounts whose record was unusable this poll: their state is left alone.
    ``only`` (when known) names the accounts whose record changed since ``previous``: the
    others cannot change any rule's outcome and are not looked at.
    ``history`` holds the values over time of the fields windowed ``delta`` rules look at.
    The returned state holds the alerts (pending and firing) of these rules only: those of
    rules that no longer exist are dropped, and ``source_down`` is :func:`evaluate_source`'s.
    """
    ctx = Context(
        previous=previous,
        current=current,
        active=active,
        skip=skip,
        only=only,
        history=history if history is not None else {},
        gone=frozenset(previous.keys() - current.accounts.keys()) if previous else frozenset(),
    )
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
            field=getattr(rule, "field", None),
            previous=None,
            current=None,
            summary=f"{state.account_number}: rule {rule.name} was removed from the configuration",
            started_at=state.started_at,
        )
        for state in states
    ]
