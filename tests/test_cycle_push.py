"""A push of the account stream through the pure step (``step(..., partial=True)``): the
accounts it carries are fresh, the others stay; the same rules, lifecycle and ids as a poll."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cycle_helpers import SOURCE, baseline, body, config, later, outbox, record, run

from monitor.cycle import PollState, Step, step
from monitor.errors import FetchError
from monitor.parse import parse_body


def push(state: PollState, *records: dict[str, Any], at: datetime | None = None) -> Step:
    """The step of a push carrying ``records`` at ``at`` (5 s after T0 by default)."""
    cfg = config()
    return step(
        state,
        parse_body(body(*records), state.accounts),
        source=SOURCE,
        config=cfg,
        rules=cfg.rules,
        down_after=3,
        now=at if at is not None else later(seconds=5),
        partial=True,
    )


def test_a_pushed_change_notifies_like_a_poll_and_writes_only_that_account() -> None:
    """The pushed account is diffed, evaluated and written; its alert is queued."""
    state = baseline(record("A"), record("B"))
    done = push(state, record("A", cash="500.00"))
    assert outbox(done.write) == [("low-cash", "firing", "ops", "A")]
    assert [a.account_number for a in done.write.upserts] == ["A"]
    assert done.write.push
    assert done.write.deletes == ()


def test_an_account_missing_from_a_push_is_not_removed() -> None:
    """A push is a partial snapshot: B, not in it, keeps its record and is no account_removed."""
    state = baseline(record("A"), record("B", cash="700.00"))
    done = push(state, record("A", cash="4000.00"))
    assert done.write.deletes == ()
    assert done.state.accounts is not None
    assert set(done.state.accounts) == {"A", "B"}
    assert str(done.state.accounts["B"].get("cash")) == "700.00"


def test_a_push_equal_to_the_stored_records_writes_nothing() -> None:
    """No changed account, no alert: nothing to write and no notification."""
    state = baseline(record("A"), record("B"))
    done = push(state, record("A"), record("B"))
    assert done.write.writes_nothing
    assert done.alerts == 0


def test_a_push_leaves_source_health_and_the_poll_record_alone() -> None:
    """Only polls count toward source_down: a push while polls fail does not resolve it."""
    state = baseline(record("A"))
    for minute in (1, 2, 3):
        state = run(state, FetchError("HTTP 500"), now=later(minutes=minute)).state
    assert state.health.down is not None
    done = push(state, record("A", cash="900.00"), at=later(minutes=4))
    assert done.state.health == state.health
    assert [d.notification.alert.rule for d in done.write.deliveries] == ["low-cash"]


def test_a_push_before_the_first_poll_changes_nothing() -> None:
    """No baseline yet: there is nothing to compare a push with."""
    done = push(PollState(), record("A", cash="10.00"))
    assert done.write.writes_nothing
    assert done.state == PollState()


def test_a_replayed_push_gives_the_same_notification_ids() -> None:
    """The same push from the same state at the same time: the same ids (at-least-once)."""
    state = baseline(record("A"))
    first = push(state, record("A", cash="500.00"), at=later(seconds=9))
    again = push(state, record("A", cash="500.00"), at=later(seconds=9))
    assert [d.notification.id for d in first.write.deliveries] == [
        d.notification.id for d in again.write.deliveries
    ]


def test_a_condition_pushed_then_polled_fires_once() -> None:
    """The poll after the push sees the same record: no second notification."""
    state = baseline(record("A"), record("B"))
    pushed = push(state, record("A", cash="500.00"))
    polled = run(pushed.state, body(record("A", cash="500.00"), record("B")), now=later(minutes=1))
    assert outbox(pushed.write, polled.write) == [("low-cash", "firing", "ops", "A")]


def test_a_new_account_in_a_push_is_added() -> None:
    """An account the last poll did not have is added from the push (and kept by later ones)."""
    state = baseline(record("A"))
    done = push(state, record("C", cash="100.00"))
    assert done.state.accounts is not None
    assert set(done.state.accounts) == {"A", "C"}
    assert [a.account_number for a in done.write.upserts] == ["C"]
