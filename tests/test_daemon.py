"""The daemon and ``once`` in-process, against the real simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from store_helpers import sqlite_query
from structlog.testing import capture_logs

from monitor import simulator
from monitor.config import Config, config_from_dict
from monitor.daemon import STOP_GRACE, Exit, run_daemon, run_once
from monitor.errors import ConfigError
from monitor.simulator import DEMO_TOKEN, Reply, Simulator
from monitor.store import open_store

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow

#: Fires for both simulated accounts on the very first poll.
DAYTRADES_RULE = {
    "type": "threshold",
    "name": "daytrades",
    "field": "daytrades_count",
    "op": ">=",
    "value": 0,
}


class Api:
    """The simulated balances API, served on 127.0.0.1."""

    def __init__(self, sim: Simulator, url: str) -> None:
        self.sim = sim
        self.url = url

    def answer(self, status: int, *, delay: float = 0, count: int = 1) -> None:
        """Queue ``count`` answers with ``status`` (``-1``: until cleared)."""
        self.sim.queue(
            Reply(
                status=status,
                body=None,
                content_type="application/json",
                retry_after=None,
                delay=delay,
                remaining=count,
            )
        )

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a test helper's bound
        async with asyncio.timeout(timeout):
            while self.sim.requests < count:  # noqa: ASYNC110 - the simulator only counts
                await asyncio.sleep(0.01)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    sim = Simulator()
    runner, url = await simulator.start(sim)
    try:
        yield Api(sim, url)
    finally:
        await runner.cleanup()


@pytest.fixture
async def unavailable_webhook() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A webhook receiver that answers every POST with 503; the bodies it was sent."""
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=503, text="maintenance")

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook")), bodies
    finally:
        await server.close()


def make_config(tmp_path: Path, url: str, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "api": {"url": url, "token": DEMO_TOKEN, "timeout": "5s"},
        "schedule": {"interval": "1s"},
        "state": {"path": str(tmp_path / "state.db")},
        "sinks": [{"type": "log", "name": "log"}],
    }
    return config_from_dict(data | sections, base_dir=tmp_path)


async def outbox_states(config: Config) -> list[tuple[str, str]]:
    store = await open_store(config.state.path)
    try:
        rows = await sqlite_query(store, "SELECT sink, state FROM outbox ORDER BY seq")
    finally:
        await store.close()
    return [(sink, state) for sink, state in rows]


async def stop_after(task: asyncio.Task[Exit], stop: asyncio.Event, within: float) -> Exit:
    """Set ``stop`` and wait for the daemon to return, failing if it takes ``within`` seconds."""
    stop.set()
    async with asyncio.timeout(within):
        return await task


# --------------------------------------------------------------------------- daemon


async def test_the_daemon_polls_at_once_and_stops_on_the_event(tmp_path: Path, api: Api) -> None:
    """The first poll happens at start, not one interval later; setting the stop event makes
    run_daemon return Exit.OK promptly, with the baseline on disk."""
    config = make_config(tmp_path, api.url, schedule={"interval": "1h"})
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(run_daemon(config, stop))
    await api.wait_for_requests(1)
    assert time.monotonic() - started < 3

    assert await stop_after(task, stop, within=3) is Exit.OK

    assert api.sim.requests == 1
    store = await open_store(config.state.path)
    try:
        state = await store.load_source("default")
    finally:
        await store.close()
    assert state.accounts is not None
    assert sorted(state.accounts) == ["11111111@cor", "12345678@vision"]


async def test_the_daemon_polls_every_interval_and_delivers(tmp_path: Path, api: Api) -> None:
    """With a 1s interval the daemon keeps polling, and what the rules fire is delivered."""
    config = make_config(tmp_path, api.url, rules=[DAYTRADES_RULE])
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(config, stop))
    await api.wait_for_requests(3, timeout=6)

    assert await stop_after(task, stop, within=3) is Exit.OK
    assert await outbox_states(config) == [("log", "delivered"), ("log", "delivered")]


async def test_the_daemon_does_not_wait_long_for_a_hanging_poll(tmp_path: Path, api: Api) -> None:
    """A poll still waiting for the API when stop is set gets a short grace, then is cancelled
    with a warning (no error, no traceback): run_daemon returns Exit.OK and the poll is simply
    not recorded."""
    api.answer(200, delay=60, count=-1)
    config = make_config(tmp_path, api.url, api={"url": api.url, "token": DEMO_TOKEN})
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_daemon(config, stop))
        await api.wait_for_requests(1)
        assert await stop_after(task, stop, within=STOP_GRACE + 2) is Exit.OK

    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [
        "poll_cancelled"
    ]
    store = await open_store(config.state.path)
    try:
        assert await sqlite_query(store, "SELECT count(*) FROM sources") == [(0,)]
    finally:
        await store.close()


async def test_the_daemon_survives_a_failing_source(tmp_path: Path, api: Api) -> None:
    """Failed polls are counted, not fatal: the daemon keeps polling and then stops cleanly."""
    api.answer(500, count=-1)
    config = make_config(tmp_path, api.url)
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(config, stop))
    await api.wait_for_requests(2, timeout=5)
    assert await stop_after(task, stop, within=3) is Exit.OK


# --------------------------------------------------------------------------- once


async def test_once_returns_ok_when_all_is_delivered(tmp_path: Path, api: Api) -> None:
    """One successful poll whose notifications all went out: (Exit.OK, outcome, 0)."""
    config = make_config(tmp_path, api.url, rules=[DAYTRADES_RULE])

    code, outcome, pending = await run_once(config)

    assert (code, pending) == (Exit.OK, 0)
    assert (outcome.ok, outcome.accounts, outcome.notifications) == (True, 2, 2)
    assert api.sim.requests == 1
    assert await outbox_states(config) == [("log", "delivered"), ("log", "delivered")]


async def test_once_reports_a_failed_poll(tmp_path: Path, api: Api) -> None:
    """The API answering 500: Exit.SOURCE_FAILED with the error in the outcome."""
    api.answer(500)
    config = make_config(tmp_path, api.url)

    code, outcome, pending = await run_once(config)

    assert (code, pending) == (Exit.SOURCE_FAILED, 0)
    assert not outcome.ok
    assert outcome.error == "HTTP 500 (api_error: internal server error)"


async def test_once_reports_undelivered_notifications(
    tmp_path: Path, api: Api, unavailable_webhook: tuple[str, list[bytes]]
) -> None:
    """The only sink answering 503 past ``once_deadline``: Exit.UNDELIVERED with the count of
    notifications left queued for the next run."""
    url, bodies = unavailable_webhook
    config = make_config(
        tmp_path,
        api.url,
        rules=[DAYTRADES_RULE],
        sinks=[{"type": "webhook", "name": "hook", "url": url, "max_concurrency": 1}],
        delivery={"once_deadline": "500ms", "initial_backoff": "2s"},
    )
    started = time.monotonic()

    code, outcome, pending = await run_once(config)

    assert time.monotonic() - started < 3
    assert (code, pending) == (Exit.UNDELIVERED, 2)
    assert outcome.ok
    assert len(bodies) == 1  # the first one failed, and the second one waits its turn
    assert await outbox_states(config) == [("hook", "pending"), ("hook", "pending")]


async def test_once_without_its_token_opens_nothing(
    tmp_path: Path, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unresolvable token is a ConfigError raised before the state database is created."""
    monkeypatch.delenv("BALANCE_MONITOR_TEST_UNSET", raising=False)
    config = make_config(
        tmp_path, api.url, api={"url": api.url, "token_env": "BALANCE_MONITOR_TEST_UNSET"}
    )
    with pytest.raises(ConfigError, match="BALANCE_MONITOR_TEST_UNSET"):
        await run_once(config)
    assert not config.state.path.exists()
    assert api.sim.requests == 0


async def test_a_replica_on_postgresql_polls_what_it_holds_and_hands_it_over(
    tmp_path: Path, api: Api
) -> None:
    """With a PostgreSQL state the daemon is one replica: it takes the sources' leases and the
    singleton, polls them, is ready, counts them in its metrics; stopped, it hands every lease
    over (the rows are free for the others at once)."""
    import pg_helpers

    from monitor.daemon import Daemon

    cluster = pg_helpers.cluster()
    url = cluster.url(cluster.new_schema())
    config = make_config(
        tmp_path,
        api.url,
        state={"url": url, "password": cluster.password, "replica": "solo", "lease": "3s"},
        rules=[DAYTRADES_RULE],
    )
    daemon = Daemon(config)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(daemon.run(stop))
        await api.wait_for_requests(2, timeout=10)
        async with asyncio.timeout(10):
            while not daemon.readiness().ready:  # noqa: ASYNC110 - readiness is computed
                await asyncio.sleep(0.05)
        ready = daemon.readiness()
        assert ready.detail["replica"] == "solo"
        assert ready.detail["sources_owned"] == 1
        sample = daemon.metrics.registry.get_sample_value
        assert sample("balance_monitor_sources_owned") == 1
        assert sample("balance_monitor_replica_info", {"replica": "solo", "backend": "postgresql"})
        assert await stop_after(task, stop, within=5) is Exit.OK
    events = [e["event"] for e in logs]
    assert "source_acquired" in events
    assert "singleton_acquired" in events
    assert "sources_handed_over" in events
    store = await open_store(config.state)
    try:
        leases = await store.leases()
        polled = await store.sources()
    finally:
        await store.close()
    assert {lease.name: lease.owner for lease in leases} == {
        "source:default": None,
        "singleton": None,
    }
    assert polled[0].polls >= 2
