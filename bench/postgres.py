"""``make bench``, PostgreSQL part: the daemon on a PostgreSQL state beside SQLite, replicas.

With PostgreSQL 15 on the machine (``tests/pg_helpers.py`` starts a throwaway cluster, as the
tests do), in the same run as the rest of ``make bench``:

* CPU per poll of the daemon at 10,000 accounts with a SQLite state and with a PostgreSQL state
  (the same fake API and bodies, one after the other), and the database server's CPU per poll;
* three replicas sharing ``--replica-sources`` sources of 2 accounts at a 10 s interval: each
  replica's CPU share, the database's, and the polls served against those the schedule asks;
* takeover times: after ``kill -9`` of a replica (lease 3 s) and after SIGTERM, median and
  worst of a few tries, with 30 sources over three replicas at a 1 s interval.

Figures go under "PostgreSQL state and replicas" in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procstat
from fakeapi import Trip
from harness import Measurement, daemon_argv, daemon_config, measure
from processes import ROOT, BenchError, Child, FakeApiProcess, Receiver, log

sys.path.insert(0, str(ROOT / "tests"))
import pg_helpers

CLAIMS = 500
TAKEOVER_LEASE = 3.0
TAKEOVER_SOURCES = 30
TAKEOVER_TRIES = 3
REPLICAS = 3


@dataclass
class PgReport:
    sqlite: Measurement | None = None
    postgres: Measurement | None = None
    db_cpu_per_poll: float | None = None
    replicas: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, tuple[float, float]] = field(default_factory=dict)  # cpu, wall per row
    kill: list[float] = field(default_factory=list)
    term: list[float] = field(default_factory=list)
    note: str | None = None


def available() -> str | None:
    """Why PostgreSQL cannot be measured here, or None."""
    if not (pg_helpers.BIN / "initdb").exists():
        return f"{pg_helpers.BIN / 'initdb'} not found (apt-get install postgresql-15)"
    return None


def server_cpu(directory: Path) -> float:
    """CPU seconds the cluster's processes used so far: the postmaster's own and its reaped
    children's, plus each live child's."""
    master = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    tick = 100.0

    def fields(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()

    own = fields(master)
    total = sum(int(x) for x in own[11:15]) / tick  # utime stime cutime cstime
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            f = fields(int(proc.name))
            if int(f[1]) == master:
                total += (int(f[11]) + int(f[12])) / tick
    return total


async def run(
    api: FakeApiProcess,
    receiver: Receiver,
    workdir: Path,
    *,
    accounts: int,
    polls: int,
    trips: list[Trip],
    changed: list[int],
    idle_api: FakeApiProcess | None,
    replica_sources: int,
    seconds: float,
) -> PgReport:
    report = PgReport()
    why = available()
    if why is not None:
        report.note = why
        return report
    cluster = pg_helpers.acquire()
    directory = pg_helpers._run_dir()
    try:
        log(f"{accounts:,} accounts: the daemon on SQLite, then on PostgreSQL")
        report.sqlite = await measure(
            api, receiver, workdir, runner="daemon", accounts=accounts, polls=polls,
            trips=trips, changed=changed, tag="-sqlite-ref",
        )  # fmt: skip
        url = _url(cluster)
        before = server_cpu(directory)
        report.postgres = await measure(
            api, receiver, workdir, runner="daemon", accounts=accounts, polls=polls,
            trips=trips, changed=changed, tag="-postgresql", state_url=url,
        )  # fmt: skip
        report.db_cpu_per_poll = (server_cpu(directory) - before) / (polls + 2)
        log(f"outbox: {CLAIMS} rows taken and marked delivered, SQLite then PostgreSQL")
        report.claims = await claim_costs(workdir, cluster, directory)
        if idle_api is not None:
            log(f"replicas: {REPLICAS} x {replica_sources} sources of 2 accounts, {seconds:g}s")
            report.replicas = await replicas_run(
                idle_api, receiver, workdir, cluster, directory, replica_sources, seconds
            )
            log(f"takeover: {TAKEOVER_TRIES} x kill -9, {TAKEOVER_TRIES} x SIGTERM")
            report.kill, report.term = await takeovers(idle_api, receiver, workdir, cluster)
    finally:
        pg_helpers.release()
    return report


async def claim_costs(
    workdir: Path, cluster: pg_helpers.Cluster, directory: Path
) -> dict[str, tuple[float, float]]:
    """What taking the next row of a sink and marking it delivered costs (the delivery loop's
    two store calls), on SQLite (``next_pending``) and on PostgreSQL (a claim with ``FOR UPDATE
    SKIP LOCKED``), in this process: CPU (this process, plus the server's on PostgreSQL) and
    wall time per row."""
    from monitor.store import SqliteStore, Store
    from monitor.store.postgres import PostgresStore

    sys.path.insert(0, str(ROOT / "tests"))
    from store_helpers import notification

    async def cycle(store: Store, server: Callable[[], float]) -> tuple[float, float]:
        rows = [(notification(f"n{i}"), "hook", "src") for i in range(CLAIMS)]
        await store.release(rows, [], time.time())
        cpu, wall, db = time.process_time(), time.perf_counter(), server()
        for _ in range(CLAIMS):
            row = await store.next_pending("hook")
            if row is None:
                raise BenchError("outbox: a queued row was not found")
            await store.mark(row.seq, "delivered", now=time.time())
        cpu = time.process_time() - cpu + server() - db
        return cpu / CLAIMS, (time.perf_counter() - wall) / CLAIMS

    sqlite = await SqliteStore.open(workdir / "claims.db")
    try:
        out = {"sqlite": await cycle(sqlite, lambda: 0.0)}
    finally:
        await sqlite.close()
    pg = await PostgresStore.open(_url(cluster), None, replica="bench")
    try:
        out["postgresql"] = await cycle(pg, lambda: server_cpu(directory))
    finally:
        await pg.close()
    return out


def _url(cluster: pg_helpers.Cluster) -> str:
    return cluster.url(cluster.new_schema(), with_password=True)


async def _start(name: str, config: Path) -> Child:
    """A replica (its name in its logs: hostname:pid)."""
    return await Child.start(name, daemon_argv(config))


async def replicas_run(  # noqa: PLR0917
    api: FakeApiProcess,
    receiver: Receiver,
    workdir: Path,
    cluster: pg_helpers.Cluster,
    directory: Path,
    sources: int,
    seconds: float,
) -> dict[str, Any]:
    rundir = workdir / "replicas"
    rundir.mkdir()
    config = rundir / "config.toml"
    clients = [f"rp-{i}" for i in range(sources)]
    config.write_text(
        daemon_config(
            url=[api.url(c) for c in clients],
            receiver=receiver.url,
            state=_url(cluster),
            interval=10,
            lease="15s",
        )
    )
    children = [await _start(f"replica-{i}", config) for i in range(REPLICAS)]
    try:
        started = time.monotonic()
        while len(_owned_by(children)) < sources:
            if any(c.process.returncode is not None for c in children):
                raise BenchError("a replica exited:\n" + "\n".join(c.problem() for c in children))
            if time.monotonic() - started > 600:
                raise BenchError("replicas: sources not all owned after 600s")
            await asyncio.sleep(0.5)
        spread = time.monotonic() - started
        await asyncio.sleep(12.0)  # every source polled once more, the rebalancing done
        cpus = [procstat.probe(c.pid).cpu for c in children]
        db = server_cpu(directory)
        served = await api.requests()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpus = [procstat.probe(c.pid).cpu - b for c, b in zip(children, cpus, strict=True)]
        db = server_cpu(directory) - db
        after = await api.requests()
    finally:
        for child in children:
            await child.stop()
    polled = sum(after.get(c, 0) - served.get(c, 0) for c in clients)
    missed = sum(1 for c in clients if after.get(c, 0) - served.get(c, 0) < int(elapsed // 10))
    return {
        "sources": sources,
        "seconds": elapsed,
        "shares": [c / elapsed for c in cpus],
        "db_share": db / elapsed,
        "polls": polled,
        "expected": sources * elapsed / 10,
        "behind": missed,
        "spread_seconds": spread,
    }


async def takeovers(
    api: FakeApiProcess, receiver: Receiver, workdir: Path, cluster: pg_helpers.Cluster
) -> tuple[list[float], list[float]]:
    kill: list[float] = []
    term: list[float] = []
    for attempt in range(TAKEOVER_TRIES * 2):
        hard = attempt % 2 == 0
        rundir = workdir / f"takeover-{uuid.uuid4().hex[:6]}"
        rundir.mkdir()
        config = rundir / "config.toml"
        config.write_text(
            daemon_config(
                url=[api.url(f"to-{attempt}-{i}") for i in range(TAKEOVER_SOURCES)],
                receiver=receiver.url,
                state=_url(cluster),
                interval=1,
                lease=f"{TAKEOVER_LEASE:g}s",
            )
        )
        children = [await _start(f"to-{i}", config) for i in range(REPLICAS)]
        try:
            owned = await _balanced(children)
            victim = children[0]
            mine = owned[id(victim)]
            at = time.monotonic()
            if hard:
                victim.process.kill()
            else:
                victim.process.send_signal(signal.SIGTERM)
            await victim.process.wait()
            others = children[1:]
            while not mine <= _owned_by(others):
                if time.monotonic() - at > 60:
                    raise BenchError("takeover: not done within 60s")
                await asyncio.sleep(0.02)
            (kill if hard else term).append(time.monotonic() - at)
        finally:
            for child in children:
                await child.stop()
    return kill, term


def _owned_by(children: list[Child]) -> set[str]:
    owned: set[str] = set()
    for child in children:
        held: set[str] = set()
        for e in child.events:
            name = e.get("event")
            if name == "source_acquired":
                held.add(e["source"])
            elif name in ("source_lost", "source_released"):
                held.discard(e["source"])
        owned |= held
    return owned


async def _balanced(children: list[Child]) -> dict[int, set[str]]:
    share = -(-TAKEOVER_SOURCES // len(children))
    started = time.monotonic()
    while True:
        owned = {id(c): _owned_by([c]) for c in children}
        total = set().union(*owned.values())
        if len(total) == TAKEOVER_SOURCES and all(0 < len(o) <= share for o in owned.values()):
            return owned
        if time.monotonic() - started > 60:
            raise BenchError("takeover: replicas never balanced")
        await asyncio.sleep(0.1)


def render(report: PgReport, accounts: int) -> str:
    lines = ["", "## PostgreSQL state and replicas", ""]
    if report.note is not None:
        return "\n".join([*lines, f"Not measured: {report.note}", ""])
    s, p = report.sqlite, report.postgres
    if s is not None and p is not None:
        lines += [
            f"The daemon at {accounts:,} accounts, the same bodies, one after the other in this"
            " run (CPU per measured poll, schedstat):",
            "",
            "| state | daemon CPU/poll | database server CPU/poll | ratio to SQLite (daemon) |",
            "|---|---|---|---|",
            f"| SQLite (reference) | {s.cpu * 1000:.1f} ms | - | 1.00x |",
            f"| PostgreSQL 15 | {p.cpu * 1000:.1f} ms | {(report.db_cpu_per_poll or 0) * 1000:.1f}"
            f" ms | {p.cpu / s.cpu:.2f}x |",
            "",
            "Daemon plus server on PostgreSQL:"
            f" {(p.cpu + (report.db_cpu_per_poll or 0)) / s.cpu:.2f}x"
            " SQLite's daemon CPU (the server's figure is per poll over the whole run, start-up"
            " and baseline included).",
            "",
        ]
    if report.claims:
        (sc, sw), (pc, pw) = report.claims["sqlite"], report.claims["postgresql"]
        lines += [
            f"An outbox row taken and marked delivered ({CLAIMS} rows, in the bench process; CPU"
            " includes the server's on PostgreSQL): SQLite"
            f" {sc * 1e6:.0f} us CPU / {sw * 1e6:.0f} us wall; PostgreSQL (claim with FOR UPDATE"
            f" SKIP LOCKED) {pc * 1e6:.0f} us CPU / {pw * 1e6:.0f} us wall ({pc / sc:.1f}x CPU).",
            "",
        ]
    r = report.replicas
    if r:
        shares = ", ".join(f"{x * 100:.1f}%" for x in r["shares"])
        lines += [
            f"{REPLICAS} replicas sharing {r['sources']:,} sources x 2 accounts at 10 s, over"
            f" {r['seconds']:.0f} s: CPU share per replica {shares}; database server"
            f" {r['db_share'] * 100:.1f}%; polls served {r['polls']:,} of {r['expected']:,.0f}"
            f" the schedule asks ({r['behind']} sources below one poll per interval); every"
            f" source owned {r['spread_seconds']:.1f} s after start.",
            "",
        ]
    if report.kill or report.term:

        def fmt(values: list[float]) -> str:
            if not values:
                return "-"
            return f"median {statistics.median(values):.2f} s, worst {max(values):.2f} s"

        lines += [
            f"Takeover ({TAKEOVER_SOURCES} sources over {REPLICAS} replicas, 1 s interval, lease"
            f" {TAKEOVER_LEASE:g} s; until the others logged every source of the stopped one as"
            " theirs):",
            "",
            f"- after `kill -9`: {fmt(report.kill)} ({len(report.kill)} tries; bound: lease +"
            " one round)",
            f"- after SIGTERM: {fmt(report.term)} ({len(report.term)} tries)",
            "",
        ]
    return "\n".join(lines)
