"""Tests for monitor.rules' ``evaluate``: every rule of the configuration over one poll, the
state it returns, and what holds whatever the rule types (order, purity, ``only``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rules_helpers import (
    SOURCE,
    T0,
    A,
    B,
    C,
    F,
    Poll,
    Run,
    Timeline,
    account,
    at,
    change,
    restriction,
    rule,
    snapshot,
    statuses,
    threshold,
)

from monitor.config import RuleConfig, ThresholdRuleConfig
from monitor.models import Account, ActiveAlert, Alert, Change, Snapshot, Status
from monitor.rules import EVALUATORS, AlertKey, evaluate, lifecycle, retired_alerts
from monitor.rules.base import Context, index_by_rule
from monitor.rules.threshold import _check as threshold_check

# --------------------------------------------------------------------------- state


def test_state_carried_over_for_rules_still_present() -> None:
    """The firing state of a rule that still exists is kept as is while it stays true."""
    run = Run([threshold(), restriction()])
    run.poll(account(A, cash_to_withdraw=Decimal(1)))
    [(key, firing)] = run.active.items()
    assert key == ("low-cash", A)
    assert firing == ActiveAlert("low-cash", A, firing.fingerprint, at(0), "firing", at(0))
    assert run.poll(account(A, cash_to_withdraw=Decimal(2))) == []
    assert run.active == {key: firing}


@pytest.mark.parametrize(
    ("rules", "expected_keys"),
    [
        pytest.param([], [], id="all-rules-removed"),
        pytest.param([restriction()], [], id="threshold-removed"),
        pytest.param([threshold(name="other")], [("other", A)], id="renamed-is-a-new-rule"),
        pytest.param([threshold()], [("low-cash", A)], id="kept"),
    ],
)
def test_state_of_removed_rules_is_dropped(
    rules: list[RuleConfig], expected_keys: list[AlertKey]
) -> None:
    """Only rules in the config keep state; source_down's state is not evaluate()'s to return."""
    fp = "f" * 24
    active = {
        ("low-cash", A): ActiveAlert("low-cash", A, fp, T0),
        ("gone", B): ActiveAlert("gone", B, fp, T0),
        ("source_down", None): ActiveAlert("source_down", None, fp, T0),
    }
    current = snapshot(account(A, cash_to_withdraw=Decimal(1)), poll=1)
    result = evaluate(rules, {}, current, active)
    assert sorted(result.active, key=str) == sorted(expected_keys, key=str)
    assert [a.status for a in result.alerts] == [Status.FIRING] * ("other" in str(expected_keys))


# --------------------------------------------------------------------------- determinism


def scenario(source: str) -> list[list[Alert]]:
    run = Run([threshold(), restriction(), change("cash")], source=source)
    return run.all(
        [
            Poll([account(A, cash_to_withdraw=Decimal(1), restriction="none", cash=Decimal(1))]),
            Poll([account(A, cash_to_withdraw=Decimal(1), restriction="closed", cash=Decimal(2))]),
            Poll([account(A, cash_to_withdraw=Decimal(5000), restriction="none", cash=Decimal(2))]),
        ]
    )


def test_same_inputs_same_alerts() -> None:
    """Evaluation is pure: the same polls give equal alerts with equal fingerprints."""
    first, second = scenario(SOURCE), scenario(SOURCE)
    assert statuses(first) == [F, "firing+firing", "resolved+firing"]
    assert first == second


def test_fingerprints_differ_between_sources() -> None:
    """The same episode on two sources has two fingerprints."""
    ours = [a.fingerprint for poll in scenario("a") for a in poll]
    theirs = [a.fingerprint for poll in scenario("b") for a in poll]
    assert not set(ours) & set(theirs)


def test_alerts_come_in_rule_then_account_order() -> None:
    """Alerts are ordered by rule (config order), then by account number."""
    run = Run([threshold(), threshold(name="other", op=">", value=0)])
    alerts = run.poll(*(account(n, cash_to_withdraw=Decimal(1)) for n in (C, A, B)))
    assert [(a.rule, a.account_number) for a in alerts] == [
        ("low-cash", B),
        ("low-cash", A),
        ("low-cash", C),
        ("other", B),
        ("other", A),
        ("other", C),
    ]


def test_only_the_changed_accounts_are_evaluated() -> None:
    """With ``only``, accounts outside it are not looked at: their record did not change, so
    neither can the outcome (the pipeline passes the parser's changed set)."""
    previous = {"A": account("A", cash_to_withdraw=Decimal("2000")), "B": account("B")}
    current = snapshot(
        account("A", cash_to_withdraw=Decimal("500")),
        account("B", cash_to_withdraw=Decimal("10")),
        poll=1,
    )
    rules: list[RuleConfig] = [threshold(), change("cash_to_withdraw")]

    everything = evaluate(rules, previous, current, {})
    only_a = evaluate(rules, previous, current, {}, only=frozenset({"A"}))

    assert {a.account_number for a in everything.alerts} == {"A", "B"}
    assert {(a.rule, a.account_number) for a in only_a.alerts} == {
        ("low-cash", "A"),
        ("cash_to_withdraw-changed", "A"),
    }


# --------------------------------------------------------------------------- events and conditions


def test_threshold_still_fires_on_the_first_poll_and_change_is_still_an_event() -> None:
    """The new machinery leaves the old rules as they were."""
    run = Timeline([threshold(), rule(type="change", field="restriction")])
    first = run.poll(0, account(A, cash_to_withdraw=Decimal(1), restriction="none"))
    second = run.poll(1, account(A, cash_to_withdraw=Decimal(1), restriction="closed"))
    third = run.poll(2, account(A, cash_to_withdraw=Decimal(1), restriction="none"))
    assert [(a.rule, a.status) for a in first + second + third] == [
        ("low-cash", Status.FIRING),
        ("r", Status.FIRING),
        ("r", Status.FIRING),
    ]
    assert list(run.active) == [("low-cash", A)]


# --------------------------------------------------------------------------- changes


def test_evaluate_takes_the_changes_it_is_given() -> None:
    """``changes`` (the pipeline's diff of the two polls) is what event rules see: evaluate does
    not work it out again when it is given."""
    previous = {A: account(A, restriction="none"), B: account(B, restriction="none")}
    current = snapshot(account(A, restriction="closed"), account(B, restriction="closed"), poll=1)
    rules = [restriction()]
    worked_out = evaluate(rules, previous, current, {})
    assert [a.account_number for a in worked_out.alerts] == [B, A]
    given = [Change("changed", A, "restriction", "none", "closed")]
    result = evaluate(rules, previous, current, {}, changes=given)
    assert [(a.account_number, a.previous, a.current) for a in result.alerts] == [
        (A, "none", "closed")
    ]
    assert evaluate(rules, previous, current, {}, changes=[]).alerts == ()


# --------------------------------------------------------------------------- retired rules


def test_retired_alerts_resolve_the_episodes_of_a_removed_rule() -> None:
    """A rule a reload removed ends its firing alerts: one resolved alert each, with the
    episode's fingerprint and start, the rule's field and labels, and no values or record."""
    states = [
        ActiveAlert("low-cash", A, "a" * 24, at(0), "firing", at(0)),
        ActiveAlert("low-cash", B, "b" * 24, at(1), "firing", at(3)),
    ]
    alerts = retired_alerts(threshold(labels={"team": "risk"}), states, source="lime", now=at(9))
    assert [(a.status, a.account_number, a.fingerprint, a.started_at) for a in alerts] == [
        (Status.RESOLVED, A, "a" * 24, at(0)),
        (Status.RESOLVED, B, "b" * 24, at(1)),
    ]
    first = alerts[0]
    assert first.summary == "12345678@vision: rule low-cash was removed from the configuration"
    assert (first.rule, first.type, first.field, first.source, first.observed_at) == (
        "low-cash",
        "threshold",
        "cash_to_withdraw",
        "lime",
        at(9),
    )
    assert (first.previous, first.current, first.snapshot) == (None, None, None)
    assert first.labels == {"team": "risk"}
    expression = rule(name="low-cash", type="expression", when="cash < 1.0")
    [ended] = retired_alerts(expression, states[:1], source="lime", now=at(9))
    assert (ended.type, ended.field) == ("expression", None)


# --------------------------------------------------------------------------- evaluators


def test_an_evaluator_refuses_a_rule_of_another_type() -> None:
    """EVALUATORS is looked up by the rule's ``type``; an evaluator handed another type's rule
    says so rather than misread it."""
    ctx = Context(previous=None, current=snapshot(), active={})
    with pytest.raises(
        TypeError, match="the ThresholdRuleConfig evaluator got a restriction_change rule"
    ):
        EVALUATORS["threshold"](restriction(), ctx)


# --------------------------------------------------------------------------- at scale


def _rules_and_alerts() -> tuple[
    list[RuleConfig], dict[str, Account], Snapshot, dict[AlertKey, ActiveAlert]
]:
    """20 threshold rules (some with ``for``, some with ``accounts``), 200 accounts, and an
    alert state where every rule holds alerts (pending and firing) for many accounts."""
    rules: list[RuleConfig] = [
        threshold(
            name=f"t{i:02d}",
            value=1000 + 100 * i,
            **({"for": "1m"} if i % 3 == 0 else {}),
            **({"accounts": ["*@vision"]} if i % 4 == 0 else {}),
        )
        for i in range(20)
    ]
    numbers = [f"{i:04d}@{'vision' if i % 2 else 'cor'}" for i in range(200)]
    previous = {
        n: account(n, cash_to_withdraw=Decimal(500 + 15 * i)) for i, n in enumerate(numbers)
    }
    current = snapshot(
        *(account(n, cash_to_withdraw=Decimal(900 + 13 * i)) for i, n in enumerate(numbers)), poll=5
    )
    active: dict[AlertKey, ActiveAlert] = {}
    for r in rules:
        for i, n in enumerate(numbers[::3]):
            firing = i % 2 == 0
            active[(r.name, n)] = ActiveAlert(
                r.name,
                n,
                f"fp-{r.name}-{n}" if firing else "",
                at(i % 5),
                "firing" if firing else "pending",
                at(i % 5) if firing else None,
            )
    active[("gone-rule", numbers[0])] = ActiveAlert("gone-rule", numbers[0], "fp", T0, "firing", T0)
    return rules, previous, current, active


def test_the_alert_index_gives_what_scanning_every_alert_gives() -> None:
    """``evaluate`` looks up each rule's alerts in an index and passes over accounts whose
    threshold cannot hold; each rule run on its own, scanning the whole alert state for its
    alerts and checking every candidate account, gives the same alerts and the same state."""
    rules, previous, current, active = _rules_and_alerts()
    only = frozenset(list(current.accounts)[::2])

    indexed = evaluate(rules, previous, current, active, only=only)

    ctx = Context(previous=previous, current=current, active=active, only=only)
    alerts: list[Alert] = []
    state: dict[AlertKey, ActiveAlert] = {}
    for r in rules:
        assert isinstance(r, ThresholdRuleConfig)
        out = lifecycle.run(r, ctx, threshold_check)  # no may_hold: every account checked
        alerts += out.alerts
        state.update(out.active)
    assert indexed.alerts == tuple(alerts)
    assert indexed.active == state
    assert len(indexed.alerts) > 50  # fired, repeated-free resolutions and pending waits over
    assert {a.status for a in indexed.alerts} == {Status.FIRING, Status.RESOLVED}


def test_alerts_of_one_rule_from_the_index() -> None:
    """``Context.alerts_of`` gives one rule's account alerts, never a source-wide one."""
    _, previous, current, active = _rules_and_alerts()
    active[("t01", None)] = ActiveAlert("t01", None, "fp", T0, "firing", T0)
    ctx = Context(previous=previous, current=current, active=active, by_rule=index_by_rule(active))
    plain = Context(previous=previous, current=current, active=active)
    assert ctx.alerts_of("t01") == plain.alerts_of("t01")
    assert all(k[0] == "t01" and k[1] is not None for k in ctx.alerts_of("t01"))
    assert ctx.alerts_of("nope") == {}
