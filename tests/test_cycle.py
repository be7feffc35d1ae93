"""The pure poll step: (state, what a poll saw, rules, config, now) -> (new state, PollWrite).

No store, no SQL, no clock: each test builds the state, calls :func:`monitor.cycle.step` and
asserts on the value it returns. The life of alerts over several polls (``for``, ``repeat``,
windowed history, ``source_down``, reloads) is in ``test_cycle_lifecycle.py``; what the
pipeline does around the step (commit, restart, logs) in ``test_pipeline.py``.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cycle_helpers import (
    LOW_CASH,
    LOW_CASH_EVERY_SINK,
    RESTRICTED,
    SOURCE,
    T0,
    baseline,
    body,
    config,
    outbox,
    record,
    run,
    statuses,
)

from monitor.config import Config, config_from_dict
from monitor.cycle import (
    Delivery,
    PollRecord,
    PollState,
    PollWrite,
    SourceState,
    notification_id,
    reconfigured,
)
from monitor.errors import FetchError, ParseError
from monitor.models import ActiveAlert, Alert, Severity, Status
from monitor.parse import parse_body
from monitor.rules import SourceHealth

MARGIN: dict[str, Any] = {
    "type": "change",
    "name": "margin",
    "field": "margin_type",
    "sinks": ["audit"],
}


def with_margin() -> Config:
    """``low-cash`` to ``ops``, ``restricted`` to every sink, ``margin`` changes to ``audit``."""
    return config(LOW_CASH, RESTRICTED, MARGIN)


def account(number: str, cash: str = "5000.00", **fields: Any) -> dict[str, Any]:
    """A record with a ``margin_type`` (``cash`` unless given), for the ``margin`` rule."""
    return record(number, cash, **{"margin_type": "cash", **fields})


# --------------------------------------------------------------------------- baseline and changes


def test_the_first_poll_writes_every_account_and_notifies_nothing_but_conditions() -> None:
    """The baseline: every account is written. It has nothing to compare with: no change
    alerts, but a threshold that already holds fires at once."""
    done = run(
        PollState(),
        body(account("A"), account("B", "500.00", restriction="restricted")),
        with_margin(),
    )

    assert [a.account_number for a in done.write.upserts] == ["A", "B"]
    assert done.write.deletes == ()
    assert done.write.poll == PollRecord(T0, ok=True, account_count=2)
    assert statuses(done.write) == [("low-cash", "firing", None, ("ops",))]
    assert outbox(done.write) == [("low-cash", "firing", "ops", "B")]
    assert (done.changed, done.alerts) == (2, 1)
    assert done.state.full is False
    assert set(done.state.accounts or {}) == {"A", "B"}
    assert [a.account_number for a in done.state.firing] == ["B"]


def test_a_change_poll_routes_notifications_to_the_rules_sinks() -> None:
    """Each notification goes to its rule's ``sinks``, or to every sink when it names none."""
    cfg = with_margin()
    state = baseline(account("A"), account("B"), cfg=cfg)

    done = run(
        state,
        body(account("A", margin_type="marginx2"), account("B", restriction="restricted")),
        cfg,
        now=T0 + timedelta(seconds=30),
    )

    assert done.alerts == 2
    assert outbox(done.write) == [
        ("restricted", "firing", "ops", "B"),
        ("restricted", "firing", "audit", "B"),
        ("margin", "firing", "audit", "A"),
    ]


def test_an_unchanged_poll_writes_no_account_and_no_alert_state() -> None:
    """Polling the same accounts again writes no account row and queues nothing."""
    state = baseline(record("A"), record("B"))
    done = run(state, body(record("A"), record("B")), now=T0 + timedelta(seconds=30))

    assert done.write.upserts == ()
    assert done.write.deletes == ()
    assert done.write.active is None  # unchanged: the store leaves the rows alone
    assert done.write.deliveries == ()
    assert (done.changed, done.alerts) == (0, 0)
    assert done.state.accounts is not None
    assert done.state.accounts["A"] is (state.accounts or {})["A"]  # the record is reused


def test_only_changed_new_and_removed_accounts_are_written() -> None:
    """A poll rewrites the rows of changed accounts, adds new ones and deletes removed ones;
    unchanged accounts are not written."""
    state = baseline(record("A"), record("B"), record("C"))
    done = run(state, body(record("A", "900.00"), record("B"), record("D")))

    assert [a.account_number for a in done.write.upserts] == ["A", "D"]
    assert done.write.deletes == ("C",)
    assert done.changed == 3
    assert statuses(done.write) == [("low-cash", "firing", None, ("ops",))]
    assert done.write.active == {("low-cash", "A"): done.state.active[("low-cash", "A")]}
    assert done.write.active_before == state.active


@pytest.mark.parametrize(
    "bad",
    [pytest.param({"cash": "lots"}, id="money"), pytest.param({"daytrades_count": -1}, id="count")],
)
def test_an_unusable_record_keeps_its_last_snapshot_and_is_not_deleted(
    bad: dict[str, Any],
) -> None:
    """An account whose record is unusable is not taken for removed: it keeps its last
    snapshot, and nothing is written for it."""
    state = baseline(record("A"), record("B"))
    done = run(state, body(record("A"), {**record("B"), **bad}), now=T0 + timedelta(seconds=30))

    assert done.skipped == frozenset({"B"})
    assert (done.write.upserts, done.write.deletes, done.changed) == ((), (), 0)
    assert done.state.accounts is not None
    assert done.state.accounts["B"] is (state.accounts or {})["B"]


def test_a_duplicate_record_does_not_hide_the_account() -> None:
    """When an account number appears twice the first record wins: rules see it (the
    duplicate is skipped, not the account), and the next poll starts from it."""
    state = baseline(record("A", "500.00"))
    seen = parse_body(body(record("A", "1500.00"), record("A", "100.00")), state.accounts)
    assert [(p.account_number, p.message, p.skipped) for p in seen.problems] == [
        ("A", "duplicate account_number", True)
    ]

    done = run(state, seen, now=T0 + timedelta(seconds=30))
    assert done.skipped == frozenset()
    assert outbox(done.write) == [("low-cash", "resolved", "ops", "A")]
    assert (done.state.accounts or {})["A"].get("cash") == Decimal("1500.00")

    again = run(done.state, body(record("A", "1500.00")), now=T0 + timedelta(seconds=60))
    assert (again.changed, again.alerts) == (0, 0)


def test_an_unknown_enum_value_is_kept_as_data() -> None:
    """A margin_type we do not know is data, not an error: it is written and alerted on as a
    change, once, however many accounts and polls carry it."""
    cfg = with_margin()
    state = baseline(account("A"), account("B"), cfg=cfg)
    portfolio = body(account("A", margin_type="portfolio"), account("B", margin_type="portfolio"))

    seen = parse_body(portfolio, state.accounts)
    assert [(p.account_number, p.skipped) for p in seen.problems] == [("A", False), ("B", False)]
    first = run(state, seen, cfg, now=T0 + timedelta(seconds=30))
    assert [a.get("margin_type") for a in first.write.upserts] == ["portfolio", "portfolio"]
    assert [r[:3] for r in outbox(first.write)] == [("margin", "firing", "audit")] * 2

    state = first.state
    for n in (2, 3):
        done = run(state, portfolio, cfg, now=T0 + timedelta(seconds=30 * n))
        assert (done.write.upserts, done.write.deliveries) == ((), ())
        state = done.state


def test_the_diff_decides_what_changed_true_is_not_1() -> None:
    """The parser, the step and the rules share one change detector: an unknown field that
    goes from ``1`` to ``true`` is a change (Python's ``==`` says they are equal)."""
    rule = {"type": "expression", "name": "flagged", "when": "flag == true", "fields": ["flag"]}
    cfg = config(rule)
    state = baseline(record("A", flag=1), cfg=cfg)
    done = run(state, body(record("A", flag=True)), cfg)

    assert [a.account_number for a in done.write.upserts] == ["A"]
    assert done.write.upserts[0].get("flag") is True
    assert statuses(done.write) == [("flagged", "firing", None, ("ops", "audit"))]


def test_a_known_number_turned_boolean_is_refused_not_reused() -> None:
    """``cash: 1`` then ``cash: true``: not the same record, and ``true`` is not money."""
    state = baseline(record("A", 1))
    done = run(state, body(record("A", True)))

    assert done.skipped == frozenset({"A"})
    assert done.write.upserts == ()


def test_events_come_from_the_diff() -> None:
    state = baseline(record("A"), record("B"))
    done = run(state, body(record("A", restriction="restricted"), record("B")))

    [delivery] = done.write.deliveries
    alert = delivery.notification.alert
    assert (alert.rule, alert.kind, alert.previous, alert.current) == (
        "restricted",
        "event",
        "none",
        "restricted",
    )
    assert delivery.sinks == ("ops", "audit")
    assert delivery.notification.id == notification_id(alert)


def test_notification_ids_are_stable_and_distinct() -> None:
    """The id depends on the alert's fingerprint, status and time, nothing else."""
    alert = Alert(
        status=Status.FIRING,
        fingerprint="fp",
        rule="r",
        type="threshold",
        severity=Severity.WARNING,
        account_number="A",
        field="cash",
        previous=None,
        current=Decimal(1),
        summary="s",
        observed_at=T0,
    )
    same = notification_id(alert)
    assert same == notification_id(alert)
    assert len(same) == 32
    assert notification_id(replace(alert, status=Status.RESOLVED)) != same
    assert notification_id(replace(alert, fingerprint="other")) != same
    assert notification_id(replace(alert, summary="different words")) == same


def test_an_expression_that_cannot_be_evaluated_is_a_problem_of_each_account() -> None:
    """An expression that cannot be evaluated on many accounts (``previous`` unguarded on the
    first poll) is one problem per account, all of one kind (the pipeline logs the kind once);
    at the next poll, with a ``previous``, there is none."""
    cfg = config({"type": "expression", "name": "drop", "when": "previous.cash - cash > 1000.0"})
    first = run(PollState(), body(*[record(f"{n}@vision") for n in range(3)]), cfg)

    assert [p.account for p in first.problems] == ["0@vision", "1@vision", "2@vision"]
    assert {(p.rule, p.what, p.detail) for p in first.problems} == {
        (
            "drop",
            "cannot evaluate `when`",
            "no such key 'cash' (for previous.cash, guard it with has(previous.cash))",
        )
    }
    assert first.write.deliveries == ()

    then = [record(f"{n}@vision", "4000.00") for n in range(3)]
    assert run(first.state, body(*then), cfg, now=T0 + timedelta(seconds=30)).problems == ()


# --------------------------------------------------------------------------- failures


def test_a_failed_poll_counts_and_fires_source_down_to_every_sink() -> None:
    state = baseline(record("A"))
    error = FetchError("HTTP 503", retry_after=30.0)
    first = run(state, error, down_after=2)
    assert first.write == PollWrite(
        SOURCE, PollRecord(T0, ok=False, error="HTTP 503"), first.state.health
    )
    assert (first.state.health.failures, first.error, first.retry_after) == (1, "HTTP 503", 30.0)
    assert first.state.accounts is state.accounts

    second = run(first.state, ParseError("response is not JSON: empty body"), down_after=2)
    assert second.state.health.down is not None
    assert statuses(second.write) == [("source_down", "firing", None, ("ops", "audit"))]
    assert second.retry_after is None

    back = run(second.state, body(record("A")), down_after=2)
    assert statuses(back.write) == [("source_down", "resolved", None, ("ops", "audit"))]
    assert back.state.health == SourceHealth()


# --------------------------------------------------------------------------- sinks and mutes


def test_a_mute_window_holds_instead_of_queueing() -> None:
    cfg = config(LOW_CASH, mute=[{"name": "mornings", "start": "07:00", "end": "09:00"}])
    done = run(PollState(), body(record("A", "10.00")), cfg)

    assert statuses(done.write) == [("low-cash", "firing", "mornings", ("ops",))]
    assert done.write.queued == ()
    assert done.write.held == done.write.deliveries


def test_min_severity_and_send_resolved_choose_the_sinks() -> None:
    quiet = {**LOW_CASH, "sinks": None, "send_resolved": False}
    del quiet["sinks"]
    cfg = config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t0ken"},
            "sinks": [
                {"type": "log", "name": "ops"},
                {"type": "log", "name": "pager", "min_severity": "critical"},
                {"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9/"},
            ],
            "rules": [quiet],
        },
        base_dir=Path(),
    )
    fired = run(PollState(), body(record("A", "10.00")), cfg)
    assert statuses(fired.write) == [("low-cash", "firing", None, ("ops", "am"))]

    resolved = run(fired.state, body(record("A")), cfg)
    assert statuses(resolved.write) == [("low-cash", "resolved", None, ("am",))]


@pytest.mark.parametrize(
    ("rule", "severity", "expected"),
    [
        pytest.param("low-cash", Severity.INFO, ("ops",), id="info: only the sink taking all"),
        pytest.param("low-cash", Severity.WARNING, ("ops", "chat"), id="warning"),
        pytest.param("low-cash", Severity.CRITICAL, ("ops", "chat", "pager"), id="critical"),
        pytest.param("low-cash", None, ("ops", "chat", "pager"), id="no severity: all"),
        pytest.param("audited", Severity.CRITICAL, ("pager",), id="the rule's own sinks"),
        pytest.param("audited", Severity.WARNING, (), id="none left"),
        pytest.param("source_down", Severity.CRITICAL, ("ops", "chat", "pager"), id="builtin"),
    ],
)
def test_sinks_for_drops_sinks_above_the_severity(
    rule: str, severity: Severity | None, expected: tuple[str, ...]
) -> None:
    """``Config.sinks_for(rule, severity)``: the rule's sinks (all when unnamed), less those
    whose ``min_severity`` is above the notification's severity."""
    cfg = config(
        LOW_CASH_EVERY_SINK,
        {**LOW_CASH, "name": "audited", "sinks": ["pager"]},
        sinks=[
            {"type": "log", "name": "ops"},
            {"type": "log", "name": "chat", "min_severity": "warning"},
            {"type": "log", "name": "pager", "min_severity": "critical"},
        ],
    )
    assert cfg.sinks_for(rule, severity) == expected


def test_notifications_are_queued_by_severity() -> None:
    """A warning rule's notification skips the critical-only sink; a critical one and
    ``source_down`` (critical) reach it."""
    sinks = [{"type": "log", "name": "ops"}, {"type": "log", "name": "pager"}]
    sinks[1]["min_severity"] = "critical"
    very_low = {**LOW_CASH_EVERY_SINK, "name": "very-low", "value": 100, "severity": "critical"}
    cfg = config(LOW_CASH_EVERY_SINK, very_low, sinks=sinks)

    done = run(PollState(), body(record("A1", "50.00")), cfg, down_after=1)
    assert [(r, sink) for r, _, sink, _ in outbox(done.write)] == [
        ("low-cash", "ops"),
        ("very-low", "ops"),
        ("very-low", "pager"),
    ]

    down = run(done.state, FetchError("HTTP 503"), cfg, down_after=1)
    assert [(r, sink) for r, _, sink, _ in outbox(down.write)] == [
        ("source_down", "ops"),
        ("source_down", "pager"),
    ]


# --------------------------------------------------------------------------- history and reloads


def test_step_never_changes_the_state_it_is_given() -> None:
    """Pure: the input state (history included) is left exactly as it was."""
    windowed = {"type": "delta", "name": "drop", "field": "cash", "by": 100, "window": "1h"}
    cfg = config(windowed, LOW_CASH)
    state = baseline(record("A"), cfg=cfg)

    def seen(state: PollState) -> Any:
        records = {n: dict(a.record) for n, a in (state.accounts or {}).items()}
        return copy.deepcopy((records, dict(state.active), dict(state.history)))

    before = seen(state)
    done = run(state, body(record("A", "10.00")), cfg, now=T0 + timedelta(minutes=5))

    assert seen(state) == before
    assert done.state.history[("A", "cash")] == (
        (T0, Decimal("5000.00")),
        (T0 + timedelta(minutes=5), Decimal("10.00")),
    )
    assert done.write.history == (("A", "cash", T0 + timedelta(minutes=5), Decimal("10.00")),)


def test_history_leaves_the_window_but_keeps_its_starting_value() -> None:
    windowed = {"type": "delta", "name": "drop", "field": "cash", "by": 100, "window": "1h"}
    cfg = config(windowed)
    state = PollState(
        accounts=None,
        history={
            ("A", "cash"): (
                (T0 - timedelta(hours=3), Decimal(1)),
                (T0 - timedelta(hours=2), Decimal(2)),
                (T0 - timedelta(minutes=30), Decimal(3)),
            ),
            ("gone", "cash"): ((T0, Decimal(1)),),
        },
    )
    done = run(state, body(record("A", "3")), cfg)

    assert done.state.history == {
        ("A", "cash"): (
            (T0 - timedelta(hours=2), Decimal(2)),
            (T0 - timedelta(minutes=30), Decimal(3)),
        )
    }
    assert done.write.history_deletes == (
        ("A", "cash", T0 - timedelta(hours=3), Decimal(1)),
        ("gone", "cash", T0, Decimal(1)),
    )


def test_an_unusable_record_keeps_its_windowed_history() -> None:
    """A record skipped for one poll is a gap in the data, not a new account: the values seen
    before it stay, so a fall that began before the gap still fires, and a firing alert is not
    resolved for want of its base."""
    fall = {"type": "delta", "name": "fall", "field": "cash", "by": 1000, "window": "1h"}
    cfg = config({**fall, "direction": "down", "sinks": ["ops"]})
    state = baseline(record("A", "5000.00"), cfg=cfg)
    before = run(state, body(record("A", "4500.00")), cfg, now=T0 + timedelta(minutes=10)).state

    gap = run(before, body(record("A", "lots")), cfg, now=T0 + timedelta(minutes=20))
    assert gap.skipped == frozenset({"A"})
    assert gap.state.history == before.history
    assert gap.write.history_deletes == ()

    done = run(gap.state, body(record("A", "3900.00")), cfg, now=T0 + timedelta(minutes=30))
    assert statuses(done.write) == [("fall", "firing", None, ("ops",))]

    gap = run(done.state, body(record("A", "lots")), cfg, now=T0 + timedelta(minutes=40))
    still = run(gap.state, body(record("A", "3800.00")), cfg, now=T0 + timedelta(minutes=50))
    assert still.write.deliveries == ()
    assert [a.state for a in still.state.active.values()] == ["firing"]


def test_a_removed_rule_resolves_its_firing_alerts_with_its_old_sinks() -> None:
    state = baseline(record("A", "10.00"), record("B", "20.00"))
    assert set(state.active) == {("low-cash", "A"), ("low-cash", "B")}

    after = config(RESTRICTED)
    state, ending = reconfigured(state, config().rules, after.rules)
    assert ending == ["low-cash"]
    assert state.full is True

    done = run(state, body(record("A", "10.00"), record("B", "20.00")), after)
    assert statuses(done.write) == [
        ("low-cash", "resolved", None, ("ops",)),
        ("low-cash", "resolved", None, ("ops",)),
    ]
    assert done.write.active == {}
    assert done.state.retired == {}


def test_a_rule_that_becomes_an_event_is_retired() -> None:
    as_event = config({**RESTRICTED, "name": "low-cash"}, RESTRICTED).rules
    state, ending = reconfigured(PollState(), config().rules, as_event)
    assert ending == ["low-cash"]
    assert set(state.retired) == {"low-cash"}


def test_a_rule_removed_and_back_before_the_next_poll_keeps_its_alerts() -> None:
    state, ending = reconfigured(PollState(), config().rules, config(RESTRICTED).rules)
    assert (ending, set(state.retired)) == (["low-cash"], {"low-cash"})

    state, ending = reconfigured(state, config(RESTRICTED).rules, config().rules)
    assert (ending, state.retired) == ([], {})


def test_the_state_loads_from_what_the_store_kept() -> None:
    down = ActiveAlert("source_down", None, "fp", T0)
    stored = SourceState(None, SourceHealth(3, down), {}, T0, {("A", "cash"): [(T0, Decimal(1))]})
    state = PollState.loaded(stored)
    assert state.history == {("A", "cash"): ((T0, Decimal(1)),)}
    assert state.firing == [down]
    assert state.full is True


def test_deliveries_split_into_queued_and_held() -> None:
    done = run(PollState(), body(record("A", "10.00")))
    [queued] = done.write.deliveries
    held = Delivery(queued.notification, queued.sinks, "night")
    write = PollWrite(SOURCE, done.write.poll, done.write.health, deliveries=(queued, held))
    assert (write.queued, write.held) == ((queued,), (held,))
