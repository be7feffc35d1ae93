"""Tests for monitor.rules.change: ``restriction_change`` and ``change``, one event per change
of a field since the previous poll."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rules_helpers import A, B, C, F, Run, account, change, restriction, statuses

from monitor.models import Account, JSONValue, Status

# --------------------------------------------------------------------------- restriction_change


@pytest.mark.parametrize(
    ("before", "after", "reason", "summary"),
    [
        ("none", "restricted", "Pattern day trader",
         "12345678@vision: restriction changed from none to restricted "
         "(reason: Pattern day trader)"),
        ("none", "disabled", None, "12345678@vision: restriction changed from none to disabled"),
        ("restricted", "none", None,
         "12345678@vision: restriction changed from restricted to none"),
        ("restricted", "none", "", "12345678@vision: restriction changed from restricted to none"),
        ("disabled", "closed", "Account closed by request",
         "12345678@vision: restriction changed from disabled to closed "
         "(reason: Account closed by request)"),
        ("none", "frozen", None, "12345678@vision: restriction changed from none to frozen"),
        (None, "restricted", None, "12345678@vision: restriction changed from none to restricted"),
        ("none", "none", "stale reason", None),
        ("restricted", "restricted", "new reason", None),
    ],
)  # fmt: skip
def test_restriction_change(
    before: str | None, after: str, reason: str | None, summary: str | None
) -> None:
    """A restriction change in either direction is one firing alert; the reason is in its text."""
    run = Run([restriction(severity="critical")])
    assert run.poll(account(A, restriction=before)) == []
    alerts = run.poll(account(A, restriction=after, restriction_reason=reason))
    assert [a.summary for a in alerts] == ([summary] if summary else [])
    for a in alerts:
        assert (a.status, a.field, a.previous, a.current) == (F, "restriction", before, after)
        assert (a.rule, a.type, a.severity) == ("restriction", "restriction_change", "critical")


@pytest.mark.parametrize(
    ("polls", "expected"),
    [
        pytest.param([[account(A, restriction="restricted")]], [""], id="first-poll-is-baseline"),
        pytest.param(
            [[account(A, restriction="none")],
             [account(A, restriction="none"), account(B, restriction="restricted")]],
            ["", ""],
            id="new-account",
        ),
        pytest.param(
            [[account(A, restriction="none"), account(B, restriction="none")],
             [account(B, restriction="none")],
             [account(A, restriction="restricted"), account(B, restriction="none")]],
            ["", "", ""],
            id="account-back-after-gap-is-new",
        ),
        pytest.param(
            [[account(A, restriction="none")], [account(A, restriction="restricted")],
             [account(A, restriction="restricted")], [account(A, restriction="none")]],
            ["", F, "", F],
            id="event-never-resolves",
        ),
        pytest.param(
            [[account(A, restriction="none"), account(B, restriction="none")],
             [account(A, restriction="restricted"), account(B, restriction="disabled")]],
            ["", "firing+firing"],
            id="each-account",
        ),
    ],
)  # fmt: skip
def test_restriction_change_sequences(polls: list[list[Account]], expected: list[str]) -> None:
    """Only a change from a previously seen value alerts; events keep no firing state."""
    run = Run([restriction()])
    assert statuses([run.poll(*p) for p in polls]) == expected
    assert run.active == {}


def test_restriction_change_respects_skip_and_globs() -> None:
    """A skipped account or one the globs leave out raises nothing."""
    run = Run([restriction(accounts=["*@vision", "*@cor"])])
    run.poll(*(account(n, restriction="none") for n in (A, B, C)))
    changed = [account(n, restriction="restricted") for n in (A, B, C)]
    assert [a.account_number for a in run.poll(*changed, skip=frozenset({B}))] == [A]


# --------------------------------------------------------------------------- change


@pytest.mark.parametrize(
    ("field", "before", "after", "summary"),
    [
        ("trade_platform", "ETNA", "transaq",
         "12345678@vision: trade_platform changed from ETNA to transaq"),
        ("margin_type", "cash", "marginx2",
         "12345678@vision: margin_type changed from cash to marginx2"),
        ("restriction", "none", "restricted",
         "12345678@vision: restriction changed from none to restricted"),
        ("restriction_reason", None, "PDT",
         "12345678@vision: restriction_reason changed from none to PDT"),
        ("daytrades_count", 3, 4, "12345678@vision: daytrades_count changed from 3 to 4"),
        ("cash", Decimal("100.00"), Decimal("-0.01"),
         "12345678@vision: cash changed from 100.00 to -0.01"),
        ("unsettled_cash", Decimal("12.50"), None,
         "12345678@vision: unsettled_cash changed from 12.50 to none"),
        ("cash_to_withdraw", None, Decimal(5),
         "12345678@vision: cash_to_withdraw changed from none to 5"),
        ("margin_buying_power", Decimal("1.0"), Decimal("1.00"), None),
        ("cash", Decimal(0), Decimal("-0.00"), None),
        ("daytrades_count", 1, Decimal("1.0"), None),
        ("margin_type", "cash", "cash", None),
        ("restriction_reason", None, None, None),
    ],
)  # fmt: skip
def test_change_rule(field: str, before: JSONValue, after: JSONValue, summary: str | None) -> None:
    """A change rule fires when its field's value differs; equal numbers are not a change."""
    run = Run([change(field)])
    run.poll(account(A, **{field: before}))
    alerts = run.poll(account(A, **{field: after}))
    assert [a.summary for a in alerts] == ([summary] if summary else [])
    for a in alerts:
        assert (a.status, a.type, a.field, a.previous, a.current) == (
            Status.FIRING,
            "change",
            field,
            before,
            after,
        )


def test_change_rule_watches_only_its_field() -> None:
    """A change rule ignores every other field."""
    run = Run([change("margin_type")])
    run.poll(account(A, margin_type="cash", cash=Decimal(1), restriction="none"))
    assert run.poll(account(A, margin_type="cash", cash=Decimal(2), restriction="closed")) == []


def test_change_fingerprints_differ_per_event() -> None:
    """Each change event has its own fingerprint (time, rule, account, field)."""
    run = Run([change("cash"), change("margin_type")])
    run.poll(account(A, cash=Decimal(1), margin_type="cash"))
    first = run.poll(account(A, cash=Decimal(2), margin_type="marginx1"))
    second = run.poll(account(A, cash=Decimal(3), margin_type="marginx1"))
    assert len({a.fingerprint for a in first + second}) == 3
