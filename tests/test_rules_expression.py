"""Tests for monitor.rules.expression: a condition in CEL over the record and the previous one."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rules_helpers import A, B, F, R, Timeline, account, rule, statuses

from monitor.models import Account, Status

PDT = "daytrades_count >= 3 && account_value_total < 25000.0 && margin_type != 'cash'"


def pdt(count: int, total: int, margin: str = "marginx2", number: str = A) -> Account:
    return account(
        number, daytrades_count=count, account_value_total=Decimal(total), margin_type=margin
    )


@pytest.mark.parametrize(
    ("accounts", "fires"),
    [
        (pdt(3, 20000), True),
        (pdt(10, 24999), True),
        (pdt(2, 20000), False),
        (pdt(3, 25000), False),
        (pdt(3, 20000, "cash"), False),
        (pdt(3, 20000, "daytrader"), True),
    ],
)
def test_expression_condition(accounts: Account, fires: bool) -> None:
    """The `when` expression reads the account's fields, and fires where it is true."""
    alerts = Timeline([rule(type="expression", when=PDT)]).poll(0, accounts)
    assert [a.status for a in alerts] == ([Status.FIRING] if fires else [])


def test_expression_fires_and_resolves() -> None:
    """An expression is a condition: one firing alert per episode, a resolved one at its end."""
    run = Timeline([rule(type="expression", when=PDT)])
    alerts = [run.poll(0, pdt(3, 20000)), run.poll(1, pdt(4, 21000)), run.poll(2, pdt(4, 26000))]
    assert statuses(alerts) == [F, "", R]
    [[firing], _, [resolved]] = alerts
    assert firing.fingerprint == resolved.fingerprint
    assert firing.summary == f"12345678@vision: {PDT}"
    assert resolved.summary == f"12345678@vision: no longer {PDT}"
    assert (firing.type, firing.field, firing.snapshot) == (
        "expression",
        None,
        pdt(3, 20000).record,
    )


@pytest.mark.parametrize(
    ("cash", "expected"),
    [
        pytest.param([5000, 3500, 3500, 1000], ["", F, R, F], id="drop-fires-next-poll-resolves"),
        pytest.param([5000, 4000, 3000, 2000], ["", "", "", ""], id="small-drops"),
        pytest.param([5000, 6001], ["", ""], id="rise"),
        pytest.param([1000], [""], id="first-poll-has-no-previous"),
    ],
)
def test_expression_reads_previous(cash: list[int], expected: list[str]) -> None:
    """``previous.<field>`` is the previous poll's value; ``has()`` makes the first poll false
    rather than an error."""
    run = Timeline(
        [rule(type="expression", when="has(previous.cash) && previous.cash - cash > 1000.0")]
    )
    assert statuses([run.poll(i, account(A, cash=Decimal(v))) for i, v in enumerate(cash)]) == (
        expected
    )
    assert run.problems == []


def test_expression_error_keeps_state_and_is_a_problem() -> None:
    """An account on which `when` cannot be evaluated keeps its state, the others go on, and
    the reason is in the evaluation's problems."""
    run = Timeline([rule(type="expression", when="cash < 100.0")])
    [firing] = run.poll(0, account(A, cash=Decimal(50)), account(B, cash=Decimal(500)))
    alerts = run.poll(1, account(A, cash=None), account(B, cash=Decimal(50)))
    assert [(a.account_number, a.status) for a in alerts] == [(B, Status.FIRING)]
    assert sorted(k[1] or "" for k in run.active) == sorted([A, B])
    [problem] = run.problems
    assert problem.startswith("rule 'r': cannot evaluate `when` for 12345678@vision: ")
    [resolved] = run.poll(2, account(A, cash=Decimal(500)), account(B, cash=Decimal(50)))
    assert (resolved.account_number, resolved.status, resolved.fingerprint) == (
        A,
        Status.RESOLVED,
        firing.fingerprint,
    )


def test_expression_unguarded_previous_on_first_poll_is_a_problem() -> None:
    """``previous.cash`` on an account seen for the first time cannot be evaluated."""
    run = Timeline([rule(type="expression", when="previous.cash - cash > 1000.0")])
    assert run.poll(0, account(A, cash=Decimal(1)), account(B, cash=Decimal(1))) == []
    assert run.problems == [
        f"rule 'r': cannot evaluate `when` for {n}: no such key 'cash' "
        "(for previous.cash, guard it with has(previous.cash))"
        for n in (B, A)
    ]
    assert [a.status for a in run.poll(1, account(A, cash=Decimal(-5000)))] == [F]


def test_expression_names_a_vendor_field_it_declares() -> None:
    """A field the vendor added after this release is refused by name unless the rule lists it
    in ``fields``; listed, the expression reads it from the record."""
    with pytest.raises(ValueError, match="unknown field 'options_level'"):
        rule(type="expression", when="options_level >= 2")
    run = Timeline([rule(type="expression", when="options_level >= 2", fields=["options_level"])])
    [firing] = run.poll(0, account(A, options_level=3), account(B, options_level=1))
    assert (firing.account_number, firing.status) == (A, Status.FIRING)
