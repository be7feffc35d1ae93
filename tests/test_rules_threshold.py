"""Tests for monitor.rules.threshold: a numeric field compared with the rule's value, and the
values and summaries of its alerts (its lifecycle is test_rules_lifecycle's)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rules_helpers import NO_FIELD, SOURCE, A, C, Run, account, at, cash_poll, threshold

from monitor.config import ThresholdRuleConfig
from monitor.models import Alert, Severity, Status


@pytest.mark.parametrize(
    ("op", "value", "current", "fires"),
    [
        ("<", 1000, Decimal("999.99"), True),
        ("<", 1000, Decimal("1000.00"), False),
        ("<", 0, Decimal("-0.01"), True),
        ("<=", 1000, Decimal("1000.00"), True),
        ("<=", 1000, Decimal("1000.01"), False),
        (">", 1000, Decimal("1000.01"), True),
        (">", 1000, Decimal(1000), False),
        (">=", 1000, Decimal("1000.0"), True),
        (">=", 1000, Decimal("999.999"), False),
        ("==", 0, Decimal("0.00"), True),
        ("==", 0, Decimal("-0"), True),
        ("==", 0, Decimal("0.01"), False),
        ("!=", 0, Decimal("0.01"), True),
        ("!=", 0, Decimal("0.000"), False),
        ("<", "0.1", Decimal("0.09"), True),
        ("<", "0.1", Decimal("0.10"), False),
    ],
)
def test_threshold_ops(op: str, value: Any, current: Decimal, fires: bool) -> None:
    """Each comparison operator compares money by value, whatever the number of decimals."""
    rule = threshold(op=op, value=Decimal(value) if isinstance(value, str) else value)
    alerts = Run([rule]).poll(account(A, cash_to_withdraw=current))
    assert [a.status for a in alerts] == ([Status.FIRING] if fires else [])


@pytest.mark.parametrize(
    ("op", "value", "count", "fires"),
    [(">=", 4, 4, True), (">=", 4, 3, False), (">", 3, 4, True), ("==", 0, 0, True)],
)
def test_threshold_on_an_integer_field(op: str, value: int, count: int, fires: bool) -> None:
    """daytrades_count (an int) is compared like money."""
    rule = threshold(name="pdt", field="daytrades_count", op=op, value=value)
    alerts = Run([rule]).poll(account(A, daytrades_count=count))
    assert len(alerts) == int(fires)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            [Decimal("1500.00"), Decimal("512.25")],
            ["12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)"],
            id="fell",
        ),
        pytest.param(
            [Decimal("512.25")],
            ["12345678@vision: cash_to_withdraw is 512.25 (< 1000)"],
            id="first-poll",
        ),
        pytest.param(
            [NO_FIELD, Decimal("512.25")],
            ["12345678@vision: cash_to_withdraw is 512.25 (< 1000)"],
            id="no-previous-value",
        ),
        pytest.param(
            [Decimal("512.25"), Decimal("1500.00")],
            [
                "12345678@vision: cash_to_withdraw is 512.25 (< 1000)",
                "12345678@vision: cash_to_withdraw back to 1500.00 (no longer < 1000)",
            ],
            id="resolved",
        ),
    ],
)
def test_threshold_summaries(values: list[object], expected: list[str]) -> None:
    """The summary names account, field, direction, value and condition, money as written."""
    alerts = Run([threshold()]).all([cash_poll(v) for v in values])
    assert [a.summary for poll in alerts for a in poll] == expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (threshold(op=">", value=1000), ["22222222@demo: cash_to_withdraw rose to 9000 (> 1000)"]),
        (threshold(op="!=", value=500), ["22222222@demo: cash_to_withdraw rose to 9000 (!= 500)"]),
        (threshold(op="==", value=Decimal("0.10")), []),
    ],
)
def test_threshold_summary_rose(rule: ThresholdRuleConfig, expected: list[str]) -> None:
    """A rising value says 'rose to'."""
    run = Run([rule])
    run.poll(account(C, cash_to_withdraw=Decimal(500)))
    assert [a.summary for a in run.poll(account(C, cash_to_withdraw=Decimal(9000)))] == expected


def test_threshold_alert_fields() -> None:
    """Firing and resolved alerts carry the rule, the values, the record and one fingerprint."""
    run = Run([threshold(severity="critical")])
    first = account(A, cash_to_withdraw=Decimal("1500.00"), restriction="none")
    low = account(A, cash_to_withdraw=Decimal("512.25"), restriction="none")
    back = account(A, cash_to_withdraw=Decimal("2000"), restriction="none")
    assert run.poll(first) == []
    [firing] = run.poll(low)
    [resolved] = run.poll(back)
    common: dict[str, Any] = {
        "fingerprint": firing.fingerprint,
        "rule": "low-cash",
        "type": "threshold",
        "severity": Severity.CRITICAL,
        "account_number": A,
        "field": "cash_to_withdraw",
        "source": SOURCE,
        "started_at": at(1),
    }
    assert firing == Alert(
        status=Status.FIRING,
        previous=Decimal("1500.00"),
        current=Decimal("512.25"),
        summary="12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)",
        observed_at=at(1),
        snapshot=low.record,
        **common,
    )
    assert resolved == Alert(
        status=Status.RESOLVED,
        previous=Decimal("512.25"),
        current=Decimal("2000"),
        summary="12345678@vision: cash_to_withdraw back to 2000 (no longer < 1000)",
        observed_at=at(2),
        snapshot=back.record,
        **common,
    )
