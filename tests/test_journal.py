"""Explaining alerts with the journal, for real: a pipeline with the real BalancesSource and a
real store, against the simulator's balances and journal endpoints on 127.0.0.1 (including a
journal that hangs and one that fails)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from store_helpers import sqlite_query
from structlog.testing import capture_logs

from monitor.config import Config, config_from_dict
from monitor.pipeline import SourcePipeline
from monitor.simulator import DEMO_TOKEN, Simulator
from monitor.source import BalancesSource
from monitor.store import Store
from monitor.testing import ManualClock

VISION = "12345678@vision"
LOW = {"type": "threshold", "name": "low-cash", "field": "cash", "op": "<", "value": 1000}
DAY = {"type": "threshold", "name": "day", "field": "daytrades_count", "op": ">=", "value": 0}
WITHDRAWAL = {
    "type": "MONEY:OUT",
    "description": "withdrawal",
    "cash": {"gross_amount": Decimal("-2000.00"), "net_amount": Decimal("-2000.00")},
    "date": "2099-01-01T00:00:00Z",  # after any previous snapshot
}


@pytest.fixture
def api(static_api: tuple[Simulator, str]) -> tuple[Simulator, str]:
    """The static simulator of tests/conftest.py, under this module's name for it."""
    return static_api


def make_config(tmp_path: Path, url: str, *rules: dict[str, Any], **api: Any) -> Config:
    return config_from_dict(
        {
            "api": {"url": url, "token": DEMO_TOKEN, **api},
            "state": {"path": str(tmp_path / "state.db")},
            "sinks": [{"type": "log", "name": "ops"}],
            "rules": list(rules),
        },
        base_dir=tmp_path,
    )


class Run:
    def __init__(self, config: Config, session: aiohttp.ClientSession, store: Store) -> None:
        spec = config.all_sources()[0]
        self.store = store
        self.pipeline = SourcePipeline(
            source=spec.name,
            config=config,
            rules=config.rules,
            fetcher=BalancesSource(spec.name, spec.config, session, SecretStr(DEMO_TOKEN)),
            store=store,
            on_queued=lambda: None,
            clock=ManualClock(),
            journal_timeout=0.3,
        )

    async def payloads(self) -> list[dict[str, Any]]:
        rows = await sqlite_query(self.store, "SELECT payload FROM outbox ORDER BY seq")
        return [json.loads(p) for (p,) in rows]


def low_cash(sim: Simulator) -> None:
    records = sim.accounts()
    records[0]["cash"] = Decimal("500.00")
    sim.set_accounts(records)


async def test_an_explained_alert_carries_the_journal_entries(
    tmp_path: Path, api: tuple[Simulator, str], store: Store
) -> None:
    """One journal request for the account (two explained alerts on it), with the dates of the
    previous snapshot and today; the entries are in the queued payload."""
    sim, url = api
    sim.journal[VISION] = [WITHDRAWAL]
    moved = {"type": "change", "name": "cash-moved", "field": "cash", "explain": True}
    config = make_config(tmp_path, url, {**LOW, "explain": True}, moved, DAY)
    async with aiohttp.ClientSession() as session:
        run = Run(config, session, store)
        await run.pipeline.poll()  # the baseline
        assert sim.journal_requests == []
        low_cash(sim)
        await run.pipeline.poll()
        payloads = await run.payloads()
    assert [a for a, _ in sim.journal_requests] == [VISION]
    query = sim.journal_requests[0][1]
    assert set(query) == {"start_date", "end_date", "limit", "skip"}
    explained = {p["rule"]: p.get("explanation") for p in payloads}
    assert explained["day"] is None  # not explained, and fired at the baseline
    assert explained["cash-moved"] == explained["low-cash"]
    assert explained["low-cash"] == [
        {"type": "MONEY:OUT", "description": "withdrawal", "amount": -2000.0,
         "date": "2099-01-01T00:00:00Z"}
    ]  # fmt: skip


async def test_a_hanging_journal_never_holds_the_alert_back(
    tmp_path: Path, api: tuple[Simulator, str], store: Store
) -> None:
    """The journal does not answer: the alert is queued after the short timeout, without an
    explanation, and the reason is logged once (not again at the next poll)."""
    sim, url = api
    sim.journal_delay = 30
    config = make_config(tmp_path, url, LOW, explain=True)
    async with aiohttp.ClientSession() as session:
        run = Run(config, session, store)
        await run.pipeline.poll()
        low_cash(sim)
        with capture_logs() as logs:
            started = time.monotonic()
            await run.pipeline.poll()
            took = time.monotonic() - started
            records = sim.accounts()
            records[1]["cash"] = Decimal("100.00")  # the other account trips too
            sim.set_accounts([*sim.current_records()[:1], records[1]])
            await run.pipeline.poll()
        payloads = await run.payloads()
    assert took < 2.0
    assert [p["rule"] for p in payloads] == ["low-cash", "low-cash"]
    assert all("explanation" not in p for p in payloads)
    warned = [
        e for e in logs if e["event"] == "journal_unavailable" and e["log_level"] == "warning"
    ]
    assert [e["error"] for e in warned] == ["no answer within 0.3s"]


async def test_a_failing_journal_sends_the_alert_without_it(
    tmp_path: Path, api: tuple[Simulator, str], store: Store
) -> None:
    sim, url = api
    sim.journal_status = 500
    config = make_config(tmp_path, url, {**LOW, "explain": True})
    async with aiohttp.ClientSession() as session:
        run = Run(config, session, store)
        await run.pipeline.poll()
        low_cash(sim)
        with capture_logs() as logs:
            await run.pipeline.poll()
        payloads = await run.payloads()
    assert [p["rule"] for p in payloads] == ["low-cash"]
    assert "explanation" not in payloads[0]
    assert any(e["event"] == "journal_unavailable" and "HTTP 500" in e["error"] for e in logs)
    assert all(DEMO_TOKEN not in str(e) for e in logs)


async def test_no_journal_request_without_explain(
    tmp_path: Path, api: tuple[Simulator, str], store: Store
) -> None:
    sim, url = api
    config = make_config(tmp_path, url, LOW)
    async with aiohttp.ClientSession() as session:
        run = Run(config, session, store)
        await run.pipeline.poll()
        low_cash(sim)
        await run.pipeline.poll()
        payloads = await run.payloads()
    assert sim.journal_requests == []
    assert "explanation" not in payloads[0]
