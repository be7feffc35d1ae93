"""Time-driven steps, not poll-driven: a source polled rarely (the stream on, polls every few
minutes as the safety net) still escalates when ``after`` has passed, and fires an alert whose
``for`` has passed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from store_helpers import sqlite_query

from monitor.config import config_from_dict
from monitor.daemon import Daemon, Exit
from monitor.simulator import DEMO_TOKEN, Simulator
from monitor.store import open_store

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture
def sim(static_api: tuple[Simulator, str]) -> tuple[Simulator, str]:
    """The static simulator of tests/conftest.py, under this module's name for it."""
    return static_api


async def sent_to(path: Path, sink: str) -> list[str]:
    store = await open_store(path, readonly=True)
    try:
        rows = await sqlite_query(
            store, "SELECT json_extract(payload, '$.summary') FROM outbox WHERE sink=?", sink
        )
    finally:
        await store.close()
    return [str(r[0]) for r in rows]


async def test_an_alert_escalates_when_after_has_passed_without_waiting_for_a_poll(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    """Polls an hour apart, a step after 2 s: the step goes out about 2 s after the alert
    fired (before: at the next poll, an hour later), once."""
    simulated, url = sim
    path = tmp_path / "state.db"
    config = config_from_dict(
        {
            "api": {"url": url, "token": DEMO_TOKEN, "stream": True},
            "schedule": {"interval": "1h"},
            "state": {"path": str(path)},
            "sinks": [{"type": "log", "name": "ops"}, {"type": "log", "name": "pager"}],
            "rules": [
                {
                    "type": "threshold",
                    "name": "daytrades",
                    "field": "daytrades_count",
                    "op": ">=",
                    "value": 0,
                    "sinks": ["ops"],
                    "escalate": [{"after": "2s", "sinks": ["pager"]}],
                }
            ],
        },
        base_dir=tmp_path,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(Daemon(config).run(stop))
    try:
        async with asyncio.timeout(10):
            while not (path.exists() and await sent_to(path, "ops")):  # noqa: ASYNC110 - a file
                await asyncio.sleep(0.1)
        await asyncio.sleep(4)
        paged = await sent_to(path, "pager")
        polls = simulated.requests
    finally:
        stop.set()
        async with asyncio.timeout(10):
            assert await task is Exit.OK
    assert polls == 1
    assert len(paged) == 2  # both accounts, one step each
    assert all(s.endswith("(escalated)") for s in paged)


@pytest.mark.parametrize("stream", [True, False])
async def test_a_rule_s_for_falls_due_without_waiting_for_a_poll_while_streaming(
    tmp_path: Path, sim: tuple[Simulator, str], stream: bool
) -> None:
    """Polls an hour apart, the stream connected: an alert pending for 2 s fires about 2 s
    after the poll that saw it (before: at the next poll, an hour later). Without a stream the
    records are as old as the last poll: the next poll judges the wait on fresh ones."""
    simulated, url = sim
    path = tmp_path / "state.db"
    config = config_from_dict(
        {
            "api": {"url": url, "token": DEMO_TOKEN, "stream": stream},
            "schedule": {"interval": "1h"},
            "state": {"path": str(path)},
            "sinks": [{"type": "log", "name": "ops"}],
            "rules": [
                {
                    "type": "threshold",
                    "name": "daytrades",
                    "field": "daytrades_count",
                    "op": ">=",
                    "value": 0,
                    "accounts": ["12345678@vision"],
                    "for": "2s",
                }
            ],
        },
        base_dir=tmp_path,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(Daemon(config).run(stop))
    try:
        await asyncio.sleep(4.5)
        sent = await sent_to(path, "ops")
        polls = simulated.requests
    finally:
        stop.set()
        async with asyncio.timeout(10):
            assert await task is Exit.OK
    assert polls == 1
    assert len(sent) == (1 if stream else 0)
