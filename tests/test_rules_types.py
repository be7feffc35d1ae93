"""Tests for the rule types beyond threshold and change (expression, delta, account_added,
account_removed, stale), and for what every rule type shares: labels and message templates."""

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
    Timeline,
    account,
    cash,
    hist,
    m,
    rule,
    statuses,
    threshold,
)

from monitor.config import RuleConfig
from monitor.models import Account, Alert, Snapshot, Status
from monitor.rules import History, evaluate
from monitor.rules.base import Context

# --------------------------------------------------------------------------- expression

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


# --------------------------------------------------------------------------- delta (event)


def delta(**fields: Any) -> RuleConfig:
    return rule(**{"type": "delta", "field": "cash", **fields})


@pytest.mark.parametrize(
    ("fields", "before", "after", "fires"),
    [
        ({"by": 1000, "direction": "down"}, "11650.00", "10450.00", True),
        ({"by": 1000, "direction": "down"}, "11650", "10650", True),
        ({"by": 1000, "direction": "down"}, "11650", "10650.01", False),
        ({"by": 1000, "direction": "down"}, "10450", "11650", False),
        ({"by": 1000, "direction": "up"}, "10450", "11650", True),
        ({"by": 1000, "direction": "up"}, "11650", "10450", False),
        ({"by": 1000}, "11650", "10450", True),
        ({"by": 1000}, "10450", "11650", True),
        ({"by": 1000}, "10450", "11449.99", False),
        ({"by": Decimal("0.01")}, "0", "-0.01", True),
        ({"by_pct": 10, "direction": "down"}, "11650.00", "10450.00", True),
        ({"by_pct": 10, "direction": "down"}, "10000", "9000", True),
        ({"by_pct": 10, "direction": "down"}, "10000", "9000.01", False),
        ({"by_pct": 10, "direction": "up"}, "10000", "11000", True),
        ({"by_pct": 10, "direction": "down"}, "-1000", "-1200", True),
        ({"by_pct": 10}, "0", "500", False),
        ({"by_pct": 10}, "0", "-500", False),
        ({"by": 1000}, None, "500", False),
        ({"by": 1000}, "5000", None, False),
    ],
)
def test_delta_event(
    fields: dict[str, Any], before: str | None, after: str | None, fires: bool
) -> None:
    """Without a window a delta compares with the previous poll: by/by_pct, in the direction;
    a percentage of zero, or a missing value, is no move."""
    run = Timeline([delta(**fields)])
    run.poll(0, account(A, cash=None if before is None else Decimal(before)))
    alerts = run.poll(1, account(A, cash=None if after is None else Decimal(after)))
    assert [a.status for a in alerts] == ([Status.FIRING] if fires else [])
    assert run.active == {}


@pytest.mark.parametrize(
    ("fields", "before", "after", "summary"),
    [
        ({"by": 1000}, "11650.00", "10450.00",
         "12345678@vision: cash fell by 1200.00 (-10.3%) from 11650.00 to 10450.00"),
        ({"by_pct": 5}, "10000", "10500",
         "12345678@vision: cash rose by 500 (+5.0%) from 10000 to 10500"),
    ],
)  # fmt: skip
def test_delta_event_alert(fields: dict[str, Any], before: str, after: str, summary: str) -> None:
    """The alert names the move, in money and percent, with both values."""
    run = Timeline([delta(**fields)])
    run.poll(0, account(A, cash=Decimal(before)))
    [alert] = run.poll(1, account(A, cash=Decimal(after)))
    assert alert.summary == summary
    assert (alert.type, alert.field, alert.previous, alert.current) == (
        "delta",
        "cash",
        Decimal(before),
        Decimal(after),
    )


def test_delta_event_fires_once_per_move_and_never_resolves() -> None:
    """Each move is its own event (own fingerprint); none resolves; the first poll and a new
    account have nothing to compare with."""
    run = Timeline([delta(by=1000)])
    cash = [11650, 10450, 10450, 11650, 10450]
    alerts = [run.poll(i, account(A, cash=Decimal(v))) for i, v in enumerate(cash)]
    alerts.append(run.poll(5, account(A, cash=Decimal(10450)), account(B, cash=Decimal(1))))
    assert statuses(alerts) == ["", F, "", F, F, ""]
    assert len({a.fingerprint for poll in alerts for a in poll}) == 3
    assert run.active == {}


# --------------------------------------------------------------------------- delta (window)


def windowed(**fields: Any) -> RuleConfig:
    return delta(**{"by": 1000, "direction": "down", "window": "1h", **fields})


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


def test_delta_window_fires_once_and_resolves_when_the_move_leaves_the_window() -> None:
    """With a window the base is the value at the window's start: the alert fires once, stays
    firing while the fall is inside the window, and resolves once it is not (without a new
    record: the base moves with time)."""
    run = Timeline([windowed()])
    history = hist((0, 11650), (10, 10450))
    assert run.poll(0, cash(11650), history=hist((0, 11650))) == []
    [firing] = run.poll(10, cash(10450), history=history)
    assert (
        firing.summary
        == "12345678@vision: cash fell by 1200 (-10.3%) from 11650 to 10450 within 1h"
    )
    assert (firing.previous, firing.current) == (Decimal(11650), Decimal(10450))
    assert run.poll(40, cash(10450), history=history, only=frozenset()) == []
    assert run.poll(69, cash(10450), history=history, only=frozenset()) == []
    [resolved] = run.poll(70, cash(10450), history=history, only=frozenset())
    assert (resolved.status, resolved.fingerprint) == (R, firing.fingerprint)
    assert resolved.summary == "12345678@vision: cash at 10450, no longer a fall of 1000 within 1h"
    assert run.active == {}
    assert run.poll(100, cash(10450), history=history, only=frozenset()) == []


def test_delta_window_starts_to_hold_as_the_window_moves() -> None:
    """A fall from a value that was not yet the base starts to count once the window's start
    reaches it, though no record changed."""
    run = Timeline([windowed()])
    history = hist((0, 10000), (10, 12000), (20, 10450))
    assert run.poll(20, cash(10450), history=history) == []
    [firing] = run.poll(70, cash(10450), history=history, only=frozenset())
    assert (firing.status, firing.previous) == (F, Decimal(12000))
    [resolved] = run.poll(81, cash(10450), history=history, only=frozenset())
    assert (resolved.status, resolved.fingerprint) == (R, firing.fingerprint)


def test_delta_window_resolves_when_the_history_was_trimmed_to_one_entry() -> None:
    """The pipeline keeps only the value at the window's start and later ones: once the fall
    left the window, one entry may be left. The firing account is still looked at, and resolves."""
    run = Timeline([windowed()])
    run.poll(0, cash(11650), history=hist((0, 11650)))
    [firing] = run.poll(10, cash(10450), history=hist((0, 11650), (10, 10450)))
    [resolved] = run.poll(70, cash(10450), history=hist((10, 10450)), only=frozenset())
    assert (resolved.status, resolved.fingerprint) == (R, firing.fingerprint)


def test_delta_window_pct_of_zero_is_not_evaluable() -> None:
    """``by_pct`` over a base of zero cannot be evaluated: nothing fires, state is kept."""
    run = Timeline([windowed(by=None, by_pct=10, direction="any")])
    assert run.poll(10, cash(500), history=hist((0, 0), (10, 500))) == []
    assert run.active == {}


def test_delta_window_only_looks_at_its_field() -> None:
    """History of other fields does not make an account worth evaluating."""
    run = Timeline([windowed()])
    history: History = {(A, "margin_buying_power"): [(m(0), Decimal(1)), (m(1), Decimal(2))]}
    assert run.poll(5, cash(10450), history=history, only=frozenset()) == []


# --------------------------------------------------------------------------- membership


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


# --------------------------------------------------------------------------- stale


def stale(**fields: Any) -> RuleConfig:
    return rule(
        **{"type": "stale", "field": "unsettled_cash", "for": "1h", "ignore": [0], **fields}
    )


def unsettled(value: int | str | None) -> Account:
    return account(A, unsettled_cash=None if value is None else Decimal(value))


@pytest.mark.parametrize(
    ("polls", "expected"),
    [
        pytest.param([(0, 150), (30, 150), (60, 150)], ["", "", F], id="fires-after-for"),
        pytest.param([(0, 150), (59, 150)], ["", ""], id="not-before"),
        pytest.param([(0, 150), (60, 150), (61, 150), (600, 150)], ["", F, "", ""],
                     id="fires-once"),
        pytest.param([(0, 0), (60, 0), (600, 0)], ["", "", ""], id="ignored-value-is-never-stale"),
        pytest.param([(0, "0.00"), (60, "0.00")], ["", ""], id="ignored-by-value"),
        pytest.param([(0, 150), (50, 200), (100, 200), (110, 200)], ["", "", "", F],
                     id="change-restarts-the-wait"),
        pytest.param([(0, 150), (60, 150), (70, 200), (100, 200), (130, 200)],
                     ["", F, R, "", F], id="resolves-on-change-and-waits-again"),
        pytest.param([(0, 150), (60, 150), (70, 0), (200, 0)], ["", F, R, ""],
                     id="resolves-when-ignored"),
        pytest.param([(0, 0), (10, 150), (69, 150), (70, 150)], ["", "", "", F],
                     id="wait-starts-when-no-longer-ignored"),
        pytest.param([(0, "150.0"), (30, "150.00"), (60, "150")], ["", "", F],
                     id="same-number-is-no-change"),
        pytest.param([(0, 150), (60, 150), (61, None), (62, 150), (122, 150)], ["", F, R, "", F],
                     id="null-is-a-value"),
    ],
)  # fmt: skip
def test_stale(polls: list[tuple[float, int | str | None]], expected: list[str]) -> None:
    """A field unchanged for longer than ``for`` fires; a change resolves it and the wait
    starts over from that change; ignored values are never stale."""
    run = Timeline([stale()])
    assert statuses([run.poll(t, unsettled(v)) for t, v in polls]) == expected


def test_stale_fires_on_an_unchanged_record() -> None:
    """The stale account's record does not change (that is the point): with ``only`` empty it
    still fires once the wait is over."""
    run = Timeline([stale()])
    assert run.poll(0, unsettled(150)) == []
    assert run.poll(30, unsettled(150), only=frozenset()) == []
    [firing] = run.poll(60, unsettled(150), only=frozenset())
    assert firing.summary == "12345678@vision: unsettled_cash unchanged at 150 for 1h"
    [resolved] = run.poll(61, unsettled(200))
    assert resolved.summary == "12345678@vision: unsettled_cash changed from 150 to 200"
    assert (resolved.fingerprint, resolved.previous, resolved.current) == (
        firing.fingerprint,
        Decimal(150),
        Decimal(200),
    )


def test_stale_keeps_state_without_the_field() -> None:
    """A record without the field changes nothing: the alert neither resolves nor restarts."""
    run = Timeline([stale()])
    run.poll(0, unsettled(150))
    run.poll(60, unsettled(150))
    assert run.poll(61, account(A)) == []
    assert run.poll(62, unsettled(150)) == []
    assert run.poll(62.5, unsettled(150), only=frozenset()) == []
    assert [a.status for a in run.poll(63, unsettled(151))] == [R]


def test_stale_text_field_with_ignored_text() -> None:
    """Any known field can be watched, and text values ignored."""
    run = Timeline([stale(field="restriction", ignore=["none"], **{"for": "1d"})])
    assert run.poll(0, account(A, restriction="none"), account(B, restriction="restricted")) == []
    alerts = run.poll(60 * 24, account(A, restriction="none"), account(B, restriction="restricted"))
    assert [(a.account_number, a.status) for a in alerts] == [(B, Status.FIRING)]


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


# --------------------------------------------------------------------------- existing behaviour


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


def test_evaluate_without_history_treats_windowed_delta_as_unknown() -> None:
    """No history, no base: a windowed delta cannot be evaluated and stays quiet."""
    current = Snapshot(SOURCE, T0, {A: cash(1)})
    result = evaluate([windowed()], {A: cash(5000)}, current, {})
    assert (result.alerts, result.active) == ((), {})


def test_expression_names_a_vendor_field_it_declares() -> None:
    """A field the vendor added after this release is refused by name unless the rule lists it
    in ``fields``; listed, the expression reads it from the record."""
    with pytest.raises(ValueError, match="unknown field 'options_level'"):
        rule(type="expression", when="options_level >= 2")
    run = Timeline([rule(type="expression", when="options_level >= 2", fields=["options_level"])])
    [firing] = run.poll(0, account(A, options_level=3), account(B, options_level=1))
    assert (firing.account_number, firing.status) == (A, Status.FIRING)
