"""Tests for monitor.rules.source_down: the built-in rule on consecutive failed polls."""

from __future__ import annotations

import pytest
from rules_helpers import SOURCE, T0, F, R, at

from monitor.models import ActiveAlert, Alert, Severity
from monitor.rules import SourceHealth, evaluate_source


@pytest.mark.parametrize(
    ("down_after", "polls", "expected", "failures"),
    [
        pytest.param(3, "xxxxx.", ["", "", F, "", "", R], [1, 2, 3, 4, 5, 0], id="down-then-up"),
        pytest.param(1, "x.", [F, R], [1, 0], id="down-after-1"),
        pytest.param(3, "xx.xxx", ["", "", "", "", "", F], [1, 2, 0, 1, 2, 3], id="reset"),
        pytest.param(2, "..", ["", ""], [0, 0], id="healthy"),
        pytest.param(2, "xx.xx.", ["", F, R, "", F, R], [1, 2, 0, 1, 2, 0], id="two-episodes"),
        pytest.param(2, "x.x.", ["", "", "", ""], [1, 0, 1, 0], id="flapping-below-limit"),
    ],
)
def test_source_down(down_after: int, polls: str, expected: list[str], failures: list[int]) -> None:
    """source_down fires once at down_after failures in a row and resolves on the next success."""
    health = SourceHealth()
    got: list[str] = []
    counts: list[int] = []
    fingerprints: list[str] = []
    for i, mark in enumerate(polls):
        ok = mark == "."
        health, alert = evaluate_source(
            health, ok=ok, error=None if ok else "timeout", down_after=down_after,
            source=SOURCE, now=at(i),
        )  # fmt: skip
        got.append(alert.status.value if alert else "")
        counts.append(health.failures)
        if alert is not None:
            fingerprints.append(alert.fingerprint)
    assert (got, counts) == (expected, failures)
    pairs = list(zip(fingerprints[::2], fingerprints[1::2], strict=False))
    assert all(firing == resolved for firing, resolved in pairs)
    assert len(set(fingerprints)) == len(fingerprints) - len(pairs)


def test_source_down_alerts() -> None:
    """The firing and resolved alerts say how many polls failed and share one fingerprint."""
    health = SourceHealth()
    alerts: list[Alert] = []
    for i, ok in enumerate([False, False, False, False, True]):
        health, alert = evaluate_source(
            health, ok=ok, error="HTTP 502", down_after=3, source="lime", now=at(i)
        )
        alerts += [alert] if alert else []
    firing, resolved = alerts
    assert health == SourceHealth()
    assert firing.summary == "source lime is down: 3 failed polls in a row (last: HTTP 502)"
    assert resolved.summary == "source lime is back up after 4 failed polls"
    assert firing.fingerprint == resolved.fingerprint
    for a, status, when, count in [(firing, F, at(2), 3), (resolved, R, at(4), 4)]:
        assert (a.status, a.observed_at, a.current, a.source) == (status, when, count, "lime")
        assert (a.rule, a.type, a.severity) == ("source_down", "source_down", Severity.CRITICAL)
        assert (a.account_number, a.field, a.previous, a.snapshot) == (None, None, None, None)


def test_source_down_state_while_down() -> None:
    """While down, the ActiveAlert is kept and the failure count goes on rising."""
    health, alert = evaluate_source(
        SourceHealth(), ok=False, error="x", down_after=1, source=SOURCE, now=T0
    )
    assert alert is not None
    assert health == SourceHealth(1, ActiveAlert("source_down", None, alert.fingerprint, T0))
    later, again = evaluate_source(
        health, ok=False, error="y", down_after=1, source=SOURCE, now=at(9)
    )
    assert again is None
    assert later == SourceHealth(2, health.down)
