"""The daemon's side of issue 16, in-process against the simulator on 127.0.0.1: it picks up a
silence written next to it (``control=True``) and counts it in ``/metrics``; a reload starts,
re-times and stops the heartbeat."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor import simulator
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.silences import Silence
from monitor.simulator import DEMO_TOKEN, Reply, Simulator
from monitor.store import open_store

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture
def sim() -> Simulator:
    return Simulator(scenario="static")


@pytest.fixture
async def api_url(sim: Simulator) -> AsyncIterator[str]:
    runner, url = await simulator.start(sim)
    try:
        yield url
    finally:
        await runner.cleanup()


@pytest.fixture
async def pings() -> AsyncIterator[tuple[str, list[float]]]:
    """A heartbeat receiver: its URL and when each ping came."""
    seen: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/ping/{key}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/ping/k3y")), seen
    finally:
        await server.close()


def write_config(path: Path, api_url: str, extra: str = "") -> Path:
    path.write_text(
        f'[api]\nurl = "{api_url}"\ntoken = "{DEMO_TOKEN}"\n'
        '[schedule]\ninterval = "1s"\n'
        f'[state]\npath = "{path.parent / "state.db"}"\n'
        '[[sinks]]\nname = "console"\ntype = "log"\n' + extra,
        encoding="utf-8",
    )
    return path


async def wait_until(check: Callable[[], bool], timeout: float = 8.0) -> None:  # noqa: ASYNC109 - a test helper's bound
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling the daemon's state
            await asyncio.sleep(0.05)


async def test_a_silence_written_next_to_the_daemon_is_in_force_within_seconds(
    api_url: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "config.toml", api_url)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        await wait_until(lambda: daemon._rt is not None)
        cli = await open_store(tmp_path / "state.db", control=True)
        try:
            now = time.time()
            await cli.add_silence(Silence("s1", now, now + 600, source="default"))
        finally:
            await cli.close()
        rt = daemon._rt
        assert rt is not None
        await wait_until(lambda: bool(rt.control.state.silences), timeout=5)
        await daemon._refresh_metrics()
        registry = daemon.metrics.registry
        assert registry.get_sample_value("balance_monitor_silences_active") == 1
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)


async def test_a_reload_starts_and_stops_the_heartbeat(
    api_url: str, tmp_path: Path, pings: tuple[str, list[float]]
) -> None:
    """No ``[heartbeat]``: no ping. A reload that adds one starts pinging every ``every``; one
    that removes it stops the pings."""
    url, seen = pings
    path = write_config(tmp_path / "config.toml", api_url)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.sleep(1.5)
        assert seen == []
        write_config(path, api_url, f'[heartbeat]\nurl = "{url}"\nevery = "1s"\n')
        assert await daemon.reload()
        await wait_until(lambda: len(seen) >= 2)
        write_config(path, api_url)
        assert await daemon.reload()
        count = len(seen)
        await asyncio.sleep(2.0)
        assert len(seen) <= count + 1  # one ping may have been on its way
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)


async def test_the_digest_job_runs_only_where_there_are_digests(
    api_url: str, tmp_path: Path
) -> None:
    """No ``[[digests]]``: no digest job wakes every second. A reload that adds one starts it
    at once, so a digest due earlier today is sent then; one that removes them stops it."""
    path = write_config(tmp_path / "config.toml", api_url)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        await wait_until(lambda: daemon._scheduler is not None and daemon._rt is not None)
        scheduler, rt = daemon._scheduler, daemon._rt
        assert scheduler is not None
        assert rt is not None
        assert scheduler.get_job("digests") is None
        digest = (
            '[[digests]]\nname = "close"\nat = "00:00"\ntimezone = "UTC"\nsinks = ["console"]\n'
        )
        write_config(path, api_url, digest)
        assert await daemon.reload()
        assert scheduler.get_job("digests") is not None

        async def sent() -> list[str]:
            return [r.rule for r in await rt.store.notifications(since=0)]

        async with asyncio.timeout(5):
            while not await sent():  # noqa: ASYNC110 - what the daemon wrote
                await asyncio.sleep(0.05)
        assert await sent() == ["digest:close"]
        write_config(path, api_url)
        assert await daemon.reload()
        assert scheduler.get_job("digests") is None
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)


async def test_a_digest_caught_up_at_start_waits_for_the_first_poll(
    api_url: str, sim: Simulator, tmp_path: Path
) -> None:
    """A first start after the day's digest time: the digest is caught up with the accounts of
    the start's first poll, not sent before it as "0 accounts, all clear"."""
    sim.queue(
        Reply(200, None, "application/json", None, delay=1.0, remaining=1)
    )  # a slow first poll
    digest = '[[digests]]\nname = "close"\nat = "00:00"\ntimezone = "UTC"\nsinks = ["console"]\n'
    path = write_config(tmp_path / "config.toml", api_url, digest)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        await wait_until(lambda: daemon._rt is not None)
        rt = daemon._rt
        assert rt is not None
        async with asyncio.timeout(8):
            while not (rows := await rt.store.deliveries(limit=10)):  # noqa: ASYNC110 - what the daemon wrote
                await asyncio.sleep(0.05)
        (row,) = rows
        assert row.payload["name"] == "close"
        assert row.payload["totals"]["accounts"] == 2
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)
