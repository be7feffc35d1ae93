"""Tests for monitor.rules.stale: a field unchanged for longer than ``for``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rules_helpers import A, B, F, R, Timeline, account, rule, statuses

from monitor.config import RuleConfig
from monitor.models import Account, Status


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
