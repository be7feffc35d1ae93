"""The pure poll step over several polls: alerts that wait (``for``), repeat, resolve; the
history windowed rules measure from; ``source_down``; and what a reload ends.

Each test keeps the state from one :func:`monitor.cycle.step` to the next with
:class:`cycle_helpers.Polls`, says when every poll happens, and asserts on the steps'
deliveries, alert state and history: no store, no SQL, no clock. What survives a restart is the
pipeline's (``test_pipeline.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cycle_helpers import (
    FALL,
    LOW_CASH,
    LOW_CASH_EVERY_SINK,
    RESTRICTED,
    T0,
    Polls,
    alerts,
    body,
    config,
    later,
    outbox,
    record,
    summaries,
)

from monitor.errors import FetchError, ParseError


def cash(value: str) -> bytes:
    """The body with one account, ``A1``, holding ``value`` in cash."""
    return body(record("A1", value))


# --------------------------------------------------------------------------- source_down


def test_source_down_fires_after_down_after_failures_and_resolves_on_success() -> None:
    """``down_after`` failed polls in a row fire source_down to every sink, once; the next
    successful poll resolves it with the same fingerprint."""
    p = Polls(down_after=2)
    p.poll(body(record("A")), at=T0)
    for n in range(1, 5):
        error = ParseError("response is not a JSON array of accounts (got object)")
        p.poll(error, at=later(seconds=30 * n))
    back = p.poll(body(record("A")), at=later(seconds=150))

    assert p.outbox() == [
        ("source_down", "firing", "ops", ""),
        ("source_down", "firing", "audit", ""),
        ("source_down", "resolved", "ops", ""),
        ("source_down", "resolved", "audit", ""),
    ]
    fingerprints = {d.notification.alert.fingerprint for w in p.writes for d in w.deliveries}
    assert len(fingerprints) == 1
    assert back.state.firing == []
    assert back.write.health.down is None


def test_a_failure_before_any_success_can_still_mark_the_source_down() -> None:
    """source_down does not need a baseline: a source that never answered is down too."""
    p = Polls(down_after=2)
    for n in range(2):
        p.poll(
            FetchError("cannot connect to 127.0.0.1:9: Connection refused"),
            at=later(seconds=30 * n),
        )
    assert [r[:2] for r in p.outbox()] == [("source_down", "firing")] * 2
    assert p.state.accounts is None


# --------------------------------------------------------------------------- bad data


def test_a_skipped_record_keeps_its_snapshot_and_alerts() -> None:
    """An unusable record leaves its account as it was (snapshot, firing alert, no resolve)
    for as long as it stays unusable, whatever the problem; a usable one resolves the alert."""
    p = Polls()
    first = p.poll(body(record("A", "500.00"), record("B")), at=T0)
    kept = (first.state.accounts or {})["A"]

    for n, bad in enumerate(["lots", "lots", "lots", True], 1):
        done = p.poll(body(record("A", bad), record("B")), at=later(seconds=30 * n))
        assert done.skipped == frozenset({"A"})
        assert (done.write.upserts, done.write.deletes, done.write.active) == ((), (), None)
        assert (done.state.accounts or {})["A"] is kept
    assert p.outbox() == [("low-cash", "firing", "ops", "A")]
    assert [a.account_number for a in p.state.firing] == ["A"]

    good = p.poll(body(record("A", "1500.00"), record("B")), at=later(seconds=150))
    assert outbox(good.write) == [("low-cash", "resolved", "ops", "A")]


def test_a_new_account_whose_first_record_is_unusable_is_not_written() -> None:
    """An account first seen with an unusable record has no snapshot to keep: nothing is
    written for it, and it is not in the state until a usable record comes."""
    p = Polls()
    p.poll(body(record("A")), at=T0)
    done = p.poll(body(record("A"), record("B", "lots")), at=later(seconds=30))
    assert done.skipped == frozenset({"B"})
    assert (done.write.upserts, done.write.deletes) == ((), ())
    assert set(done.state.accounts or {}) == {"A"}


def test_a_firing_alert_resolves_when_its_account_leaves_the_response() -> None:
    """The account is deleted; its firing alert resolves saying why, a pending one is
    forgotten."""
    p = Polls(config(LOW_CASH, {**LOW_CASH, "name": "slow", "for": "10m"}))
    first = p.poll(body(record("A1", "500.00"), record("B")), at=T0)
    assert alerts(first.state) == [
        ("low-cash", "A1", "firing", T0),
        ("slow", "A1", "pending", None),
    ]

    done = p.poll(body(record("B")), at=later(minutes=1))
    assert done.write.deletes == ("A1",)
    assert summaries(done.write) == [
        ("low-cash", "resolved", "ops", "A1: account no longer in the response")
    ]
    assert done.write.active == {}


# --------------------------------------------------------------------------- accounts that leave

MEMBERSHIP: list[dict[str, Any]] = [
    LOW_CASH,
    RESTRICTED,
    {"type": "account_added", "name": "added"},
    {"type": "account_removed", "name": "removed"},
]


def test_an_empty_response_keeps_what_was_last_known_of_each_account() -> None:
    """After ``[]`` every account is removed (``account_removed`` fires, a firing condition
    alert resolves) but its last record is kept as departed; when the accounts come back, each
    is compared with it: a restriction that changed meanwhile fires ``restriction_change``,
    beside ``account_added`` (it was absent)."""
    p = Polls(config(*MEMBERSHIP))
    p.poll(body(record("A"), record("B", "500.00")), at=T0)

    gone = p.poll(body(), at=later(minutes=1))
    assert outbox(gone.write) == [
        ("low-cash", "resolved", "ops", "B"),
        ("removed", "firing", "ops", "A"),
        ("removed", "firing", "audit", "A"),
        ("removed", "firing", "ops", "B"),
        ("removed", "firing", "audit", "B"),
    ]
    assert gone.write.deletes == ("A", "B")
    assert [a.account_number for a in gone.write.departed] == ["A", "B"]
    assert sorted(gone.state.departed) == ["A", "B"]
    assert gone.state.departed["A"].left_at == later(minutes=1)

    back = p.poll(
        body(record("A", restriction="restricted"), record("B", "500.00"), record("C")),
        at=later(minutes=2),
    )
    assert [(r, s, n) for r, s, sink, n in outbox(back.write) if sink == "ops"] == [
        ("low-cash", "firing", "B"),
        ("restricted", "firing", "A"),
        ("added", "firing", "A"),
        ("added", "firing", "B"),
        ("added", "firing", "C"),
    ]
    assert [a.account_number for a in back.write.upserts] == ["A", "B", "C"]
    assert back.write.forget == ("A", "B")
    assert back.state.departed == {}


def test_a_departed_account_is_forgotten_after_a_week() -> None:
    """An account that never comes back is kept for ``DEPARTED_KEPT`` (a week), then
    forgotten; coming back after that, it is a new account with nothing to compare with."""
    p = Polls(config(*MEMBERSHIP))
    p.poll(body(record("A"), record("B")), at=T0)
    p.poll(body(record("B")), at=later(minutes=1))
    kept = p.poll(body(record("B")), at=later(days=7))
    assert (kept.write.forget, sorted(kept.state.departed)) == ((), ["A"])

    done = p.poll(body(record("B")), at=later(days=7, minutes=1))
    assert done.write.forget == ("A",)
    assert done.state.departed == {}
    back = p.poll(body(record("A", restriction="restricted"), record("B")), at=later(days=8))
    assert [(r, n) for r, s, sink, n in outbox(back.write) if sink == "ops"] == [("added", "A")]


# --------------------------------------------------------------------------- pending (`for`)


def test_a_pending_alert_fires_once_its_for_is_up() -> None:
    """``for = "2m"``: the first poll records a pending alert and notifies nothing; two
    minutes later a poll of the same (unchanged) record fires it exactly once."""
    p = Polls(config({**LOW_CASH, "for": "2m"}))
    first = p.poll(cash("500.00"), at=T0)
    assert alerts(first.state) == [("low-cash", "A1", "pending", None)]
    assert first.write.active == first.state.active  # the pending alert is kept
    assert first.write.deliveries == ()

    assert p.poll(at=later(minutes=1)).write.deliveries == ()
    fired = p.poll(at=later(minutes=2))
    assert outbox(fired.write) == [("low-cash", "firing", "ops", "A1")]
    assert alerts(fired.state) == [("low-cash", "A1", "firing", later(minutes=2))]

    assert p.poll(at=later(minutes=3)).write.deliveries == ()
    assert len(p.outbox()) == 1


def test_a_pending_alert_that_stops_holding_is_forgotten() -> None:
    """A pending alert whose condition no longer holds leaves no alert and no notification."""
    p = Polls(config({**LOW_CASH_EVERY_SINK, "for": "2m"}))
    p.poll(cash("500.00"), at=T0)
    done = p.poll(cash("1500.00"), at=later(minutes=1))
    assert done.write.active == {}
    assert alerts(done.state) == []

    p.poll(at=later(minutes=6))
    assert p.outbox() == []


def test_a_pending_alert_waits_while_its_record_is_unusable() -> None:
    """A record unusable when the ``for`` is up changes nothing: the alert stays pending (it
    neither fires nor is forgotten for want of data) and fires at the next usable record."""
    p = Polls(config({**LOW_CASH, "for": "2m"}))
    p.poll(cash("500.00"), at=T0)

    gap = p.poll(cash("lots"), at=later(minutes=3))
    assert gap.write.deliveries == ()
    assert alerts(gap.state) == [("low-cash", "A1", "pending", None)]

    back = p.poll(cash("500.00"), at=later(minutes=4))
    assert outbox(back.write) == [("low-cash", "firing", "ops", "A1")]


# --------------------------------------------------------------------------- repeat


def test_repeat_notifies_a_firing_alert_again_every_repeat() -> None:
    """``repeat = "1h"``: the time of the last firing notification is kept, and the alert is
    notified again an hour after it, not half an hour after it."""
    p = Polls(config({**LOW_CASH, "repeat": "1h"}))
    p.poll(cash("500.00"), at=T0)
    again = p.poll(at=later(hours=1))
    assert [s for _, s, _, _ in p.outbox()] == ["firing", "firing"]
    assert alerts(again.state) == [("low-cash", "A1", "firing", later(hours=1))]
    assert again.write.active == again.state.active

    assert p.poll(at=later(hours=1, minutes=30)).write.deliveries == ()
    p.poll(at=later(hours=2))
    assert [s for _, s, _, _ in p.outbox()] == ["firing"] * 3


# --------------------------------------------------------------------------- windowed history


def test_a_windowed_delta_measures_from_the_values_seen_in_the_window() -> None:
    """The values seen inside the window are kept: a fall that began two polls ago counts."""
    p = Polls(config(FALL))
    first = p.poll(cash("5000.00"), at=T0)
    second = p.poll(cash("4500.00"), at=later(minutes=10))
    assert [*first.write.history, *second.write.history] == [
        ("A1", "cash", T0, Decimal("5000.00")),
        ("A1", "cash", later(minutes=10), Decimal("4500.00")),
    ]
    assert p.outbox() == []

    p.poll(cash("3900.00"), at=later(minutes=20))
    [(rule, status, _, summary)] = p.summaries()
    assert (rule, status) == ("cash-fall", "firing")
    assert "from 5000.00 to 3900.00" in summary


def test_the_history_is_pruned_to_the_window_and_its_base() -> None:
    """Values older than the window go, except the last one at or before its start (the
    base the fall is measured from); the alert resolves once the fall left the window."""
    p = Polls(config(FALL))
    p.poll(cash("5000.00"), at=T0)
    p.poll(cash("4500.00"), at=later(minutes=10))
    done = p.poll(cash("3900.00"), at=later(minutes=20))
    assert len(done.state.history[("A1", "cash")]) == 3

    pruned = p.poll(at=later(minutes=70))  # the window starts at the 4500.00

    assert pruned.state.history == {
        ("A1", "cash"): (
            (later(minutes=10), Decimal("4500.00")),
            (later(minutes=20), Decimal("3900.00")),
        )
    }
    assert pruned.write.history == ()
    assert pruned.write.history_deletes == (("A1", "cash", T0, Decimal("5000.00")),)
    assert [s for _, s, _, _ in p.outbox()] == ["firing", "resolved"]


def test_an_account_without_the_windowed_field_keeps_no_history_for_it() -> None:
    """A record that lacks the field (a ``null`` is absent) adds no value to its history."""
    p = Polls(config(FALL))
    done = p.poll(body(record("A1"), record("B1", None)), at=T0)
    assert done.write.history == (("A1", "cash", T0, Decimal("5000.00")),)
    assert set(done.state.history) == {("A1", "cash")}


def test_rules_without_a_window_keep_no_history() -> None:
    """A threshold and a delta without window need no history: none is kept."""
    event = {k: v for k, v in FALL.items() if k != "window"}
    p = Polls(config(LOW_CASH_EVERY_SINK, event))
    first = p.poll(cash("5000.00"), at=T0)
    second = p.poll(cash("500.00"), at=later(minutes=10))
    assert (first.write.history, second.write.history) == ((), ())
    assert second.state.history == {}


def test_a_reload_without_the_windowed_rule_drops_its_history() -> None:
    """Once no rule looks at a field over a window, its values are deleted."""
    p = Polls(config(FALL))
    first = p.poll(cash("5000.00"), at=T0)
    assert len(first.write.history) == 1

    p.reload(config(LOW_CASH_EVERY_SINK))
    done = p.poll(at=later(minutes=1))
    assert done.write.history_deletes == first.write.history
    assert done.state.history == {}


# --------------------------------------------------------------------------- reload


def test_a_removed_rule_resolves_its_alerts_at_the_next_poll() -> None:
    """Its firing alert gets a resolved notification saying why, sent to the old rule's sinks
    that still exist; the alert is gone."""
    p = Polls(config({**LOW_CASH, "sinks": ["ops", "audit"]}))
    p.poll(cash("500.00"), at=T0)
    assert len(p.outbox()) == 2

    assert p.reload(config(rules=[], sinks=[{"type": "log", "name": "ops"}])) == ["low-cash"]
    done = p.poll(at=later(minutes=1))

    assert summaries(done.write) == [
        ("low-cash", "resolved", "ops", "A1: rule low-cash was removed from the configuration")
    ]
    assert done.write.active == {}
    assert alerts(done.state) == []


def test_a_reload_keeps_the_alerts_of_the_rules_it_keeps() -> None:
    """Only the removed rule's alert resolves; the other rule's alert on the same account
    stays firing, and is not notified again."""
    very_low = {**LOW_CASH, "name": "very-low", "value": 100}
    p = Polls(config(LOW_CASH, very_low))
    first = p.poll(cash("50.00"), at=T0)
    assert [r for r, _, _, _ in alerts(first.state)] == ["low-cash", "very-low"]

    assert p.reload(config(very_low)) == ["low-cash"]
    done = p.poll(at=later(minutes=1))
    assert outbox(done.write) == [("low-cash", "resolved", "ops", "A1")]
    assert list(done.state.active.values()) == [first.state.active[("very-low", "A1")]]


def test_a_rule_removed_and_back_before_a_poll_keeps_its_alert() -> None:
    """Two reloads between polls, the second putting the rule back: nothing ends."""
    p = Polls(config(LOW_CASH_EVERY_SINK))
    p.poll(cash("500.00"), at=T0)
    assert p.reload(config(rules=[])) == ["low-cash"]
    assert p.reload(config(LOW_CASH_EVERY_SINK)) == []

    done = p.poll(at=later(minutes=1))
    assert [s for _, s, _, _ in p.outbox()] == ["firing", "firing"]  # ops and audit
    assert [(r, n, state) for r, n, state, _ in alerts(done.state)] == [
        ("low-cash", "A1", "firing")
    ]


def test_a_removed_rule_forgets_its_pending_alerts() -> None:
    """A pending alert of a removed rule was never notified: it just goes."""
    p = Polls(config({**LOW_CASH_EVERY_SINK, "for": "10m"}))
    p.poll(cash("500.00"), at=T0)
    p.reload(config(rules=[]))
    done = p.poll(at=later(minutes=1))
    assert p.outbox() == []
    assert done.write.active == {}
    assert alerts(done.state) == []


def test_the_resolved_of_a_removed_rule_respects_min_severity() -> None:
    """A sink that never got the warning's firing (its ``min_severity`` is critical) does not
    get its resolved either; the others get it in the config's order."""
    sinks = [
        {"type": "log", "name": "ops"},
        {"type": "log", "name": "pager", "min_severity": "critical"},
        {"type": "log", "name": "audit"},
    ]
    p = Polls(config(LOW_CASH_EVERY_SINK, sinks=sinks))
    p.poll(cash("500.00"), at=T0)
    assert [sink for _, _, sink, _ in p.outbox()] == ["ops", "audit"]

    p.reload(config(rules=[], sinks=sinks))
    done = p.poll(at=later(minutes=1))

    assert [(s, sink) for _, s, sink, _ in outbox(done.write)] == [
        ("resolved", "ops"),
        ("resolved", "audit"),
    ]


def test_a_changed_rule_keeps_its_alert_while_it_still_holds() -> None:
    """Same name, new definition that still holds: the alert stays, nothing is sent."""
    p = Polls(config(LOW_CASH_EVERY_SINK))
    first = p.poll(cash("500.00"), at=T0)

    p.reload(config({**LOW_CASH_EVERY_SINK, "value": 800, "severity": "critical"}))
    done = p.poll(at=later(minutes=1))

    assert done.write.deliveries == ()
    assert done.state.active == first.state.active  # the same alert, fingerprint and all


def test_a_changed_rule_that_no_longer_holds_resolves_its_alert() -> None:
    """The threshold lowered below the balance: at the next poll (same record) the alert
    resolves under the new definition."""
    p = Polls(config(LOW_CASH))
    p.poll(cash("800.00"), at=T0)

    assert p.reload(config({**LOW_CASH, "value": 500})) == []
    done = p.poll(at=later(minutes=1))

    assert p.summaries() == [
        ("low-cash", "firing", "ops", "A1: cash is 800.00 (< 1000)"),
        ("low-cash", "resolved", "ops", "A1: cash back to 800.00 (no longer < 500)"),
    ]
    assert alerts(done.state) == []


def test_a_rule_turned_into_an_event_rule_resolves_its_alerts() -> None:
    """A windowed delta that loses its window becomes an event rule: its alert ends."""
    p = Polls(config(FALL))
    p.poll(cash("5000.00"), at=T0)
    p.poll(cash("3000.00"), at=later(minutes=10))
    assert [s for _, s, _, _ in p.outbox()] == ["firing"]

    event = {k: v for k, v in FALL.items() if k != "window"}
    assert p.reload(config(event)) == ["cash-fall"]
    p.poll(at=later(minutes=11))
    assert [s for _, s, _, _ in p.outbox()] == ["firing", "resolved"]
