"""The pure poll step: (state, what a poll saw, rules, config, now) -> (new state, PollWrite).

No store, no SQL, no clock: each test builds the state, calls :func:`monitor.cycle.step` and
asserts on the value it returns.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from monitor.config import Config, config_from_dict
from monitor.cycle import (
    Delivery,
    PollRecord,
    PollState,
    PollWrite,
    SourceState,
    Step,
    notification_id,
    reconfigured,
    step,
)
from monitor.errors import FetchError, ParseError, SourceError
from monitor.models import ActiveAlert, ParseResult
from monitor.parse import parse_body
from monitor.rules import SourceHealth

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # a Wednesday, 08:00 in New York
LOW_CASH: dict[str, Any] = {
    "type": "threshold",
    "name": "low-cash",
    "field": "cash",
    "op": "<",
    "value": 1000,
    "sinks": ["ops"],
}
RESTRICTED: dict[str, Any] = {"type": "restriction_change", "name": "restricted"}


def config(*rules: dict[str, Any], **sections: Any) -> Config:
    return config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t0ken"},
            "sinks": [{"type": "log", "name": "ops"}, {"type": "log", "name": "audit"}],
            "rules": list(rules) if rules else [LOW_CASH, RESTRICTED],
            **sections,
        },
        base_dir=Path(),
    )


def record(number: str, cash: Any = "5000.00", **fields: Any) -> dict[str, Any]:
    return {"account_number": number, "restriction": "none", "cash": cash, **fields}


def body(*records: dict[str, Any]) -> bytes:
    return orjson.dumps([{k: _plain(v) for k, v in r.items()} for r in records])


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, str) and value[:1].isdigit() else value


def run(
    state: PollState,
    seen: ParseResult | bytes | SourceError,
    cfg: Config | None = None,
    *,
    now: datetime = T0,
    down_after: int = 3,
) -> Step:
    cfg = cfg if cfg is not None else config()
    if isinstance(seen, bytes):
        seen = parse_body(seen, state.accounts)
    return step(
        state, seen, source=SOURCE, config=cfg, rules=cfg.rules, down_after=down_after, now=now
    )


def baseline(*records: dict[str, Any], cfg: Config | None = None) -> PollState:
    return run(PollState(), body(*records), cfg).state


def statuses(write: PollWrite) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    return [
        (d.notification.alert.rule, d.notification.alert.status.value, d.held_by, d.sinks)
        for d in write.deliveries
    ]


def test_the_first_poll_writes_every_account_and_notifies_nothing_but_conditions() -> None:
    """The baseline: every account is written; events have nothing to compare with yet."""
    done = run(PollState(), body(record("A"), record("B", "10.00", restriction="restricted")))

    assert [a.account_number for a in done.write.upserts] == ["A", "B"]
    assert done.write.deletes == ()
    assert done.write.poll == PollRecord(T0, ok=True, account_count=2)
    assert statuses(done.write) == [("low-cash", "firing", None, ("ops",))]
    assert done.state.full is False
    assert set(done.state.accounts or {}) == {"A", "B"}


def test_an_unchanged_poll_writes_no_account_and_no_alert_state() -> None:
    state = baseline(record("A"), record("B"))
    done = run(state, body(record("A"), record("B")), now=T0 + timedelta(seconds=30))

    assert done.write.upserts == ()
    assert done.write.deletes == ()
    assert done.write.active is None  # unchanged: the store leaves the rows alone
    assert done.write.deliveries == ()
    assert done.changed == 0
    assert done.state.accounts is not None
    assert done.state.accounts["A"] is (state.accounts or {})["A"]  # the record is reused


def test_only_changed_and_removed_accounts_are_written() -> None:
    state = baseline(record("A"), record("B"), record("C"))
    done = run(state, body(record("A", "900.00"), record("B")))

    assert [a.account_number for a in done.write.upserts] == ["A"]
    assert done.write.deletes == ("C",)
    assert done.changed == 2
    assert statuses(done.write) == [("low-cash", "firing", None, ("ops",))]
    assert done.write.active == {("low-cash", "A"): done.state.active[("low-cash", "A")]}
    assert done.write.active_before == state.active


def test_an_unusable_record_keeps_its_last_snapshot_and_is_not_deleted() -> None:
    state = baseline(record("A"), record("B"))
    done = run(state, body(record("A"), record("B", cash="lots")))

    assert done.skipped == frozenset({"B"})
    assert done.write.deletes == ()
    assert done.state.accounts is not None
    assert done.state.accounts["B"] is (state.accounts or {})["B"]


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
