"""Two replicas in-process on the real PostgreSQL of ``pg_helpers``, against the simulator on
127.0.0.1: where the features of one replica meet the work sharing of several (the account
stream follows the lease, the heartbeat judges every source, not only the replica's own)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sinks_helpers import Receiver, serving

from monitor import simulator
from monitor.config import Config, config_from_dict
from monitor.daemon import Daemon, Exit
from monitor.simulator import DEMO_TOKEN, Reply, Simulator
from monitor.streams import Streams

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow


async def until(condition: Callable[[], bool], limit: float = 15.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - state of daemons in this loop
            await asyncio.sleep(0.05)


@pytest.fixture
def sim(static_api: tuple[Simulator, str]) -> tuple[Simulator, str]:
    """The static simulator of tests/conftest.py, under this module's name for it."""
    return static_api


def replica_config(tmp_path: Path, url: str, name: str, **sections: Any) -> Config:
    import pg_helpers

    cluster = pg_helpers.cluster()
    data: dict[str, Any] = {
        "schedule": {"interval": "1s"},
        "state": {"url": url, "password": cluster.password, "replica": name, "lease": "3s"},
        "sinks": [{"type": "log", "name": "log"}],
    }
    return config_from_dict(data | sections, base_dir=tmp_path)


def sources(*urls: str, stream: bool = False) -> list[dict[str, Any]]:
    return [
        {"name": f"s{i}", "url": url, "token": DEMO_TOKEN, "stream": stream}
        for i, url in enumerate(urls)
    ]


class Replicas:
    """Daemons started in this loop; each stopped by its own event."""

    def __init__(self) -> None:
        self.running: list[tuple[Daemon, asyncio.Event, asyncio.Task[Exit]]] = []

    def start(self, config: Config) -> Daemon:
        daemon = Daemon(config)
        stop = asyncio.Event()
        self.running.append((daemon, stop, asyncio.create_task(daemon.run(stop))))
        return daemon

    async def stop(self, daemon: Daemon) -> None:
        for d, stop, task in self.running:
            if d is daemon:
                stop.set()
                async with asyncio.timeout(10):
                    assert await task is Exit.OK

    async def close(self) -> None:
        for _, stop, _ in self.running:
            stop.set()
        await asyncio.gather(*(task for _, _, task in self.running), return_exceptions=True)


@pytest.fixture
async def replicas() -> AsyncIterator[Replicas]:
    started = Replicas()
    try:
        yield started
    finally:
        await started.close()


def shared_schema() -> str:
    import pg_helpers

    cluster = pg_helpers.cluster()
    return cluster.url(cluster.new_schema())


def streams_of(daemon: Daemon) -> Streams:
    """The daemon's open account streams (once it runs)."""
    assert daemon._streams is not None
    return daemon._streams


def both_own_one(a: Daemon, b: Daemon) -> bool:
    return all(d.replica is not None and len(d.replica.owned) == 1 for d in (a, b))


async def test_each_source_streams_on_the_replica_holding_its_lease_and_moves_with_it(
    tmp_path: Path, sim: tuple[Simulator, str], replicas: Replicas
) -> None:
    """Two replicas, two streamed sources: one socket per source, held by its owner only (a
    source handed to the other replica closes its socket here); when a replica stops, the
    other takes its source over and opens that source's stream."""
    simulated, url = sim
    db = shared_schema()
    srcs = sources(url, url, stream=True)
    a = replicas.start(replica_config(tmp_path, db, "a", sources=srcs))
    await until(lambda: a.replica is not None and len(a.replica.owned) == 2)
    await until(lambda: len(simulated.stream.clients) == 2)
    b = replicas.start(replica_config(tmp_path, db, "b", sources=srcs))
    await until(lambda: both_own_one(a, b))
    await asyncio.sleep(2)  # a few lease rounds, the rebalanced stream closed and reopened
    assert len(simulated.stream.clients) == 2
    for daemon in (a, b):
        streamed = {name for name in ("s0", "s1") if name in streams_of(daemon)}
        assert streamed == daemon.replica.owned
        # A replica's stream gauge is of the streams it runs: one handed over is not "down"
        # here (deploy/prometheus/alerts.yml would warn of it after 10 minutes).
        gauge = {
            name: daemon.metrics.registry.get_sample_value(
                "balance_monitor_stream_connected", {"source": name}
            )
            for name in ("s0", "s1")
        }
        assert {name for name, value in gauge.items() if value is not None} == streamed
        assert all(gauge[name] == 1 for name in streamed)
    await replicas.stop(b)
    await until(lambda: a.replica.owned == {"s0", "s1"})
    await until(lambda: len(simulated.stream.clients) == 2)
    assert {name for name in ("s0", "s1") if name in streams_of(a)} == {"s0", "s1"}


async def beats_within(receiver: Receiver, seconds: float) -> int:
    before = len(receiver.requests)
    await asyncio.sleep(seconds)
    return len(receiver.requests) - before


async def test_the_heartbeat_of_replicas_judges_every_source_by_its_owner(
    tmp_path: Path, replicas: Replicas
) -> None:
    """Two replicas, each polling one of two sources (the first polled both before the second
    came): the heartbeat URL is pinged about once per beat, by one replica, while both sources
    poll well; once the source polled by the second replica fails, nobody pings (the first
    replica does not judge that source by the polls it made before handing it over)."""
    one, two = Simulator(scenario="static"), Simulator(scenario="static")
    (r1, url1), (r2, url2) = await simulator.start(one), await simulator.start(two)
    db = shared_schema()
    try:
        async with serving("/beat") as receiver:
            beat = {"url": receiver.url, "every": "1s", "method": "POST"}
            srcs = sources(url1, url2)
            a = replicas.start(replica_config(tmp_path, db, "a", sources=srcs, heartbeat=beat))
            await until(lambda: a.replica is not None and len(a.replica.owned) == 2)
            await until(lambda: one.requests >= 1 and two.requests >= 1)
            b = replicas.start(replica_config(tmp_path, db, "b", sources=srcs, heartbeat=beat))
            await until(lambda: both_own_one(a, b))
            await asyncio.sleep(1.5)  # both sources polled by their owners
            assert 2 <= await beats_within(receiver, 3.5) <= 5  # not one per replica

            (owned_by_b,) = b.replica.owned
            failing = one if owned_by_b == "s0" else two
            failing.queue(
                Reply(
                    status=500,
                    body=None,
                    content_type="application/json",
                    retry_after=None,
                    delay=0,
                    remaining=-1,
                )
            )
            await asyncio.sleep(2.5)  # its next poll failed
            assert await beats_within(receiver, 3.5) == 0
    finally:
        await replicas.close()
        await r1.cleanup()
        await r2.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_pages_of_a_replica_give_next_poll_times_only_for_what_it_polls(
    tmp_path: Path, sim: tuple[Simulator, str], replicas: Replicas
) -> None:
    """Every replica serves the dashboard from the shared state (the same sources and polls),
    but the next poll time only of the sources it holds: its schedule of the others is a job
    that does nothing, not when they will be polled."""
    _, url = sim
    db = shared_schema()
    srcs = sources(url, url)
    ports = {"a": free_port(), "b": free_port()}
    daemons = {
        name: replicas.start(
            replica_config(tmp_path, db, name, sources=srcs, http={"listen": f"127.0.0.1:{port}"})
        )
        for name, port in ports.items()
    }
    await until(lambda: both_own_one(daemons["a"], daemons["b"]))
    await asyncio.sleep(1.5)
    async with aiohttp.ClientSession() as session:
        for name, port in ports.items():
            address = f"http://127.0.0.1:{port}/api/v1/sources"
            async with session.get(address) as response:
                assert response.status == 200
                listed = (await response.json())["sources"]
            assert [s["name"] for s in listed] == ["s0", "s1"]
            assert all(s["polls"] >= 1 for s in listed)  # the shared state: every poll
            timed = {s["name"] for s in listed if s["next_poll_at"] is not None}
            assert timed == daemons[name].replica.owned
