"""``balance-monitor run`` with ``stream = true``, the real CLI as a subprocess against the
simulator's account stream: a change reaches the webhook without a poll, ``/metrics`` says the
stream is connected, a dropped stream comes back, and ``status`` shows the stream."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from e2e_helpers import (
    LOW_CASH_RULE,
    WAIT,
    Cli,
    Hook,
    SimControl,
    config_toml,
    eventually,
    low_cash,
)

pytestmark = pytest.mark.e2e

LOW_CASH = "low-cash-to-withdraw"
TOKEN = "stream-sekrit-token-789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def stream_stats(session: aiohttp.ClientSession, sim: SimControl) -> dict[str, int]:
    url = sim.url.removesuffix("/accounts") + "/_sim/stream/stats"
    async with session.get(url) as response:
        stats: dict[str, int] = await response.json()
        return stats


async def until_subscribed(session: aiohttp.ClientSession, sim: SimControl, count: int) -> None:
    """Wait until the simulator's stream has seen ``count`` subscriptions."""
    deadline = time.monotonic() + WAIT
    while (await stream_stats(session, sim))["subscribes"] < count:
        assert time.monotonic() < deadline, "timed out waiting for the subscriptions"
        await asyncio.sleep(0.05)


async def test_a_streamed_change_alerts_without_a_poll(
    tmp_path: Path, sim: SimControl, hook: Hook, cli: Cli, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    text = config_toml(
        api_url=sim.url,
        hook_url=hook.url,
        state=tmp_path / "state.db",
        api="stream = true",
        rules=f'\n[http]\nlisten = "127.0.0.1:{port}"\n\n[log]\nformat = "json"\n' + LOW_CASH_RULE,
    ).replace('interval = "1s"', 'interval = "1h"')
    config.write_text(text, "utf-8")
    daemon = await cli.start("run", "--config", config)
    await daemon.wait_event("stream_connected")
    await until_subscribed(session, sim, 2)
    polls = await sim.requests()

    await sim.set_accounts(low_cash())
    await eventually(lambda: hook.matching(rule=LOW_CASH, status="firing"), what="the push")
    assert await sim.requests() == polls  # no poll in between: the push did it

    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        metrics = await response.text()
    assert 'balance_monitor_stream_connected{source="default"} 1.0' in metrics

    url = sim.url.removesuffix("/accounts") + "/_sim/stream/drop"
    async with session.post(url):
        pass
    await daemon.wait_event("stream_down")
    await eventually(
        lambda: len(daemon.events("stream_connected")) >= 2, what="the stream back", timeout=10
    )
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0, daemon.stderr
    assert len(hook.matching(rule=LOW_CASH, status="firing")) == 1  # not again after it

    result = await cli.run("status", "--config", config, "--json")
    assert result.code == 0, result.output
    (stream,) = json.loads(result.stdout)["streams"]
    assert (stream["source"], stream["connected"], stream["reconnects"]) == ("default", False, 1)
