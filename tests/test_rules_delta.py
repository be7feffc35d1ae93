"""Tests for monitor.rules.delta: a move of ``by`` (``by_pct``) since the previous poll (an
event), or within a ``window`` of the value history (a condition)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rules_helpers import SOURCE, T0, A, B, F, R, Timeline, account, cash, hist, m, rule, statuses

from monitor.config import RuleConfig
from monitor.models import Snapshot, Status
from monitor.rules import History, evaluate


def delta(**fields: Any) -> RuleConfig:
    return rule(**{"type": "delta", "field": "cash", **fields})


# --------------------------------------------------------------------------- event


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


# --------------------------------------------------------------------------- window


def windowed(**fields: Any) -> RuleConfig:
    return delta(**{"by": 1000, "direction": "down", "window": "1h", **fields})


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


def test_evaluate_without_history_treats_windowed_delta_as_unknown() -> None:
    """No history, no base: a windowed delta cannot be evaluated and stays quiet."""
    current = Snapshot(SOURCE, T0, {A: cash(1)})
    result = evaluate([windowed()], {A: cash(5000)}, current, {})
    assert (result.alerts, result.active) == ((), {})
