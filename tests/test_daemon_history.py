"""The daemon keeps the dashboard's history: polls append changes to the journal, and the
maintenance job (not a poll) compacts it into the table the charts read by account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from e2e_helpers import COR, VISION, SimControl, account
from store_helpers import sqlite_rows

from monitor import daemon as daemon_module
from monitor import simulator
from monitor.config import config_from_dict
from monitor.daemon import Daemon
from monitor.simulator import DEMO_TOKEN, Simulator


@pytest.fixture
async def sim() -> AsyncIterator[SimControl]:
    runner, url = await simulator.start(Simulator(token=DEMO_TOKEN))
    try:
        async with aiohttp.ClientSession() as session:
            control = SimControl(url, session)
            await control.set_accounts([account(VISION), account(COR)])
            yield control
    finally:
        await runner.cleanup()


async def test_polls_journal_changes_and_maintenance_compacts_them(
    sim: SimControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cash change lands in the journal with the value before it, then moves."""
    monkeypatch.setattr(daemon_module, "MAINTENANCE_EVERY", 1.5)
    db = tmp_path / "state.db"
    config = config_from_dict(
        {
            "api": {"url": sim.url, "token": DEMO_TOKEN},
            "schedule": {"interval": "1s"},
            "state": {"path": str(db)},
            "sinks": [{"name": "console", "type": "log"}],
        },
        base_dir=tmp_path,
    )
    stop = asyncio.Event()
    run = asyncio.create_task(Daemon(config).run(stop))
    try:
        await sim.wait_requests(1)
        await sim.set_accounts([account(VISION, cash=Decimal("12.34")), account(COR)])

        async def journaled() -> list[tuple[object, ...]]:
            return await sqlite_rows(
                db, "SELECT account_number, field, previous, value FROM history_journal"
            )

        async def compacted() -> list[tuple[object, ...]]:
            return await sqlite_rows(
                db, "SELECT account_number, field, previous, value FROM account_history"
            )

        seen: list[tuple[object, ...]] = []

        async def check() -> list[tuple[object, ...]]:
            seen[:] = await compacted()
            return seen

        deadline = asyncio.get_running_loop().time() + 10
        while not await check():
            assert asyncio.get_running_loop().time() < deadline, await journaled()
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)
    assert seen == [(VISION, "cash", "2524.50", "12.34")]
