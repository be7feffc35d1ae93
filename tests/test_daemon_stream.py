"""The daemon with ``stream = true``, in-process, against the simulator's stream and a
webhook receiver on 127.0.0.1: a pushed change reaches the webhook at once (no poll between),
and nothing is lost or sent twice across a dropped and a refused connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sinks_helpers import Receiver, serving

from monitor.config import config_from_dict, load_config
from monitor.daemon import Daemon, Exit
from monitor.metrics import Metrics
from monitor.simulator import DEMO_TOKEN, Simulator
from monitor.store import open_store

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow

VISION = "12345678@vision"
LOW_CASH = {"type": "threshold", "name": "low-cash", "field": "cash", "op": "<", "value": 1000}


async def until(condition: Callable[[], bool], limit: float = 8.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - state of servers in this loop
            await asyncio.sleep(0.02)


@pytest.fixture
def sim(static_api: tuple[Simulator, str]) -> tuple[Simulator, str]:
    """The static simulator of tests/conftest.py, under this module's name for it."""
    return static_api


def with_cash(sim: Simulator, cash: str) -> list[dict[str, Any]]:
    records = sim.accounts()
    records[0]["cash"] = Decimal(cash)
    return records


def sent(hook: Receiver) -> list[tuple[str, str, str]]:
    return [
        (doc["rule"], doc["status"], doc["account_number"])
        for doc in (json.loads(r.body) for r in hook.requests)
    ]


async def test_a_push_alerts_at_once_and_a_reconnect_loses_and_repeats_nothing(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    simulated, url = sim
    async with serving("/hook") as hook:
        config = config_from_dict(
            {
                "api": {"url": url, "token": DEMO_TOKEN, "stream": True},
                "schedule": {"interval": "1h"},  # one poll at start: the rest are pushes
                "state": {"path": str(tmp_path / "state.db")},
                "sinks": [{"type": "webhook", "name": "hook", "url": hook.url}],
                "rules": [LOW_CASH],
            },
            base_dir=tmp_path,
        )
        metrics = Metrics()
        stop = asyncio.Event()
        task = asyncio.create_task(Daemon(config, metrics=metrics).run(stop))
        hub = simulated.stream
        try:
            await until(lambda: hub.subscribes == 2 and hub.messages >= 1)
            polls = simulated.requests

            simulated.set_accounts(with_cash(simulated, "500.00"))
            await until(lambda: len(hook.requests) == 1)
            assert sent(hook) == [("low-cash", "firing", VISION)]

            await hub.drop()  # resubscribed; the balances sent again are the same: no alert
            await until(lambda: hub.connects == 2 and hub.messages >= 3)
            # While refused, the cash comes back: the first push after it says so.
            hub.refuse_count, hub.refuse_status = 1, 503
            await hub.drop()
            await until(lambda: hub.refused == 1)
            simulated.set_accounts(with_cash(simulated, "5000.00"))
            await until(lambda: len(hook.requests) == 2)
            assert sent(hook) == [
                ("low-cash", "firing", VISION),
                ("low-cash", "resolved", VISION),
            ]
            assert simulated.requests == polls  # pushes, not polls
            text = metrics.render().decode()
            assert 'balance_monitor_stream_connected{source="default"} 1.0' in text
            assert 'balance_monitor_stream_reconnects_total{source="default"} 3.0' in text
            assert 'balance_monitor_stream_messages_total{source="default",type="b"}' in text
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) is Exit.OK
    store = await open_store(tmp_path / "state.db")
    try:
        streams = await store.streams()
    finally:
        await store.close()
    assert streams["default"]["connected"] is False
    assert streams["default"]["reconnects"] == 3


async def test_a_reload_that_turns_the_stream_off_stops_it_and_status_forgets_it(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    """The stream lives with its source: a reload without ``stream`` closes it, drops its
    metrics and takes it out of ``status``; a reload with it again opens a new one."""
    simulated, url = sim
    path = tmp_path / "config.toml"

    def write(stream: bool) -> None:
        path.write_text(
            f'[api]\nurl = "{url}"\ntoken = "{DEMO_TOKEN}"\nstream = {str(stream).lower()}\n'
            f'[schedule]\ninterval = "1h"\n[state]\npath = "{tmp_path / "state.db"}"\n'
            '[[sinks]]\ntype = "log"\nname = "log"\n',
            "utf-8",
        )

    write(True)
    metrics = Metrics()
    stop, reload = asyncio.Event(), asyncio.Event()
    daemon = Daemon(load_config(path), config_path=path, metrics=metrics)
    task = asyncio.create_task(daemon.run(stop, reload))
    hub = simulated.stream
    try:
        await until(lambda: hub.subscribes == 2)
        write(False)
        reload.set()
        await until(lambda: not hub.clients)
        assert "balance_monitor_stream_connected{" not in metrics.render().decode()
        write(True)
        reload.set()
        await until(lambda: hub.connects == 2 and hub.subscribes == 4)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) is Exit.OK
