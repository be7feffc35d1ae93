"""Tests for monitor.rules.membership: ``account_added`` and ``account_removed`` events."""

from __future__ import annotations

import pytest
from rules_helpers import A, B, C, Timeline, account, cash, rule

from monitor.models import Status


@pytest.mark.parametrize(
    ("polls", "expected"),
    [
        pytest.param([[A, B]], [[]], id="never-on-the-first-poll"),
        pytest.param([[A], [A, B]], [[], [("added", B)]], id="added"),
        pytest.param([[A, B], [A]], [[], [("removed", B)]], id="removed"),
        pytest.param([[A, B], [A], [A, B]], [[], [("removed", B)], [("added", B)]],
                     id="removed-then-back"),
        pytest.param([[A], [B, C]], [[], [("added", B), ("added", C), ("removed", A)]],
                     id="replaced"),
        pytest.param([[A], [A]], [[], []], id="same-accounts"),
        pytest.param([[], [A]], [[], [("added", A)]], id="first-poll-empty"),
    ],
)  # fmt: skip
def test_membership(polls: list[list[str]], expected: list[list[tuple[str, str]]]) -> None:
    """account_added/account_removed fire per account that appears or disappears."""
    run = Timeline(
        [rule(name="added", type="account_added"), rule(name="removed", type="account_removed")]
    )
    got = [run.poll(i, *(account(n) for n in p)) for i, p in enumerate(polls)]
    assert [[(a.rule, a.account_number) for a in poll] for poll in got] == expected
    assert all(a.status is Status.FIRING for poll in got for a in poll)
    assert run.active == {}


def test_membership_alerts() -> None:
    """The alerts name the account and carry its record (the last one seen, when removed)."""
    run = Timeline(
        [rule(name="added", type="account_added"), rule(name="removed", type="account_removed")]
    )
    run.poll(0, cash(1, A))
    [added] = run.poll(1, cash(1, A), cash(2, B))
    [removed] = run.poll(2, cash(2, B))
    assert added.summary == "11111111@cor: new account in the response"
    assert removed.summary == "12345678@vision: account no longer in the response"
    assert (added.type, added.account_number, added.snapshot) == (
        "account_added",
        B,
        cash(2, B).record,
    )
    assert (removed.type, removed.account_number, removed.snapshot) == (
        "account_removed",
        A,
        cash(1, A).record,
    )
    assert added.fingerprint != removed.fingerprint


def test_a_skipped_account_has_not_disappeared() -> None:
    """An account whose record is unusable this poll is neither removed nor, once usable again,
    added."""
    run = Timeline(
        [rule(name="added", type="account_added"), rule(name="removed", type="account_removed")]
    )
    run.poll(0, account(A), account(B))
    assert run.poll(1, account(A), skip=frozenset({B})) == []
    assert run.poll(2, account(A), account(B), skip=frozenset({B})) == []


@pytest.mark.parametrize("kind", ["account_added", "account_removed"])
def test_membership_respects_account_patterns(kind: str) -> None:
    """``accounts`` globs choose the accounts a membership rule watches."""
    run = Timeline([rule(type=kind, accounts=["*@vision"])])
    few, many = [account(C)], [account(A), account(B), account(C)]
    run.poll(0, *(few if kind == "account_added" else many))
    alerts = run.poll(1, *(many if kind == "account_added" else few))
    assert [a.account_number for a in alerts] == [A]
