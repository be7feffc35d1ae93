"""End to end: three replicas of the real CLI sharing one PostgreSQL (high availability).

Each replica is ``python -m monitor run`` with the same config file: 24 ``[[sources]]`` on the
simulator, 1 s polls, ``lease = "2s"``, a webhook receiver on 127.0.0.1. The tests read what
the receiver got and what each replica logged:

- (a) steady state: every alert is delivered exactly once;
- (b) ``kill -9`` of a replica during an alert storm: its sources are taken over within
  ``lease`` plus an interval, nothing is lost, and a notification sent twice is one that was in
  flight, with the same ``id``;
- (c) SIGSTOP past the lease while alerts happen, then SIGCONT: no notification with a new
  ``id`` for a change already notified, and the paused replica logs ``source_lost``;
- (d) SIGTERM: the others take the sources over within about a second;
- (e) a replica cut off from the database says so (log, ``/readyz``) and recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pg_helpers
import pytest
from e2e_helpers import (
    LOW_CASH_RULE,
    TOKEN_ENV,
    Cli,
    Hook,
    Proc,
    SimControl,
    child_env,
    eventually,
    healthy,
    low_cash,
)

from monitor.config import WebhookSinkConfig

pytestmark = pytest.mark.e2e

TOKEN = "replicas-e2e-token"
SOURCES = [f"s{i:02}" for i in range(24)]
LEASE = 2.0
PASSWORD_ENV = "BM_E2E_DB_PASSWORD"


def config_text(sim_url: str, hook_url: str, db_url: str) -> str:
    sources = "".join(
        f'\n[[sources]]\nname = "{name}"\nurl = "{sim_url}"\ntoken_env = "{TOKEN_ENV}"\n'
        for name in SOURCES
    )
    return f"""\
[schedule]
interval = "1s"

[state]
url = "{db_url}"
password_env = "{PASSWORD_ENV}"
lease = "{LEASE:g}s"

[delivery]
initial_backoff = "0.2s"
max_backoff = "1s"

[log]
format = "json"

[[sinks]]
name = "hook"
type = "webhook"
url = "{hook_url}"
{LOW_CASH_RULE}{sources}"""


class Replicas:
    """Three (or more) replicas of the CLI on one config, each with its own /readyz port."""

    def __init__(self, tmp_path: Path, config: Path, password: str) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.password = password
        self.clis: list[Cli] = []
        self.procs: list[Proc] = []
        self.ports: list[int] = []

    async def start(self, count: int = 3, *, db_url: str | None = None) -> list[Proc]:
        started = []
        for _ in range(count):
            n = len(self.procs)
            folder = self.tmp_path / f"replica-{n}"
            folder.mkdir()
            port = pg_helpers._free_port()
            env = child_env() | {
                TOKEN_ENV: TOKEN,
                PASSWORD_ENV: self.password,
                "BALANCE_MONITOR_LISTEN": f"127.0.0.1:{port}",
            }
            cli = Cli(folder, env)
            config = self.config
            if db_url is not None:  # this one reaches the database another way
                config = folder / "config.toml"
                text = self.config.read_text(encoding="utf-8")
                config.write_text(_with_url(text, db_url), encoding="utf-8")
            proc = await cli.start("--config", config, "run")
            self.clis.append(cli)
            self.procs.append(proc)
            self.ports.append(port)
            started.append(proc)
        return started

    async def aclose(self) -> None:
        for proc in self.procs:
            if proc.running:
                with contextlib.suppress(ProcessLookupError):
                    proc.send(signal.SIGCONT)
        for cli in self.clis:
            await cli.aclose()


def _with_url(text: str, url: str) -> str:
    lines = [
        f'url = "{url}"' if line.startswith('url = "postgresql') else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


def owners(procs: list[Proc]) -> dict[str, Proc]:
    """Who polls each source now, from the replicas' logs (acquired, not lost or released
    since)."""
    owned: dict[str, Proc] = {}
    for proc in procs:
        held: set[str] = set()
        for event in proc.events():
            name = event.get("event")
            if name == "source_acquired":
                held.add(event["source"])
            elif name in ("source_lost", "source_released"):
                held.discard(event["source"])
            elif name == "sources_handed_over":
                held.clear()
        for source in held:
            owned[source] = proc
    return owned


async def all_owned(procs: list[Proc], *, timeout: float = 20.0) -> dict[str, Proc]:  # noqa: ASYNC109
    """Every source owned, spread evenly over ``procs`` (each holds at most its share)."""
    share = -(-len(SOURCES) // len(procs))

    def check() -> dict[str, Proc] | None:
        found = owners(procs)
        counts = Counter(id(p) for p in found.values())
        spread = len(counts) == len(procs) and max(counts.values()) <= share
        return found if set(found) == set(SOURCES) and spread else None

    return await eventually(check, what="every source owned, spread evenly", timeout=timeout)


def firing(hook: Hook, status: str = "firing") -> list[dict[str, Any]]:
    return [p for p in hook.delivered() if p["status"] == status]


def by_source(payloads: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The ids delivered for each source."""
    ids: dict[str, set[str]] = {}
    for p in payloads:
        ids.setdefault(p["source"], set()).add(p["id"])
    return ids


@pytest.fixture
async def replicas(tmp_path: Path, sim: SimControl, hook: Hook) -> AsyncIterator[Replicas]:
    cluster = pg_helpers.cluster()
    schema = cluster.new_schema()
    config = tmp_path / "config.toml"
    config.write_text(config_text(sim.url, hook.url, cluster.url(schema)), encoding="utf-8")
    group = Replicas(tmp_path, config, cluster.password)
    try:
        yield group
    finally:
        await group.aclose()


async def storm(sim: SimControl, hook: Hook, status: str, before: int) -> None:
    """Wait until every source's ``status`` notification of this flip is delivered."""

    def check() -> bool:
        sources = {p["source"] for p in firing(hook, status)[before:]}
        return sources == set(SOURCES)

    try:
        await eventually(check, what=f"a {status} notification from every source", timeout=30)
    except AssertionError as exc:
        seen = {p["source"] for p in firing(hook, status)[before:]}
        exc.add_note(f"missing: {sorted(set(SOURCES) - seen)}")
        raise


async def test_steady_state_then_kill_9_loses_nothing(
    replicas: Replicas, sim: SimControl, hook: Hook
) -> None:
    """(a) Three replicas share 24 sources; one low-cash flip is 24 notifications, each
    delivered once. (b) kill -9 of a replica in the middle of the next storm: the others take
    its sources over within lease + an interval; every source's resolve arrives; an id
    delivered twice was in flight (same id), never a second id for one change."""
    procs = await replicas.start(3)
    owned = await all_owned(procs)
    assert sorted(Counter(id(p) for p in owned.values()).values()) == [8, 8, 8]

    await sim.set_accounts(low_cash())
    await storm(sim, hook, "firing", 0)
    await asyncio.sleep(1.5)  # anything sent twice would be here by now
    ids = [p["id"] for p in firing(hook)]
    assert len(ids) == len(set(ids)) == len(SOURCES)  # (a) exactly once

    victim = procs[0]
    lost = {s for s, p in owned.items() if p is victim}
    await sim.set_accounts(healthy())
    await asyncio.sleep(0.3)  # the storm is under way
    killed_at = time.monotonic()
    victim.send(signal.SIGKILL)
    await victim.wait()
    survivors = procs[1:]

    def taken() -> bool:
        return lost <= set(owners(survivors))

    await eventually(taken, what="the killed replica's sources taken over", timeout=15)
    takeover = time.monotonic() - killed_at
    assert takeover <= LEASE + 1.0 + 2.0, takeover  # lease + interval (+ slack for this box)
    await storm(sim, hook, "resolved", 0)
    await asyncio.sleep(1.5)
    resolved = firing(hook, "resolved")
    per_source = by_source(resolved)
    assert set(per_source) == set(SOURCES)  # nothing lost
    assert all(len(ids) == 1 for ids in per_source.values()), per_source  # no new id
    twice = [i for i, n in Counter(p["id"] for p in resolved).items() if n > 1]
    # One replica at a time sends a sink's rows, up to its max_concurrency (4) in flight,
    # each recorded before the next takes its place: at most those 4 were in flight.
    in_flight = WebhookSinkConfig.model_fields["max_concurrency"].default
    assert len(twice) <= in_flight, twice


async def test_a_paused_replica_cannot_notify_what_another_handled(
    replicas: Replicas, sim: SimControl, hook: Hook
) -> None:
    """(c) SIGSTOP a replica for twice the lease while accounts flip, then SIGCONT: the others
    notified its sources' changes; it logs source_lost and sends nothing with a new id."""
    procs = await replicas.start(3)
    owned = await all_owned(procs)
    paused = procs[1]
    mine = {s for s, p in owned.items() if p is paused}
    paused.send(signal.SIGSTOP)
    await sim.set_accounts(low_cash())
    await storm(sim, hook, "firing", 0)  # all 24, the paused one's by the others
    await asyncio.sleep(max(0.0, 2 * LEASE - 1))
    paused.send(signal.SIGCONT)
    await paused.wait_event("source_lost", timeout=10)
    await asyncio.sleep(2.0)  # what it might wrongly send would be here by now
    per_source = by_source(firing(hook))
    assert set(per_source) == set(SOURCES)
    assert all(len(ids) == 1 for ids in per_source.values()), per_source
    lost = {e["source"] for e in paused.events("source_lost")}
    assert lost & mine
    assert paused.running  # it goes on, with whatever the rounds give it again


async def test_sigterm_hands_the_sources_over_within_about_a_second(
    replicas: Replicas,
) -> None:
    """(d) A clean stop frees its leases at once: the others take them at their next round."""
    procs = await replicas.start(3)
    owned = await all_owned(procs)
    leaving = procs[2]
    mine = {s for s, p in owned.items() if p is leaving}
    others = procs[:2]
    seen = [len(proc.events("source_acquired")) for proc in others]
    stopped_at = time.monotonic()
    leaving.send(signal.SIGTERM)

    def taken() -> bool:
        return mine <= set(owners(others))

    await eventually(taken, what="the stopped replica's sources taken over", timeout=10)
    handover = time.monotonic() - stopped_at
    assert await leaving.wait() == 0
    assert leaving.events("sources_handed_over")[0]["sources"] == len(mine)
    reasons = {
        e["reason"]
        for proc, before in zip(others, seen, strict=True)
        for e in proc.events("source_acquired")[before:]
        if e["source"] in mine
    }
    assert reasons == {"released"}
    assert handover < 2.5, handover  # about a second (one round), with slack for this box


async def readyz(session: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]]:
    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
        return response.status, json.loads(await response.text())


class Proxy:
    """A TCP proxy on 127.0.0.1 to PostgreSQL that the test can cut and restore."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = pg_helpers._free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.links |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in self.links:
            writer.transport.abort()
        self.links.clear()

    async def aclose(self) -> None:
        await self.cut()


async def test_a_replica_cut_off_from_the_database_says_so_and_recovers(
    replicas: Replicas, session: aiohttp.ClientSession
) -> None:
    """(e) Through a proxy the test cuts: the replica logs state_database_unreachable, its
    /readyz is 503 naming the cause, ``status`` shows its heartbeat stopped, its sources go
    to the other replica; restored, it logs state_database_reachable, is ready again and gets
    its share back."""
    cluster = pg_helpers.cluster()
    proxy = Proxy(cluster.port)
    await proxy.start()
    try:
        url = replicas.config.read_text(encoding="utf-8").split('url = "postgresql://')[1]
        url = "postgresql://" + url.split('"')[0].replace(f":{cluster.port}/", f":{proxy.port}/")
        [steady] = await replicas.start(1)
        [cut] = await replicas.start(1, db_url=url)
        await all_owned([steady, cut])
        port = replicas.ports[1]

        async def ready(want: int) -> dict[str, Any] | None:
            code, body = await readyz(session, port)
            return body if code == want else None

        await _until(lambda: ready(200), "the proxied replica ready")
        await proxy.cut()
        await cut.wait_event("state_database_unreachable", timeout=20)
        body = await _until(lambda: ready(503), "/readyz 503 while cut off")
        assert any("state database unreachable" in r for r in body["reasons"]), body
        await all_owned([steady], timeout=15)  # the other replica polls everything
        name = (await cut.wait_event("started"))["replica"]
        shown = await replicas.clis[0].run("--config", replicas.config, "status", "--json")
        assert shown.code == 0, shown.stderr
        rows = {r["replica"]: r for r in json.loads(shown.stdout)["replicas"]}
        assert rows[name]["live"] is False  # its heartbeat stopped
        assert rows[name]["sources_owned"] == 0
        await proxy.start()
        await cut.wait_event("state_database_reachable", timeout=15)
        await _until(lambda: ready(200), "/readyz 200 again")
        await all_owned([steady, cut])  # and it gets its share back
        async with session.get(f"http://127.0.0.1:{replicas.ports[0]}/metrics") as response:
            metrics = await response.text()
        steady_name = (await steady.wait_event("started"))["replica"]
        assert f'replica="{steady_name}"' in metrics
        assert 'backend="postgresql"' in metrics
        assert "balance_monitor_sources_owned 12.0" in metrics
        taken = next(
            line
            for line in metrics.splitlines()
            if line.startswith('balance_monitor_lease_changes_total{reason="takeover"}')
        )
        assert float(taken.split()[-1]) >= 12  # the cut replica's, taken over
        cut.send(signal.SIGTERM)
        assert await cut.wait() == 0
    finally:
        await proxy.aclose()


async def _until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            if found := await check():
                return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.1)
