"""Tests for monitor.rules.lifecycle: episodes (one firing and one resolved alert, one
fingerprint), ``for`` (pending), ``clear``, ``repeat``, ``send_resolved``, and accounts that
leave the response or are skipped, for every rule type with a condition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from rules_helpers import (
    GONE,
    NO_FIELD,
    T0,
    A,
    B,
    F,
    R,
    Run,
    Skipped,
    Timeline,
    account,
    cash_poll,
    m,
    statuses,
    threshold,
)

from monitor.config import DeltaRuleConfig, ExpressionRuleConfig, RuleConfig, StaleRuleConfig
from monitor.models import Account, ActiveAlert, Alert, Status
from monitor.rules import AlertKey, History
from monitor.rules.lifecycle import next_wait

KEY: AlertKey = ("low-cash", A)


def low(value: int | str) -> Account:
    return account(A, cash_to_withdraw=Decimal(value))


# --------------------------------------------------------------------------- episodes


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


def test_threshold_drops_state_of_accounts_no_longer_selected() -> None:
    """When a rule's globs stop selecting a firing account, its state goes (no resolve sent)."""
    before = Run([threshold()])
    before.poll(account(A, cash_to_withdraw=Decimal(1)))
    after = Run([threshold(accounts=["*@cor"])], previous=before.previous, active=before.active)
    assert after.poll(account(A, cash_to_withdraw=Decimal(1))) == []
    assert after.active == {}


# --------------------------------------------------------------------------- for


@pytest.mark.parametrize(
    ("polls", "expected"),
    [
        pytest.param([(0, 900), (1, 900), (2, 900)], ["", "", F], id="fires-after-2m"),
        pytest.param([(0, 900), (1, 900), (1.99, 900)], ["", "", ""], id="not-before-2m"),
        pytest.param([(0, 900), (1, 1500)], ["", ""], id="one-poll-dip-pages-nobody"),
        pytest.param([(0, 900), (1, 1500), (2, 900), (3, 900), (4, 900)], ["", "", "", "", F],
                     id="wait-starts-over-after-a-break"),
        pytest.param([(0, 900), (1, 800), (2, 700), (3, 600)], ["", "", F, ""],
                     id="changing-value-still-holding"),
        pytest.param([(0, 900), (2, 900), (3, 1500)], ["", F, R], id="resolves-as-usual"),
        pytest.param([(0, 900), (1, Skipped(Decimal(1500))), (2, 900)], ["", "", F],
                     id="skipped-keeps-the-wait"),
        pytest.param([(0, 900), (1, None), (2, 900)], ["", "", F], id="no-value-keeps-the-wait"),
        pytest.param([(0, 900), (1, GONE), (2, 900), (3, 900), (4, 900)], ["", "", "", "", F],
                     id="pending-account-leaving-is-forgotten"),
        pytest.param([(0, 900), (10, 900)], ["", F], id="long-gap"),
    ],
)  # fmt: skip
def test_for_waits_before_firing(polls: list[tuple[float, object]], expected: list[str]) -> None:
    """With ``for``, the condition must hold over consecutive polls that long before it fires;
    a pending alert whose condition stops holding is forgotten without a notification."""
    run = Timeline([threshold(**{"for": "2m"})])
    values = [Decimal(v) if isinstance(v, int) else v for _, v in polls]
    assert statuses([run.cash(t, v) for (t, _), v in zip(polls, values, strict=True)]) == expected


def test_pending_is_part_of_the_state() -> None:
    """A pending alert is returned in the state (no fingerprint, since when it holds), so that it
    can be stored; a dip forgets it; the firing state replaces it."""
    run = Timeline([threshold(**{"for": "2m"})])
    assert run.cash(0, Decimal(900)) == []
    assert run.active == {KEY: ActiveAlert("low-cash", A, "", m(0), "pending")}
    run.cash(1, Decimal(800))
    assert run.active == {KEY: ActiveAlert("low-cash", A, "", m(0), "pending")}
    [firing] = run.cash(2, Decimal(700))
    assert firing.fingerprint
    assert run.active == {KEY: ActiveAlert("low-cash", A, firing.fingerprint, m(2), "firing", m(2))}
    run.cash(3, Decimal(1500))
    assert run.active == {}


def test_pending_wait_survives_a_restart() -> None:
    """A pending state loaded back (a restart) keeps its start: the wait does not start over."""
    before = Timeline([threshold(**{"for": "2m"})])
    before.cash(0, Decimal(900))
    after = Timeline(before.rules, previous=before.previous, active=dict(before.active))
    assert [a.status for a in after.cash(2, Decimal(900))] == [Status.FIRING]


def test_pending_account_with_an_unchanged_record_fires_when_its_wait_is_over() -> None:
    """With ``only`` (the changed accounts), a pending account whose record did not change is
    still looked at once its wait is over, and fires."""
    run = Timeline([threshold(**{"for": "2m"})])
    assert run.poll(0, low(900)) == []
    assert run.poll(1, low(900), only=frozenset()) == []
    assert run.active[KEY].state == "pending"
    [firing] = run.poll(2, low(900), only=frozenset())
    assert (firing.status, firing.account_number, firing.observed_at) == (F, A, m(2))
    assert run.active[KEY].state == "firing"


def test_pending_accounts_are_independent() -> None:
    """Each account waits on its own."""
    run = Timeline([threshold(**{"for": "2m"})])
    run.poll(0, low(900), account(B, cash_to_withdraw=Decimal(5000)))
    run.poll(1, low(900), account(B, cash_to_withdraw=Decimal(1)))
    alerts = run.poll(2, low(900), account(B, cash_to_withdraw=Decimal(1)))
    assert [(a.account_number, a.status) for a in alerts] == [(A, Status.FIRING)]
    alerts = run.poll(3, low(900), account(B, cash_to_withdraw=Decimal(1)), only=frozenset())
    assert [(a.account_number, a.status) for a in alerts] == [(B, Status.FIRING)]


# --------------------------------------------------------------------------- clear


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        pytest.param({}, [900, 1100, 1199, 1200], [F, "", "", R], id="resolves-at-clear"),
        pytest.param({}, [900, 1100, 900, 1300], [F, "", "", R], id="back-below-is-same-episode"),
        pytest.param({}, [1100, 1150, 999], ["", "", F], id="band-does-not-fire"),
        pytest.param({}, [900, 1200, 1100, 999], [F, R, "", F], id="new-episode-below-value"),
        pytest.param({"op": "<=", "clear": 1000}, [1000, 1000, 1001], [F, "", R],
                     id="clear-equal-to-value"),
        pytest.param({"op": ">", "value": 1000, "clear": 800}, [1100, 900, 801, 800, 900],
                     [F, "", "", R, ""], id="greater-than"),
        pytest.param({"op": ">=", "value": 1000, "clear": 800}, [1000, 800, 799], [F, "", R],
                     id="greater-or-equal"),
    ],
)  # fmt: skip
def test_clear_is_hysteresis(rule: dict[str, Any], values: list[int], expected: list[str]) -> None:
    """A firing alert resolves only once the condition no longer holds against ``clear``
    (``op = "<"``, ``value = 1000``, ``clear = 1200``: resolves at 1200, not at 1100)."""
    run = Timeline([threshold(**{"clear": 1200, **rule})])
    assert statuses([run.cash(i, Decimal(v)) for i, v in enumerate(values)]) == expected


def test_clear_resolved_summary_names_the_clear_value() -> None:
    """The resolved alert says the value is no longer beyond ``clear``."""
    run = Timeline([threshold(clear=1200)])
    run.cash(0, Decimal(900))
    [resolved] = run.cash(1, Decimal(1250))
    assert resolved.summary == "12345678@vision: cash_to_withdraw back to 1250 (no longer < 1200)"


# --------------------------------------------------------------------------- repeat


def test_repeat_renotifies_while_firing() -> None:
    """With ``repeat = "4h"``, a firing alert is notified again every 4h with the same
    fingerprint and a later ``observed_at``, even when the record did not change."""
    run = Timeline([threshold(repeat="4h")])
    [first] = run.poll(0, low(900))
    assert run.poll(60, low(900), only=frozenset()) == []
    assert run.poll(239, low(900), only=frozenset()) == []
    [again] = run.poll(240, low(900), only=frozenset())
    assert (again.status, again.fingerprint, again.observed_at) == (F, first.fingerprint, m(240))
    assert again.started_at == m(0)
    assert run.active[KEY] == ActiveAlert("low-cash", A, first.fingerprint, m(0), "firing", m(240))
    assert run.poll(300, low(800)) == []
    [third] = run.poll(480, low(800), only=frozenset())
    assert (third.fingerprint, third.observed_at, third.current) == (
        first.fingerprint,
        m(480),
        Decimal(800),
    )
    [resolved] = run.poll(481, low(1500))
    assert (resolved.status, resolved.fingerprint) == (R, first.fingerprint)


def test_repeat_is_off_by_default() -> None:
    """Without ``repeat`` a firing alert is notified once, however long it fires."""
    run = Timeline([threshold()])
    run.poll(0, low(900))
    assert run.poll(60 * 24 * 30, low(900)) == []
    assert run.poll(60 * 24 * 60, low(900), only=frozenset()) == []


def test_repeat_counts_from_the_firing_after_for() -> None:
    """With ``for``, the first repeat is ``repeat`` after the alert fired, not after it began
    to hold."""
    run = Timeline([threshold(**{"for": "1h", "repeat": "1h"})])
    run.poll(0, low(900))
    [fired] = run.poll(60, low(900), only=frozenset())
    assert run.poll(90, low(900), only=frozenset()) == []
    [again] = run.poll(120, low(900), only=frozenset())
    assert (fired.status, again.status, again.fingerprint) == (F, F, fired.fingerprint)


def test_repeat_goes_on_inside_the_clear_band() -> None:
    """An alert held firing by ``clear`` (between value and clear) is still firing: it repeats,
    and its summary says it has not cleared yet rather than repeat the condition."""
    run = Timeline([threshold(clear=1200, repeat="4h")])
    [first] = run.poll(0, low(900))
    assert run.poll(1, low(1100)) == []
    [again] = run.poll(240, low(1100), only=frozenset())
    assert (again.status, again.fingerprint, again.current) == (F, first.fingerprint, 1100)
    assert again.summary == "12345678@vision: cash_to_withdraw is 1100 (not yet clear: < 1200)"


# --------------------------------------------------------------------------- send_resolved


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([900, 1500, 1500, 900, 1500], [F, R, "", F, R], id="resolves"),
        pytest.param([900, GONE, 900], [F, R, F], id="leaving-resolves"),
    ],
)
def test_send_resolved_false_still_ends_the_episode(
    values: list[object], expected: list[str]
) -> None:
    """``send_resolved = false`` does not change the lifecycle: the resolution is still an alert
    (sinks that track alert state need it; the others are left out when sinks are chosen), and
    a later episode fires again, with a fingerprint of its own."""
    run = Timeline([threshold(send_resolved=False)])
    alerts = [run.cash(i, Decimal(v) if isinstance(v, int) else v) for i, v in enumerate(values)]
    assert statuses(alerts) == expected
    fingerprints = {a.fingerprint for poll in alerts for a in poll}
    assert len(fingerprints) == 2


def test_send_resolved_false_clears_the_state() -> None:
    """The episode's state is gone once its condition no longer holds."""
    run = Timeline([threshold(send_resolved=False)])
    run.cash(0, Decimal(900))
    run.cash(1, Decimal(1500))
    assert run.active == {}


# --------------------------------------------------------------------------- every condition type


@dataclass(frozen=True)
class Kind:
    """A condition rule type, with an account of A on which its condition holds or does not."""

    build: Callable[..., RuleConfig]
    holds: Callable[[], Account]
    clear: Callable[[], Account]
    field: str | None
    history: History | None = None


def _threshold(**fields: Any) -> RuleConfig:
    return threshold(**fields)


def _expression(**fields: Any) -> RuleConfig:
    rule = {"name": "low-cash", "type": "expression", "when": "cash_to_withdraw < 1000.0"}
    return ExpressionRuleConfig.model_validate({**rule, **fields})


def _delta(**fields: Any) -> RuleConfig:
    rule = {"name": "low-cash", "type": "delta", "field": "cash_to_withdraw", "by": 1000}
    return DeltaRuleConfig.model_validate({**rule, "direction": "down", "window": "1d", **fields})


KINDS = {
    "threshold": Kind(_threshold, lambda: low(900), lambda: low(1500), "cash_to_withdraw"),
    "expression": Kind(_expression, lambda: low(900), lambda: low(1500), None),
    # The window's start is before the history: its oldest value (2000) is the base.
    "delta": Kind(
        _delta,
        lambda: low(900),
        lambda: low(1500),
        "cash_to_withdraw",
        {(A, "cash_to_withdraw"): [(m(-1), Decimal(2000))]},
    ),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    result: Kind = KINDS[request.param]
    return result


def _run(kind: Kind, **fields: Any) -> tuple[Timeline, Callable[..., list[Alert]]]:
    run = Timeline([kind.build(**fields)])

    def poll(minute: float, *accounts: Account, **kwargs: Any) -> list[Alert]:
        return run.poll(minute, *accounts, history=kind.history, **kwargs)

    return run, poll


def test_every_condition_type_waits_for(kind: Kind) -> None:
    """``for`` holds back every condition type; a dip forgets the pending alert."""
    run, poll = _run(kind, **{"for": "2m"})
    assert poll(0, kind.holds()) == []
    assert run.active[KEY] == ActiveAlert("low-cash", A, "", m(0), "pending")
    assert poll(1, kind.clear()) == []
    assert run.active == {}
    assert poll(2, kind.holds()) == []
    assert [a.status for a in poll(4, kind.holds(), only=frozenset())] == [F]


def test_every_condition_type_repeats(kind: Kind) -> None:
    """``repeat`` re-notifies every condition type, unchanged accounts included."""
    run, poll = _run(kind, repeat="4h")
    [first] = poll(0, kind.holds())
    [again] = poll(240, kind.holds(), only=frozenset())
    assert (again.status, again.fingerprint, again.observed_at) == (F, first.fingerprint, m(240))
    assert run.active[KEY].notified_at == m(240)


def test_every_condition_type_ends_its_episode_without_send_resolved(kind: Kind) -> None:
    """``send_resolved = false`` leaves every condition type's lifecycle alone: it resolves
    (for the sinks that track state) and a new episode fires again."""
    _, poll = _run(kind, send_resolved=False)
    assert statuses([poll(0, kind.holds()), poll(1, kind.clear()), poll(2, kind.holds())]) == [
        F,
        R,
        F,
    ]


def test_every_condition_type_resolves_when_the_account_leaves(kind: Kind) -> None:
    """A firing account that is no longer in the response resolves, naming the account, even
    when no account changed (``only`` empty)."""
    run, poll = _run(kind)
    [firing] = poll(0, kind.holds())
    [resolved] = poll(1, account(B, cash_to_withdraw=Decimal(5000)), only=frozenset({B}))
    assert resolved.status is Status.RESOLVED
    assert resolved.summary == "12345678@vision: account no longer in the response"
    assert (resolved.account_number, resolved.fingerprint, resolved.field) == (
        A,
        firing.fingerprint,
        kind.field,
    )
    assert (resolved.current, resolved.observed_at, resolved.started_at) == (None, m(1), m(0))
    assert resolved.snapshot == kind.holds().record
    assert run.active == {}
    assert poll(2, account(B, cash_to_withdraw=Decimal(5000))) == []


def test_every_condition_type_keeps_state_of_a_skipped_account(kind: Kind) -> None:
    """An account whose record is unusable (absent from the accounts, named in ``skip``) has not
    left: its firing alert stays, and resolves later on data."""
    run, poll = _run(kind)
    [firing] = poll(0, kind.holds())
    assert poll(1, skip=frozenset({A})) == []
    assert poll(2, kind.clear(), skip=frozenset({A})) == []
    assert list(run.active) == [KEY]
    [resolved] = poll(3, kind.clear())
    assert (resolved.status, resolved.fingerprint) == (R, firing.fingerprint)


def test_every_condition_type_keeps_a_pending_skipped_account(kind: Kind) -> None:
    """A skipped account's pending wait goes on: it fires once the wait is over."""
    run, poll = _run(kind, **{"for": "2m"})
    poll(0, kind.holds())
    assert poll(1, skip=frozenset({A})) == []
    assert run.active[KEY].state == "pending"
    assert [a.status for a in poll(2, kind.holds())] == [F]


def test_leaving_resolves_the_threshold_with_its_last_value() -> None:
    """The resolved alert of an account that left carries the last value seen as ``previous``."""
    run = Timeline([threshold()])
    run.cash(0, Decimal(900))
    run.cash(1, Decimal("512.25"))
    [resolved] = run.cash(2, GONE)
    assert (resolved.previous, resolved.current) == (Decimal("512.25"), None)


def test_stale_resolves_when_the_account_leaves() -> None:
    """A stale alert resolves too when its account leaves the response."""
    rule = StaleRuleConfig.model_validate(
        {"name": "stuck", "type": "stale", "field": "unsettled_cash", "for": "1h"}
    )
    run = Timeline([rule])
    run.poll(0, account(A, unsettled_cash=Decimal(150)))
    [firing] = run.poll(60, account(A, unsettled_cash=Decimal(150)), only=frozenset())
    [resolved] = run.poll(61)
    assert (resolved.status, resolved.fingerprint, resolved.account_number) == (
        R,
        firing.fingerprint,
        A,
    )
    assert resolved.summary == "12345678@vision: account no longer in the response"


def test_the_next_wait_is_the_earliest_for_end_or_repeat_of_the_active_alerts() -> None:
    """What the daemon times a step of a source polled minutes apart by: a pending alert's
    ``for`` from when it started, a firing one's ``repeat`` from its last notification; none
    for a rule without them, a rule no longer configured, or a source's own alert."""
    waits = threshold(name="waits", **{"for": "5m", "repeat": "1h"})
    plain = threshold(name="plain")
    later = T0 + timedelta(minutes=20)
    pending = ActiveAlert("waits", "A1", "", T0, "pending")
    firing = ActiveAlert("waits", "A2", "fp-2", T0, "firing", later)
    once = ActiveAlert("plain", "A3", "fp-3", T0, "firing", T0)
    gone = ActiveAlert("removed", "A4", "fp-4", T0, "pending")
    own = ActiveAlert("waits", None, "fp-5", T0, "pending")
    rules = [waits, plain]
    assert next_wait(rules, {}) is None
    assert next_wait(rules, {("waits", "A1"): pending}) == T0 + timedelta(minutes=5)
    assert next_wait(rules, {("waits", "A2"): firing}) == later + timedelta(hours=1)
    others = {("plain", "A3"): once, ("removed", "A4"): gone, ("waits", None): own}
    assert next_wait(rules, others) is None
    assert next_wait(rules, {**others, ("waits", "A2"): firing}) == later + timedelta(hours=1)
