"""Tests for monitor.rules.base, what every rule type shares: the ``accounts`` globs, the value
history of a field, and the rule's labels and message templates in its alerts."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from rules_helpers import (
    SOURCE,
    T0,
    A,
    B,
    C,
    F,
    R,
    Run,
    Timeline,
    account,
    cash,
    hist,
    m,
    rule,
    statuses,
    threshold,
)

from monitor.models import Account, Alert, Snapshot
from monitor.rules.base import Context

# --------------------------------------------------------------------------- accounts


@pytest.mark.parametrize(
    ("patterns", "fired"),
    [
        (None, [B, A, C]),
        (["*@vision"], [A]),
        (["*@vision", "*@demo"], [A, C]),
        (["1*"], [B, A]),
        ([A], [A]),
        (["*@VISION"], []),
        (["nothing"], []),
    ],
)
def test_threshold_accounts_globs(patterns: list[str] | None, fired: list[str]) -> None:
    """`accounts` globs (case-sensitive) choose the accounts a rule watches, in account order."""
    rule = threshold(accounts=patterns)
    low = [account(n, cash_to_withdraw=Decimal(1)) for n in (A, B, C)]
    assert [a.account_number for a in Run([rule]).poll(*low)] == fired


# --------------------------------------------------------------------------- history


@pytest.mark.parametrize(
    ("entries", "moment", "expected"),
    [
        pytest.param([], 10, None, id="no-history"),
        pytest.param([(0, 1)], -60, 1, id="before-the-oldest-is-the-oldest"),
        pytest.param([(0, 1), (10, 2), (20, 3)], 0, 1, id="at-an-entry"),
        pytest.param([(0, 1), (10, 2), (20, 3)], 9.5, 1, id="between"),
        pytest.param([(0, 1), (10, 2), (20, 3)], 10, 2, id="at-the-next"),
        pytest.param([(0, 1), (10, 2), (20, 3)], 60, 3, id="after-the-newest"),
    ],
)
def test_value_at(entries: list[tuple[float, int]], moment: float, expected: int | None) -> None:
    """The value at a moment is the last entry at or before it, or the oldest entry."""
    ctx = Context(
        previous=None, current=Snapshot(SOURCE, T0, {}), active={}, history=hist(*entries)
    )
    assert ctx.value_at(A, "cash", m(moment)) == expected


# --------------------------------------------------------------------------- labels and templates


def _polls_for(kind: str) -> list[dict[str, Any]]:
    """Polls that make a rule of ``kind`` alert: (minute, accounts, history) per poll."""
    a0, a1 = cash(5000), cash(10)
    if kind == "delta-window":
        h0, h1 = hist((0, 5000)), hist((0, 5000), (1, 10))
        return [
            {"at": 0, "accounts": [a0], "history": h0},
            {"at": 1, "accounts": [a1], "history": h1},
        ]
    if kind == "account_added":
        return [{"at": 0, "accounts": []}, {"at": 1, "accounts": [a0]}, {"at": 2, "accounts": [a0]}]
    if kind in ("account_removed", "gone"):
        return [{"at": 0, "accounts": [a1]}, {"at": 1, "accounts": []}]
    if kind == "stale":
        return [
            {"at": 0, "accounts": [a1]},
            {"at": 60, "accounts": [a1]},
            {"at": 61, "accounts": [a0]},
        ]
    return [{"at": 0, "accounts": [a0]}, {"at": 1, "accounts": [a1]}, {"at": 2, "accounts": [a0]}]


RULES: dict[str, dict[str, Any]] = {
    "threshold": {"type": "threshold", "field": "cash", "op": "<", "value": 1000},
    "gone": {"type": "threshold", "field": "cash", "op": "<", "value": 1000},
    "expression": {"type": "expression", "when": "cash < 1000.0"},
    "delta": {"type": "delta", "field": "cash", "by": 1000},
    "delta-window": {"type": "delta", "field": "cash", "by": 1000, "window": "1h"},
    "stale": {"type": "stale", "field": "cash", "for": "1h"},
    "account_added": {"type": "account_added"},
    "account_removed": {"type": "account_removed"},
    "change": {"type": "change", "field": "cash"},
    "restriction_change": {"type": "restriction_change"},
}


EXPECTED = {
    "threshold": ["", F, R],
    "gone": [F, R],
    "expression": ["", F, R],
    "delta": ["", F, F],
    "delta-window": ["", F],
    "stale": ["", F, R],
    "account_added": ["", F, ""],
    "account_removed": ["", F],
    "change": ["", F, F],
    "restriction_change": ["", F, F],
}


def _play(kind: str, **fields: Any) -> list[list[Alert]]:
    """The alerts of each poll of ``_polls_for(kind)`` for a rule of ``kind`` with ``fields``."""
    run = Timeline([rule(**{**RULES[kind], **fields})])
    got = []
    for p in _polls_for(kind):
        accounts: Sequence[Account] = p["accounts"]
        if kind == "restriction_change":
            accounts = [account(a.account_number, restriction=str(a.get("cash"))) for a in accounts]
        got.append(run.poll(p["at"], *accounts, history=p.get("history")))
    return got


@pytest.mark.parametrize("kind", sorted(RULES))
def test_labels_are_carried_into_every_alert(kind: str) -> None:
    """Every alert of every rule type, firing or resolved, carries the rule's labels."""
    got = _play(kind, labels={"team": "risk", "desk": "nyc"})
    assert statuses(got) == EXPECTED[kind]
    for a in (a for poll in got for a in poll):
        assert a.labels == {"team": "risk", "desk": "nyc"}


@pytest.mark.parametrize("kind", sorted(RULES))
def test_templates_render_for_every_rule_type(kind: str) -> None:
    """Every rule type renders its summary and description templates into its alerts."""
    got = _play(
        kind,
        labels={"team": "risk"},
        summary="[{{ labels.team }}] {{ status }} {{ rule }} {{ account_number }}",
        description="{{ type }}: {{ summary }}",
    )
    alerts = [a for poll in got for a in poll]
    assert alerts
    for a in alerts:
        assert a.summary == f"[risk] {a.status.value} r {A}"
        assert a.description is not None
        assert a.description.startswith(f"{a.type}: {A}: ")


@pytest.mark.parametrize("kind", sorted(RULES))
def test_without_labels_or_templates_nothing_changes(kind: str) -> None:
    """Without labels or templates the alerts have no labels, no description and the rule's own
    summary."""
    got = _play(kind)
    for a in (a for poll in got for a in poll):
        assert (a.labels, a.description) == ({}, None)
        assert a.summary.startswith(f"{A}: ")


def test_summary_template() -> None:
    """A threshold's summary template, with the money filter."""
    run = Timeline(
        [threshold(value=2000, summary="{{ account_number }} low: {{ cash_to_withdraw|money }}")]
    )
    [alert] = run.poll(0, account(A, cash_to_withdraw=Decimal("1234.5")))
    assert (alert.summary, alert.description) == ("12345678@vision low: 1,234.50", None)
    assert run.problems == []


def test_description_template_sees_the_default_summary() -> None:
    """A description alone leaves the default summary, and can quote it."""
    run = Timeline([threshold(description="Check {{ account_number }}. {{ summary }}.")])
    [alert] = run.poll(0, account(A, cash_to_withdraw=Decimal("512.25")))
    assert alert.summary == "12345678@vision: cash_to_withdraw is 512.25 (< 1000)"
    assert alert.description == (
        "Check 12345678@vision. 12345678@vision: cash_to_withdraw is 512.25 (< 1000)."
    )


def test_a_template_failing_at_render_time_falls_back() -> None:
    """A template that fails on this alert (``previous`` is None on the first poll) gives the
    default summary (and no description), and each failure is a problem."""
    template = "{{ account_number }} down {{ (previous - current)|money }}"
    run = Timeline([threshold(summary=template, description=template)])
    [first] = run.poll(0, account(A, cash_to_withdraw=Decimal("512.25")))
    assert first.summary == "12345678@vision: cash_to_withdraw is 512.25 (< 1000)"
    assert first.description is None
    assert [p.split(":")[0] for p in run.problems] == [
        "rule 'low-cash'",
        "rule 'low-cash'",
    ]
    assert "the summary template failed" in run.problems[0]
    assert "the description template failed" in run.problems[1]


def test_a_template_renders_once_previous_is_known() -> None:
    """The same template renders when the alert has both values."""
    template = "{{ account_number }} down {{ (previous - current)|money }}"
    run = Timeline([threshold(summary=template)])
    run.poll(0, account(A, cash_to_withdraw=Decimal(5000)))
    [alert] = run.poll(1, account(A, cash_to_withdraw=Decimal("512.25")))
    assert alert.summary == "12345678@vision down 4,487.75"
    assert run.problems == []
