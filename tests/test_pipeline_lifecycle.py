"""What a pipeline keeps across a restart and a reload, and where its notifications go.

A real store in tmp_path, a FakeFetcher and a ManualClock; a "restart" is a new
:class:`SourcePipeline` on the same database, loaded with ``load()``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from store_helpers import sqlite_query

from monitor.config import Config, config_from_dict
from monitor.errors import FetchError
from monitor.models import Severity
from monitor.pipeline import SourcePipeline
from monitor.store import Store
from monitor.testing import EPOCH, FakeFetcher, ManualClock

SOURCE = "default"
LOW_CASH: dict[str, Any] = {
    "type": "threshold",
    "name": "low-cash",
    "field": "cash",
    "op": "<",
    "value": 1000,
}
SINKS: list[dict[str, Any]] = [{"type": "log", "name": "ops"}, {"type": "log", "name": "audit"}]


def make_config(
    tmp_path: Path,
    rules: Sequence[dict[str, Any]],
    sinks: Sequence[dict[str, Any]] = SINKS,
) -> Config:
    return config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t0ken", "down_after": 1},
            "state": {"path": str(tmp_path / "state.db")},
            "sinks": list(sinks),
            "rules": list(rules),
        },
        base_dir=tmp_path,
    )


def account(number: str, cash: str = "5000.00") -> dict[str, Any]:
    return {"account_number": number, "restriction": "none", "cash": Decimal(cash)}


class Daemon:
    """One source's pipeline that can be restarted on the same store and clock."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.clock = ManualClock()
        self.fetcher = FakeFetcher()
        self.pipeline = self._pipeline()

    def _pipeline(self) -> SourcePipeline:
        return SourcePipeline(
            source=SOURCE,
            config=self.config,
            rules=self.config.rules,
            fetcher=self.fetcher,
            store=self.store,
            on_queued=lambda: None,
            clock=self.clock,
            down_after=1,
        )

    async def start(self) -> None:
        await self.pipeline.load()

    async def restart(self) -> None:
        self.pipeline = self._pipeline()
        await self.pipeline.load()

    async def reload(self, config: Config) -> list[str]:
        self.config = config
        return await self.pipeline.reconfigure(config, config.rules, self.fetcher, 1)

    async def poll(self, *answers: Any) -> None:
        self.fetcher.push(*answers)
        outcome = await self.pipeline.poll()
        assert outcome.ok

    async def outbox(self) -> list[tuple[str, str, str, str]]:
        """``(rule, status, sink, summary)`` of every queued row, in order."""
        rows = await sqlite_query(self.store, "SELECT sink, payload FROM outbox ORDER BY seq")
        docs = [(sink, json.loads(payload)) for sink, payload in rows]
        return [(d["rule"], d["status"], sink, d["summary"]) for sink, d in docs]

    async def alerts(self) -> list[tuple[str, str, str, str | None]]:
        """``(rule, account, state, notified_at)`` of every rule alert."""
        return await sqlite_query(
            self.store,
            "SELECT rule, account_number, state, notified_at FROM alerts"
            " WHERE account_number != '' ORDER BY rule, account_number",
        )

    async def history(self) -> list[tuple[str, str, str, str]]:
        return await sqlite_query(
            self.store,
            "SELECT account_number, field, observed_at, value FROM history"
            " ORDER BY account_number, field, observed_at",
        )


# --------------------------------------------------------------------------- pending (`for`)


async def test_a_pending_alert_survives_a_restart(tmp_path: Path, store: Store) -> None:
    """``for = "2m"``: the first poll records a pending alert; after a restart and two more
    minutes, a poll of the same (unchanged) record fires it exactly once."""
    d = Daemon(make_config(tmp_path, [{**LOW_CASH, "for": "2m", "sinks": ["ops"]}]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    assert await d.alerts() == [("low-cash", "A1", "pending", None)]
    assert await d.outbox() == []

    await d.restart()
    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert await d.outbox() == []
    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert [(r, s, sink) for r, s, sink, _ in await d.outbox()] == [("low-cash", "firing", "ops")]
    [(_, _, state, _)] = await d.alerts()
    assert state == "firing"

    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert len(await d.outbox()) == 1


async def test_a_pending_alert_that_stops_holding_is_forgotten(
    tmp_path: Path, store: Store
) -> None:
    """A pending alert whose condition no longer holds leaves no row and no notification."""
    d = Daemon(make_config(tmp_path, [{**LOW_CASH, "for": "2m"}]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    d.clock.advance(timedelta(minutes=1))
    await d.poll([account("A1", "1500.00")])
    assert await d.alerts() == []
    await d.restart()
    d.clock.advance(timedelta(minutes=5))
    await d.poll()
    assert await d.outbox() == []


# --------------------------------------------------------------------------- repeat


async def test_repeat_survives_a_restart(tmp_path: Path, store: Store) -> None:
    """``repeat = "1h"``: the time of the last firing notification is stored, so a restart
    half an hour after a repeat does not notify again before the next hour is up."""
    d = Daemon(make_config(tmp_path, [{**LOW_CASH, "repeat": "1h", "sinks": ["ops"]}]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    d.clock.advance(timedelta(hours=1))
    await d.poll()
    assert [s for _, s, _, _ in await d.outbox()] == ["firing", "firing"]
    [(_, _, _, notified)] = await d.alerts()
    assert notified == d.clock().isoformat()

    await d.restart()
    d.clock.advance(timedelta(minutes=30))
    await d.poll()
    assert len(await d.outbox()) == 2
    d.clock.advance(timedelta(minutes=30))
    await d.poll()
    assert [s for _, s, _, _ in await d.outbox()] == ["firing"] * 3


# --------------------------------------------------------------------------- windowed history

FALL: dict[str, Any] = {
    "type": "delta",
    "name": "cash-fall",
    "field": "cash",
    "by": 1000,
    "direction": "down",
    "window": "1h",
    "sinks": ["ops"],
}


async def test_the_history_of_a_windowed_delta_survives_a_restart(
    tmp_path: Path, store: Store
) -> None:
    """The values seen inside the window are stored: after a restart a fall that began before
    it still counts."""
    d = Daemon(make_config(tmp_path, [FALL]), store)
    await d.start()
    await d.poll([account("A1", "5000.00")])
    d.clock.advance(timedelta(minutes=10))
    await d.poll([account("A1", "4500.00")])
    assert [(n, f, v) for n, f, _, v in await d.history()] == [
        ("A1", "cash", "5000.00"),
        ("A1", "cash", "4500.00"),
    ]
    assert await d.outbox() == []

    await d.restart()
    d.clock.advance(timedelta(minutes=10))
    await d.poll([account("A1", "3900.00")])

    [(rule, status, _, summary)] = await d.outbox()
    assert (rule, status) == ("cash-fall", "firing")
    assert "from 5000.00 to 3900.00" in summary


async def test_the_history_is_pruned_to_the_window_and_its_base(
    tmp_path: Path, store: Store
) -> None:
    """Values older than the window go, except the last one at or before its start (the
    base the fall is measured from); the alert resolves once the fall left the window."""
    d = Daemon(make_config(tmp_path, [FALL]), store)
    await d.start()
    await d.poll([account("A1", "5000.00")])
    d.clock.advance(timedelta(minutes=10))
    await d.poll([account("A1", "4500.00")])
    d.clock.advance(timedelta(minutes=10))
    await d.poll([account("A1", "3900.00")])
    assert len(await d.history()) == 3

    d.clock.advance(timedelta(minutes=50))  # the window starts at the 4500.00
    await d.poll()

    t10 = (EPOCH + timedelta(minutes=10)).isoformat()
    t20 = (EPOCH + timedelta(minutes=20)).isoformat()
    assert await d.history() == [("A1", "cash", t10, "4500.00"), ("A1", "cash", t20, "3900.00")]
    assert [s for _, s, _, _ in await d.outbox()] == ["firing", "resolved"]

    await d.restart()
    assert d.pipeline.state.history == {  # what a restarted pipeline works from
        ("A1", "cash"): (
            (EPOCH + timedelta(minutes=10), Decimal("4500.00")),
            (EPOCH + timedelta(minutes=20), Decimal("3900.00")),
        )
    }


async def test_rules_without_a_window_keep_no_history(tmp_path: Path, store: Store) -> None:
    """A threshold and a delta without window need no history: none is stored."""
    event = {k: v for k, v in FALL.items() if k != "window"}
    d = Daemon(make_config(tmp_path, [LOW_CASH, event]), store)
    await d.start()
    await d.poll([account("A1", "5000.00")])
    d.clock.advance(timedelta(minutes=10))
    await d.poll([account("A1", "500.00")])
    assert await d.history() == []


async def test_a_reload_without_the_windowed_rule_drops_its_history(
    tmp_path: Path, store: Store
) -> None:
    """Once no rule looks at a field over a window, its stored values are deleted."""
    d = Daemon(make_config(tmp_path, [FALL]), store)
    await d.start()
    await d.poll([account("A1", "5000.00")])
    assert len(await d.history()) == 1
    await d.reload(make_config(tmp_path, [LOW_CASH]))
    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert await d.history() == []


# --------------------------------------------------------------------------- reload


async def test_a_removed_rule_resolves_its_alerts_at_the_next_poll(
    tmp_path: Path, store: Store
) -> None:
    """Its firing alert gets a resolved notification saying why, sent to the old rule's sinks
    that still exist; its row is gone."""
    d = Daemon(make_config(tmp_path, [{**LOW_CASH, "sinks": ["ops", "audit"]}]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    assert len(await d.outbox()) == 2

    removed = await d.reload(make_config(tmp_path, [], sinks=[{"type": "log", "name": "ops"}]))
    assert removed == ["low-cash"]
    assert len(await d.outbox()) == 2  # nothing before the next poll
    d.clock.advance(timedelta(minutes=1))
    await d.poll()

    assert (await d.outbox())[2:] == [
        (
            "low-cash",
            "resolved",
            "ops",
            "A1: rule low-cash was removed from the configuration",
        )
    ]
    assert await d.alerts() == []


async def test_a_rule_removed_and_back_before_a_poll_keeps_its_alert(
    tmp_path: Path, store: Store
) -> None:
    """Two reloads between polls, the second putting the rule back: nothing ends."""
    d = Daemon(make_config(tmp_path, [LOW_CASH]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    assert await d.reload(make_config(tmp_path, [])) == ["low-cash"]
    assert await d.reload(make_config(tmp_path, [LOW_CASH])) == []
    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert [s for _, s, _, _ in await d.outbox()] == ["firing", "firing"]  # ops and audit
    assert [(r, n, state) for r, n, state, _ in await d.alerts()] == [("low-cash", "A1", "firing")]


async def test_a_removed_rule_forgets_its_pending_alerts(tmp_path: Path, store: Store) -> None:
    """A pending alert of a removed rule was never notified: it just goes."""
    d = Daemon(make_config(tmp_path, [{**LOW_CASH, "for": "10m"}]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    await d.reload(make_config(tmp_path, []))
    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert await d.outbox() == []
    assert await d.alerts() == []


async def test_the_resolved_of_a_removed_rule_respects_min_severity(
    tmp_path: Path, store: Store
) -> None:
    """A sink that never got the warning's firing (its ``min_severity`` is critical) does not
    get its resolved either; the others get it in the config's order."""
    sinks = [
        {"type": "log", "name": "ops"},
        {"type": "log", "name": "pager", "min_severity": "critical"},
        {"type": "log", "name": "audit"},
    ]
    d = Daemon(make_config(tmp_path, [LOW_CASH], sinks), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    assert [sink for _, _, sink, _ in await d.outbox()] == ["ops", "audit"]

    await d.reload(make_config(tmp_path, [], sinks))
    d.clock.advance(timedelta(minutes=1))
    await d.poll()

    assert [(s, sink) for _, s, sink, _ in await d.outbox()][2:] == [
        ("resolved", "ops"),
        ("resolved", "audit"),
    ]


async def test_a_changed_rule_keeps_its_alert_while_it_still_holds(
    tmp_path: Path, store: Store
) -> None:
    """Same name, new definition that still holds: the alert stays, nothing is sent."""
    d = Daemon(make_config(tmp_path, [LOW_CASH]), store)
    await d.start()
    await d.poll([account("A1", "500.00")])
    before = await sqlite_query(d.store, "SELECT fingerprint FROM alerts")

    await d.reload(make_config(tmp_path, [{**LOW_CASH, "value": 800, "severity": "critical"}]))
    d.clock.advance(timedelta(minutes=1))
    await d.poll()

    assert len(await d.outbox()) == 2
    assert await sqlite_query(d.store, "SELECT fingerprint FROM alerts") == before


async def test_a_changed_rule_that_no_longer_holds_resolves_its_alert(
    tmp_path: Path, store: Store
) -> None:
    """The threshold lowered below the balance: at the next poll (same record) the alert
    resolves under the new definition."""
    d = Daemon(make_config(tmp_path, [{**LOW_CASH, "sinks": ["ops"]}]), store)
    await d.start()
    await d.poll([account("A1", "800.00")])

    removed = await d.reload(make_config(tmp_path, [{**LOW_CASH, "value": 500, "sinks": ["ops"]}]))
    assert removed == []
    d.clock.advance(timedelta(minutes=1))
    await d.poll()

    assert await d.outbox() == [
        ("low-cash", "firing", "ops", "A1: cash is 800.00 (< 1000)"),
        ("low-cash", "resolved", "ops", "A1: cash back to 800.00 (no longer < 500)"),
    ]
    assert await d.alerts() == []


async def test_a_rule_turned_into_an_event_rule_resolves_its_alerts(
    tmp_path: Path, store: Store
) -> None:
    """A windowed delta that loses its window becomes an event rule: its alert ends."""
    d = Daemon(make_config(tmp_path, [FALL]), store)
    await d.start()
    await d.poll([account("A1", "5000.00")])
    d.clock.advance(timedelta(minutes=10))
    await d.poll([account("A1", "3000.00")])
    assert [s for _, s, _, _ in await d.outbox()] == ["firing"]

    event = {k: v for k, v in FALL.items() if k != "window"}
    assert await d.reload(make_config(tmp_path, [event])) == ["cash-fall"]
    d.clock.advance(timedelta(minutes=1))
    await d.poll()
    assert [s for _, s, _, _ in await d.outbox()] == ["firing", "resolved"]


# --------------------------------------------------------------------------- min_severity


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
    tmp_path: Path, rule: str, severity: Severity | None, expected: tuple[str, ...]
) -> None:
    """``Config.sinks_for(rule, severity)``: the rule's sinks (all when unnamed), less those
    whose ``min_severity`` is above the notification's severity."""
    config = make_config(
        tmp_path,
        [LOW_CASH, {**LOW_CASH, "name": "audited", "sinks": ["pager"]}],
        [
            {"type": "log", "name": "ops"},
            {"type": "log", "name": "chat", "min_severity": "warning"},
            {"type": "log", "name": "pager", "min_severity": "critical"},
        ],
    )
    assert config.sinks_for(rule, severity) == expected


async def test_the_pipeline_queues_by_severity(tmp_path: Path, store: Store) -> None:
    """A warning rule's notification skips the critical-only sink; a critical one and
    ``source_down`` (critical) reach it."""
    sinks = [{"type": "log", "name": "ops"}, {"type": "log", "name": "pager"}]
    sinks[1]["min_severity"] = "critical"
    rules = [LOW_CASH, {**LOW_CASH, "name": "very-low", "value": 100, "severity": "critical"}]
    d = Daemon(make_config(tmp_path, rules, sinks), store)
    await d.start()
    await d.poll([account("A1", "50.00")])
    assert [(r, sink) for r, _, sink, _ in await d.outbox()] == [
        ("low-cash", "ops"),
        ("very-low", "ops"),
        ("very-low", "pager"),
    ]

    d.fetcher.push(FetchError("HTTP 503"))
    await d.pipeline.poll()
    assert [(r, sink) for r, _, sink, _ in await d.outbox()][3:] == [
        ("source_down", "ops"),
        ("source_down", "pager"),
    ]


async def test_an_expression_problem_is_logged_once_per_kind(tmp_path: Path, store: Store) -> None:
    """An expression that cannot be evaluated on many accounts (``previous`` unguarded on the
    first poll) is one ``rule_problem`` line naming how many accounts and one of them, not one
    line per account, and not again at the next poll."""
    rule = {"type": "expression", "name": "drop", "when": "previous.cash - cash > 1000.0"}
    daemon = Daemon(make_config(tmp_path, [rule]), store)
    await daemon.start()
    accounts = [account(f"{n}@vision") for n in range(3)]
    with structlog.testing.capture_logs() as logs:
        await daemon.poll(accounts)
        daemon.clock.advance(timedelta(seconds=30))
        await daemon.poll([account(f"{n}@vision", "4000.00") for n in range(3)])
    problems = [e for e in logs if e["event"] == "rule_problem"]
    assert len(problems) == 1
    assert problems[0]["rule"] == "drop"
    assert problems[0]["accounts"] == 3
    assert problems[0]["example"] == "0@vision"
    assert "previous.cash" in problems[0]["problem"]
