"""Tests for monitor.rules: (rules, previous, current, active state) -> alerts and new state."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rules_helpers import (
    GONE,
    NO_FIELD,
    SOURCE,
    T0,
    A,
    B,
    C,
    F,
    Poll,
    R,
    Run,
    Skipped,
    account,
    at,
    cash_poll,
    change,
    restriction,
    snapshot,
    statuses,
    threshold,
)

from monitor.config import RuleConfig, ThresholdRuleConfig
from monitor.models import Account, ActiveAlert, Alert, JSONValue, Severity, Status
from monitor.rules import AlertKey, SourceHealth, evaluate, evaluate_source

# --------------------------------------------------------------------------- threshold


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([Decimal("512.25")], [F], id="fires-on-first-poll"),
        pytest.param([Decimal(1500)], [""], id="quiet-when-false"),
        pytest.param([Decimal(1500), Decimal(999)], ["", F], id="fires-when-it-becomes-true"),
        pytest.param([Decimal(500), Decimal(400), Decimal(300), Decimal(1)], [F, "", "", ""],
                     id="one-per-episode"),
        pytest.param([Decimal(500), Decimal(1500)], [F, R], id="resolves"),
        pytest.param([Decimal(500), Decimal(1500), Decimal(1500)], [F, R, ""], id="resolves-once"),
        pytest.param([Decimal(500), Decimal(1500), Decimal(500)], [F, R, F], id="new-episode"),
        pytest.param([Decimal(500), NO_FIELD, Decimal(400), Decimal(1500)], [F, "", "", R],
                     id="missing-field-keeps-state"),
        pytest.param([Decimal(500), None, Decimal(1500)], [F, "", R], id="null-keeps-state"),
        pytest.param([Decimal(500), "n/a", True, Decimal(1500)], [F, "", "", R],
                     id="non-number-keeps-state"),
        pytest.param([Decimal(500), GONE, GONE, Decimal(400), Decimal(1500)], [F, R, "", F, R],
                     id="account-leaving-the-response-resolves"),
        pytest.param([Decimal(500), Skipped(Decimal(1500)), Decimal(1500)], [F, "", R],
                     id="skipped-account-keeps-state"),
        pytest.param([Decimal(1500), Skipped(Decimal(1)), Decimal(1)], ["", "", F],
                     id="skipped-account-does-not-fire"),
        pytest.param([NO_FIELD, GONE, Decimal(999)], ["", "", F], id="fires-once-data-arrives"),
        pytest.param([Decimal(1000), Decimal("999.99"), Decimal("1000.00")], ["", F, R],
                     id="boundary"),
    ],
)  # fmt: skip
def test_threshold_episodes(values: list[object], expected: list[str]) -> None:
    """One alert when the condition becomes true, one when false; missing data changes nothing."""
    assert statuses(Run([threshold()]).all([cash_poll(v) for v in values])) == expected


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


def test_threshold_fingerprints_per_episode_and_account() -> None:
    """Each episode of each account has its own fingerprint, shared by its firing and resolved."""
    run = Run([threshold()])
    low, high = Decimal(1), Decimal(5000)
    polls = [
        [account(A, cash_to_withdraw=low), account(B, cash_to_withdraw=low)],
        [account(A, cash_to_withdraw=high), account(B, cash_to_withdraw=high)],
        [account(A, cash_to_withdraw=low), account(B, cash_to_withdraw=high)],
        [account(A, cash_to_withdraw=high), account(B, cash_to_withdraw=high)],
    ]
    alerts = [a for p in polls for a in run.poll(*p)]
    episodes = {(a.account_number, a.fingerprint) for a in alerts}
    assert [(a.account_number, a.status) for a in alerts] == [
        (B, Status.FIRING),
        (A, Status.FIRING),
        (B, Status.RESOLVED),
        (A, Status.RESOLVED),
        (A, Status.FIRING),
        (A, Status.RESOLVED),
    ]
    assert len(episodes) == 3
    assert len({fp for _, fp in episodes}) == 3


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


def test_threshold_drops_state_of_accounts_no_longer_selected() -> None:
    """When a rule's globs stop selecting a firing account, its state goes (no resolve sent)."""
    before = Run([threshold()])
    before.poll(account(A, cash_to_withdraw=Decimal(1)))
    after = Run([threshold(accounts=["*@cor"])], previous=before.previous, active=before.active)
    assert after.poll(account(A, cash_to_withdraw=Decimal(1))) == []
    assert after.active == {}


# --------------------------------------------------------------------------- state


def test_state_carried_over_for_rules_still_present() -> None:
    """The firing state of a rule that still exists is kept as is while it stays true."""
    run = Run([threshold(), restriction()])
    run.poll(account(A, cash_to_withdraw=Decimal(1)))
    [(key, firing)] = run.active.items()
    assert key == ("low-cash", A)
    assert firing == ActiveAlert("low-cash", A, firing.fingerprint, at(0), "firing", at(0))
    assert run.poll(account(A, cash_to_withdraw=Decimal(2))) == []
    assert run.active == {key: firing}


@pytest.mark.parametrize(
    ("rules", "expected_keys"),
    [
        pytest.param([], [], id="all-rules-removed"),
        pytest.param([restriction()], [], id="threshold-removed"),
        pytest.param([threshold(name="other")], [("other", A)], id="renamed-is-a-new-rule"),
        pytest.param([threshold()], [("low-cash", A)], id="kept"),
    ],
)
def test_state_of_removed_rules_is_dropped(
    rules: list[RuleConfig], expected_keys: list[AlertKey]
) -> None:
    """Only rules in the config keep state; source_down's state is not evaluate()'s to return."""
    fp = "f" * 24
    active = {
        ("low-cash", A): ActiveAlert("low-cash", A, fp, T0),
        ("gone", B): ActiveAlert("gone", B, fp, T0),
        ("source_down", None): ActiveAlert("source_down", None, fp, T0),
    }
    current = snapshot(account(A, cash_to_withdraw=Decimal(1)), poll=1)
    result = evaluate(rules, {}, current, active)
    assert sorted(result.active, key=str) == sorted(expected_keys, key=str)
    assert [a.status for a in result.alerts] == [Status.FIRING] * ("other" in str(expected_keys))


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


# --------------------------------------------------------------------------- source_down


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


# --------------------------------------------------------------------------- determinism


def scenario(source: str) -> list[list[Alert]]:
    run = Run([threshold(), restriction(), change("cash")], source=source)
    return run.all(
        [
            Poll([account(A, cash_to_withdraw=Decimal(1), restriction="none", cash=Decimal(1))]),
            Poll([account(A, cash_to_withdraw=Decimal(1), restriction="closed", cash=Decimal(2))]),
            Poll([account(A, cash_to_withdraw=Decimal(5000), restriction="none", cash=Decimal(2))]),
        ]
    )


def test_same_inputs_same_alerts() -> None:
    """Evaluation is pure: the same polls give equal alerts with equal fingerprints."""
    first, second = scenario(SOURCE), scenario(SOURCE)
    assert statuses(first) == [F, "firing+firing", "resolved+firing"]
    assert first == second


def test_fingerprints_differ_between_sources() -> None:
    """The same episode on two sources has two fingerprints."""
    ours = [a.fingerprint for poll in scenario("a") for a in poll]
    theirs = [a.fingerprint for poll in scenario("b") for a in poll]
    assert not set(ours) & set(theirs)


def test_alerts_come_in_rule_then_account_order() -> None:
    """Alerts are ordered by rule (config order), then by account number."""
    run = Run([threshold(), threshold(name="other", op=">", value=0)])
    alerts = run.poll(*(account(n, cash_to_withdraw=Decimal(1)) for n in (C, A, B)))
    assert [(a.rule, a.account_number) for a in alerts] == [
        ("low-cash", B),
        ("low-cash", A),
        ("low-cash", C),
        ("other", B),
        ("other", A),
        ("other", C),
    ]


def test_only_the_changed_accounts_are_evaluated() -> None:
    """With ``only``, accounts outside it are not looked at: their record did not change, so
    neither can the outcome (the pipeline passes the parser's changed set)."""
    previous = {"A": account("A", cash_to_withdraw=Decimal("2000")), "B": account("B")}
    current = snapshot(
        account("A", cash_to_withdraw=Decimal("500")),
        account("B", cash_to_withdraw=Decimal("10")),
        poll=1,
    )
    rules: list[RuleConfig] = [threshold(), change("cash_to_withdraw")]

    everything = evaluate(rules, previous, current, {})
    only_a = evaluate(rules, previous, current, {}, only=frozenset({"A"}))

    assert {a.account_number for a in everything.alerts} == {"A", "B"}
    assert {(a.rule, a.account_number) for a in only_a.alerts} == {
        ("low-cash", "A"),
        ("cash_to_withdraw-changed", "A"),
    }
