"""The pure poll step with silences, acknowledgements and escalation (``control``).

Each test runs polls through :class:`cycle_helpers.Polls` with a fake clock (every poll says
when it happens) and the :class:`~monitor.silences.ControlState` set between polls, as the
daemon's ``ControlBook`` would hand it over.
"""

from __future__ import annotations

from datetime import datetime

from cycle_helpers import LOW_CASH, T0, Polls, body, config, later, record

from monitor.errors import FetchError
from monitor.escalation import next_escalation
from monitor.silences import Ack, ControlState, Silence

ESCALATING = {
    **LOW_CASH,
    "escalate": [{"after": "15m", "sinks": ["pager"]}, {"after": "1h", "sinks": ["boss"]}],
}
SINKS = [
    {"type": "log", "name": "ops"},
    {"type": "log", "name": "pager"},
    {"type": "log", "name": "boss"},
]


def cash(value: str, number: str = "A1") -> bytes:
    return body(record(number, value))


def silence(until: datetime, **matchers: object) -> Silence:
    return Silence("s1", T0.timestamp(), until.timestamp(), **matchers, created_at=T0.timestamp())  # type: ignore[arg-type]  # matchers are the keyword fields of Silence


def ack(fingerprint: str, at: datetime) -> ControlState:
    a = Ack(fingerprint, "low-cash", "A1", "default", at.timestamp(), "alice", "on it")
    return ControlState(acks={fingerprint: a})


def held(p: Polls) -> list[tuple[str, str, str | None]]:
    return [
        (d.notification.alert.rule, d.notification.alert.status.value, d.held_by)
        for w in p.writes
        for d in w.deliveries
    ]


# --------------------------------------------------------------------------- silences


def test_a_silence_holds_the_notifications_of_the_alerts_it_matches() -> None:
    """An active silence on the rule and an account glob holds A1's alert (named by the
    silence), not B1's: the glob does not match it."""
    p = Polls(config(LOW_CASH))
    p.poll(body(record("A1"), record("B1")), at=T0)
    p.control = ControlState((silence(later(hours=1), rule="low-cash", account="A*"),))
    p.poll(body(record("A1", "500.00"), record("B1", "500.00")), at=later(minutes=1))
    assert sorted(held(p), key=str) == [
        ("low-cash", "firing", "silence:s1"),
        ("low-cash", "firing", None),
    ]
    assert [d.notification.alert.account_number for d in p.writes[-1].held] == ["A1"]


def test_a_silence_ended_or_expired_holds_nothing() -> None:
    p = Polls(config(LOW_CASH))
    p.poll(cash("5000.00"), at=T0)
    ended = silence(later(minutes=1), rule="low-cash")
    expired = Silence(
        "s2",
        T0.timestamp(),
        later(hours=1).timestamp(),
        rule="low-cash",
        expired_at=later(seconds=30).timestamp(),
    )
    p.control = ControlState((ended, expired))
    p.poll(cash("500.00"), at=later(minutes=2))
    assert held(p) == [("low-cash", "firing", None)]


def test_source_down_can_be_silenced_by_source() -> None:
    """``--source default`` holds the source's own alert too."""
    p = Polls(config(LOW_CASH), down_after=1)
    p.poll(cash("5000.00"), at=T0)
    p.control = ControlState((silence(later(hours=1), source="default"),))
    p.poll(FetchError("connection refused"), at=later(minutes=1))
    assert held(p) == [("source_down", "firing", "silence:s1")]


def test_a_silence_on_labels_needs_every_label_to_match() -> None:
    rule = {**LOW_CASH, "labels": {"team": "risk", "desk": "eq"}}
    p = Polls(config(rule))
    p.poll(cash("5000.00"), at=T0)
    p.control = ControlState(
        (
            silence(later(hours=1), labels={"team": "risk", "desk": "fx"}),
            Silence("s2", T0.timestamp(), later(hours=1).timestamp(), labels={"team": "risk"}),
        )
    )
    p.poll(cash("500.00"), at=later(minutes=1))
    assert held(p) == [("low-cash", "firing", "silence:s2")]


# --------------------------------------------------------------------------- acknowledgements


def test_an_ack_stops_the_reminders_of_its_episode_and_its_resolution_says_who() -> None:
    """``repeat`` reminders stop once the episode is acknowledged; the resolution is still
    sent, with ``acknowledged_by``/``acknowledged_at``; the next episode is not acknowledged."""
    p = Polls(config({**LOW_CASH, "repeat": "1h"}))
    first = p.poll(cash("500.00"), at=T0)
    fp = first.write.deliveries[0].notification.alert.fingerprint
    p.poll(at=later(hours=1))  # a reminder
    p.control = ack(fp, later(hours=1, minutes=5))
    assert p.poll(at=later(hours=2)).write.deliveries == ()
    assert p.poll(at=later(hours=3)).write.deliveries == ()
    resolved = p.poll(cash("5000.00"), at=later(hours=3, minutes=1)).write.deliveries
    alert = resolved[0].notification.alert
    assert (alert.status.value, alert.acknowledged_by) == ("resolved", "alice")
    assert alert.acknowledged_at == later(hours=1, minutes=5)
    payload = resolved[0].notification.payload()
    assert payload["acknowledged_by"] == "alice"
    assert payload["acknowledged_at"] == "2024-05-01T13:05:00Z"

    again = p.poll(cash("500.00"), at=later(hours=4)).write.deliveries
    assert again[0].notification.alert.acknowledged_by is None
    assert "acknowledged_by" not in again[0].notification.payload()
    assert p.poll(at=later(hours=5)).write.deliveries != ()  # its reminders go on


# --------------------------------------------------------------------------- escalation


def escalated(p: Polls) -> list[tuple[str, tuple[str, ...]]]:
    return [(d.notification.alert.status.value, d.sinks) for w in p.writes for d in w.deliveries]


def test_escalation_sends_each_step_once_after_its_time() -> None:
    """The alert goes to ``pager`` once 15 minutes after it fired, to ``boss`` once after an
    hour, never before and never twice; the steps sent are kept on the alert's state."""
    p = Polls(config(ESCALATING, sinks=SINKS))
    p.poll(cash("500.00"), at=T0)
    p.poll(at=later(minutes=14, seconds=59))
    p.poll(at=later(minutes=15))
    p.poll(at=later(minutes=30))
    last = p.poll(at=later(hours=1))
    p.poll(at=later(hours=2))
    assert escalated(p) == [("firing", ("ops",)), ("firing", ("pager",)), ("firing", ("boss",))]
    assert [a.escalated for a in last.state.active.values()] == [2]
    assert last.write.active is not None  # the step count is written to the store


def test_escalation_after_a_gap_sends_every_step_due_once() -> None:
    """A poll after both steps are due (a restart, a long outage) sends both sinks once."""
    p = Polls(config(ESCALATING, sinks=SINKS))
    p.poll(cash("500.00"), at=T0)
    p.poll(at=later(hours=2))
    p.poll(at=later(hours=3))
    assert escalated(p) == [("firing", ("ops",)), ("firing", ("pager", "boss"))]


def test_the_next_escalation_is_the_earliest_step_not_sent_of_an_unacknowledged_alert() -> None:
    """What the daemon times its escalation steps by: 15 minutes after the alert fired, then
    an hour after; nothing once every step went or the episode is acknowledged."""
    p = Polls(config(ESCALATING, sinks=SINKS))
    rules = p.config.rules
    assert next_escalation(rules, p.state.active, {}) is None  # nothing fires
    fp = p.poll(cash("500.00"), at=T0).write.deliveries[0].notification.alert.fingerprint
    assert next_escalation(rules, p.state.active, {}) == later(minutes=15)
    p.poll(at=later(minutes=15))
    assert next_escalation(rules, p.state.active, {}) == later(hours=1)
    assert next_escalation(rules, p.state.active, ack(fp, later(minutes=16)).acks) is None
    p.poll(at=later(hours=1))
    assert next_escalation(rules, p.state.active, {}) is None


def test_an_acknowledged_alert_does_not_escalate() -> None:
    p = Polls(config(ESCALATING, sinks=SINKS))
    fp = p.poll(cash("500.00"), at=T0).write.deliveries[0].notification.alert.fingerprint
    p.control = ack(fp, later(minutes=5))
    p.poll(at=later(hours=2))
    assert escalated(p) == [("firing", ("ops",))]


def test_a_new_episode_escalates_from_the_first_step() -> None:
    p = Polls(config(ESCALATING, sinks=SINKS))
    p.poll(cash("500.00"), at=T0)
    p.poll(at=later(minutes=20))
    p.poll(cash("5000.00"), at=later(minutes=21))
    p.poll(cash("500.00"), at=later(minutes=22))
    p.poll(at=later(minutes=40))
    assert [s for _, s in escalated(p)] == [
        ("ops",),
        ("pager",),
        ("ops",),  # resolved
        ("ops",),
        ("pager",),
    ]


def test_a_silenced_escalation_is_held_like_the_alert() -> None:
    p = Polls(config(ESCALATING, sinks=SINKS))
    p.poll(cash("500.00"), at=T0)
    p.control = ControlState((silence(later(hours=1), rule="low-cash"),))
    last = p.poll(at=later(minutes=20))
    assert [(d.sinks, d.held_by) for d in last.write.deliveries] == [(("pager",), "silence:s1")]


def test_an_escalation_whose_template_fails_keeps_its_default_summary_and_says_so() -> None:
    """``previous`` is None in an escalation: a template needing it fails, the escalation goes
    out with the default summary, and the step reports the problem (the pipeline logs it)."""
    rule = {**ESCALATING, "summary": "{{ account_number }} down {{ (previous - current)|money }}"}
    p = Polls(config(rule, sinks=SINKS))
    p.poll(body(record("A1", "500.00")), at=T0)
    done = p.poll(at=later(minutes=15))
    [d] = done.write.deliveries
    assert d.notification.alert.summary == "A1: low-cash firing for 15m unacknowledged (escalated)"
    assert [str(x).split(":")[0] for x in done.problems] == ["rule 'low-cash'"]
