"""Tests for monitor.config.rules: each rule type's keys, by key, and the table of types."""

from __future__ import annotations

import typing
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from config_helpers import (
    BASE_DIR,
    CHANGEABLE,
    DROP,
    DURATION_HELP,
    NUMERIC,
    change,
    config,
    delta,
    expression,
    problems,
    restriction,
    stale,
    threshold,
)

from monitor.config import RULE_CONFIG_TYPES, RuleConfig, ThresholdRuleConfig, config_from_dict
from monitor.rules import EVALUATORS


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # clear (hysteresis)
        (threshold(op="==", clear=5), ["rules[0] (low-cash).clear: not used with op '=='"]),
        (threshold(op="!=", clear=5), ["rules[0] (low-cash).clear: not used with op '!='"]),
        (threshold(clear=900),
         ["rules[0] (low-cash).clear: must be at least value (1000) with op '<'"]),
        (threshold(op="<=", clear=999),
         ["rules[0] (low-cash).clear: must be at least value (1000) with op '<='"]),
        (threshold(op=">", clear=1100),
         ["rules[0] (low-cash).clear: must be at most value (1000) with op '>'"]),
        (threshold(op=">=", clear=1001),
         ["rules[0] (low-cash).clear: must be at most value (1000) with op '>='"]),
        (threshold(clear="1200"), ["rules[0] (low-cash).clear: must be a number"]),
        # for, repeat, send_resolved
        (threshold(repeat="30s"), ["rules[0] (low-cash).repeat: must be at least 1m"]),
        (threshold(repeat="59s"), ["rules[0] (low-cash).repeat: must be at least 1m"]),
        (threshold(**{"for": "soon"}), [f"rules[0] (low-cash).for: {DURATION_HELP}"]),
        (threshold(**{"for": "-1m"}), [f"rules[0] (low-cash).for: {DURATION_HELP}"]),
        (threshold(send_resolved="maybe"),
         ["rules[0] (low-cash).send_resolved: Input should be a valid boolean, unable to interpret "
          "input"]),
        (restriction(**{"for": "2m"}), ["rules[0] (restriction).for: unknown key"]),
        (restriction(repeat="1h"), ["rules[0] (restriction).repeat: unknown key"]),
        (change(clear=1), ["rules[0] (platform).clear: unknown key"]),
        # labels
        (threshold(labels={"severity": "high"}),
         ["rules[0] (low-cash).labels: 'severity' is set by balance-monitor itself"]),
        (threshold(labels={"alertname": "x"}),
         ["rules[0] (low-cash).labels: 'alertname' is set by balance-monitor itself"]),
        (restriction(labels={"source": "x"}),
         ["rules[0] (restriction).labels: 'source' is set by balance-monitor itself"]),
        (restriction(labels={"account_number": "x"}),
         ["rules[0] (restriction).labels: 'account_number' is set by balance-monitor itself"]),
        (threshold(labels={"team-x": "risk"}),
         ["rules[0] (low-cash).labels: 'team-x' is not a label name (letters, digits and _)"]),
        (threshold(labels={"1team": "risk"}),
         ["rules[0] (low-cash).labels: '1team' is not a label name (letters, digits and _)"]),
        (threshold(labels={"team": ""}), ["rules[0] (low-cash).labels.team: must not be empty"]),
        # templates
        (threshold(summary="{{ cahs }}"),
         ["rules[0] (low-cash).summary: bad template: line 1: 'cahs' is undefined"]),
        (threshold(description="{% if %}"),
         ["rules[0] (low-cash).description: bad template: line 1: Expected an expression, got "
          "'end of statement block'"]),
        (threshold(summary="{{ labels.teem }}", labels={"team": "risk"}),
         ["rules[0] (low-cash).summary: bad template: line 1: 'dict object' has no attribute "
          "'teem'"]),
        # expression
        (expression(when="cahs > 1.0"),
         ["rules[0] (pdt).when: expression 'cahs > 1.0' reads an unknown field 'cahs'; did you "
          "mean 'cash'?"]),
        (expression(when="has(previous.cahs)"),
         ["rules[0] (pdt).when: expression 'has(previous.cahs)' reads an unknown field "
          "'previous.cahs'; did you mean 'cash'?"]),
        (expression(when=""), ["rules[0] (pdt).when: must not be empty"]),
        (expression(when=DROP), ["rules[0] (pdt).when: required key missing"]),
        # delta
        (delta(by=DROP), ["rules[0] (drop): give exactly one of by, by_pct"]),
        (delta(by_pct=10), ["rules[0] (drop): give exactly one of by, by_pct"]),
        (delta(by=0), ["rules[0] (drop).by: must be positive"]),
        (delta(by=DROP, by_pct=-5), ["rules[0] (drop).by_pct: must be positive"]),
        (delta(direction="sideways"), ["rules[0] (drop).direction: must be one of down, up, any"]),
        (delta(**{"for": "2m"}),
         ["rules[0] (drop).for: needs window (without it a delta is an event)"]),
        (delta(repeat="1h"),
         ["rules[0] (drop).repeat: needs window (without it a delta is an event)"]),
        (delta(window="30s"), ["rules[0] (drop).window: must be at least 1m"]),
        (delta(field="margin_type"),
         [f"rules[0] (drop).field: 'margin_type' is not a numeric field; use one of {NUMERIC}"]),
        # stale
        (stale(**{"for": DROP}),
         ["rules[0] (stuck).for: required for a stale rule (how long unchanged is stale)"]),
        (stale(field="unsettled"),
         [f"rules[0] (stuck).field: unknown field 'unsettled'; use one of {CHANGEABLE}"]),
        (stale(repeat="10s"), ["rules[0] (stuck).repeat: must be at least 1m"]),
        # account_added / account_removed
        ({"name": "new", "type": "account_added", "for": "1h"},
         ["rules[0] (new).for: unknown key"]),
        ({"name": "gone", "type": "account_removed", "field": "cash"},
         ["rules[0] (gone).field: unknown key"]),
    ],
)  # fmt: skip
def test_bad_rule_lifecycle_and_type_keys(rule: dict[str, Any], expected: list[str]) -> None:
    """The keys of the rule lifecycle and of the new rule types are checked, by key."""
    assert problems(config(rules=[rule])) == expected


@pytest.mark.parametrize(
    ("when", "line", "column"),
    [("cash >", 1, 7), ("cash > 1.0 &&\n  (margin_type == 'cash'", 2, 25)],
)
def test_expression_syntax_error_names_line_and_column(when: str, line: int, column: int) -> None:
    """A syntax error in `when` names its line and column, and shows where: one problem, its
    excerpt and caret on the lines that follow."""
    [problem] = problems(config(rules=[expression(when=when)]))
    first, *rest = problem.splitlines()
    assert first.startswith(
        f"rules[0] (pdt).when: syntax error in expression at line {line}, column {column}: "
    )
    assert rest[-1].endswith("^")


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("cash + 1.0", "the result must be true or false, not double"),
        ("daytrades_count", "the result must be true or false, not int"),
        ("margin_type > 1.0", "cannot be evaluated"),
    ],
)
def test_expression_must_be_a_boolean_over_the_fields(when: str, message: str) -> None:
    """An expression that is not a boolean (or cannot be evaluated) over the fields is refused."""
    [problem] = problems(config(rules=[expression(when=when)]))
    assert problem.startswith(f"rules[0] (pdt).when: expression {when!r} cannot be evaluated: ")
    assert message in problem


def test_rule_lifecycle_keys_are_read() -> None:
    """for, clear, repeat, send_resolved and labels are read; durations become timedeltas."""
    rule = threshold(
        **{"for": "2m", "clear": 1200, "repeat": "4h", "send_resolved": False},
        labels={"team": "risk"},
        summary="{{ account_number }} low: {{ cash_to_withdraw|money }}",
        description="{{ labels.team }}",
    )
    [parsed] = config_from_dict(config(rules=[rule]), base_dir=BASE_DIR).rules
    assert isinstance(parsed, ThresholdRuleConfig)
    assert (parsed.for_, parsed.clear, parsed.repeat, parsed.send_resolved) == (
        timedelta(minutes=2),
        Decimal(1200),
        timedelta(hours=4),
        False,
    )
    assert parsed.labels == {"team": "risk"}
    assert parsed.summary == "{{ account_number }} low: {{ cash_to_withdraw|money }}"


def test_rule_lifecycle_defaults() -> None:
    """Left out: no wait, no hysteresis, no repeat, resolved notified, no labels or templates."""
    [parsed] = config_from_dict(config(rules=[threshold()]), base_dir=BASE_DIR).rules
    assert isinstance(parsed, ThresholdRuleConfig)
    assert (parsed.for_, parsed.clear, parsed.repeat, parsed.send_resolved) == (
        timedelta(0),
        None,
        None,
        True,
    )
    assert (parsed.labels, parsed.summary, parsed.description) == ({}, None, None)


def test_new_rule_types_are_read() -> None:
    """expression, delta (event and windowed), stale, account_added and account_removed load."""
    rules = [
        expression(when="daytrades_count >= 3 && account_value_total < 25000.0"),
        delta(),
        delta(name="drop-1h", by=DROP, by_pct=10, direction="down", window="1h", repeat="2h"),
        stale(ignore=[0, 0.5, "x"]),
        {"name": "new", "type": "account_added", "accounts": ["*@vision"]},
        {"name": "gone", "type": "account_removed", "labels": {"team": "ops"}},
    ]
    parsed = config_from_dict(config(rules=rules), base_dir=BASE_DIR).rules
    assert [r.type for r in parsed] == [
        "expression",
        "delta",
        "delta",
        "stale",
        "account_added",
        "account_removed",
    ]
    windowed = parsed[2]
    assert windowed.type == "delta"
    assert (windowed.window, windowed.by_pct, windowed.direction) == (
        timedelta(hours=1),
        Decimal(10),
        "down",
    )
    stuck = parsed[3]
    assert stuck.type == "stale"
    assert stuck.for_ == timedelta(days=1)
    assert list(stuck.ignore) == [0, Decimal("0.5"), "x"]


def test_rule_types_match_the_evaluators() -> None:
    """Every TOML rule type has an evaluator, and nothing else has one."""
    assert set(RULE_CONFIG_TYPES) == set(EVALUATORS)


def test_rule_types_are_the_union_members_by_their_type() -> None:
    """RULE_CONFIG_TYPES lists each member of the discriminated union once, under the literal
    of its ``type`` field (what the TOML file writes)."""
    members = typing.get_args(typing.get_args(RuleConfig)[0])
    assert list(RULE_CONFIG_TYPES.values()) == list(members)
    for name, model in RULE_CONFIG_TYPES.items():
        assert typing.get_args(model.model_fields["type"].annotation) == (name,)
