"""One measured run of one runner at one size, and the many-sources run.

A run announces its client to the fake API, starts the process, tells the API its pid, and waits
until the request after the last measured poll arrives (the API holds it, so the process sits
idle). The API read the process's counters as each request arrived; the difference between the
arrival of poll 1 and of that last request is what the measured polls cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import procstat
from fakeapi import DAYTRADES, LOW_CASH, RESTRICTION, TOKEN, Trip
from processes import BENCH, PYTHON, BenchError, Child, FakeApiProcess, Hit, Receiver

IDLE_ACCOUNTS: Final = 2
MANY_SOURCES: Final = 1_000
MANY_INTERVAL: Final = 10
#: How long a run may take to reach its last measured poll before it is given up.
RUN_TIMEOUT: Final = 900.0
RUNNERS: Final = ("daemon", "stdlib", "floor")

RULES_TOML: Final = f"""
[[rules]]
name = "{RESTRICTION}"
type = "restriction_change"
severity = "critical"

[[rules]]
name = "{LOW_CASH}"
type = "threshold"
field = "cash_to_withdraw"
op = "<"
value = 1000
accounts = ["*@vision"]

[[rules]]
name = "{DAYTRADES}"
type = "threshold"
field = "daytrades_count"
op = ">="
value = 3
"""


def extra_rules(count: int) -> str:
    """``count`` threshold rules beside the three example ones (the rules-scaling case), each on
    a field and limit that the bench's bodies never cross, so none of them fires: what they cost
    is looking, not notifying."""
    fields = ("cash", "margin_buying_power", "non_margin_buying_power", "cash_to_withdraw")
    return "".join(
        f'\n[[rules]]\nname = "extra-{i:03d}"\ntype = "threshold"\n'
        f'field = "{fields[i % len(fields)]}"\nop = "<"\nvalue = {-1000 - i}\n'
        + ('accounts = ["*@cor"]\n' if i % 2 else "")
        for i in range(count)
    )


def interval_for(accounts: int) -> float:
    """Seconds between polls: long enough that a poll rarely runs into the next one, short
    enough that a warm-up of 150 polls at 100,000 accounts takes minutes, not a quarter hour."""
    if accounts <= 10_000:
        return 1.0
    return 2.0


# --------------------------------------------------------------------------- one measured run


@dataclass
class Measurement:
    """One runner at one size: costs per measured poll."""

    runner: str
    accounts: int
    polls: int
    interval: float
    cpu: float  # seconds per poll, schedstat
    cpu_ticks: float  # seconds per poll, utime + stime
    walls: list[float]  # seconds, each measured poll
    baseline_wall: float | None
    hwm: int  # bytes
    rss: int  # bytes
    write_bytes: float  # per poll
    files_growth: float  # per poll, state db + wal
    changed: float  # accounts changed per measured poll
    warmup: int = 0
    rules: int = 3
    latency_response: list[float] = field(default_factory=list)
    latency_poll_end: list[float] = field(default_factory=list)
    missing: int = 0
    notes: list[str] = field(default_factory=list)


def daemon_config(
    *,
    url: str | list[str],
    receiver: str,
    state: Path | str,
    interval: float,
    lease: str | None = None,
    extra: int = 0,
) -> str:
    """A config for ``balance-monitor run``: ``[api]``, or ``[[sources]]`` for a list of URLs;
    ``state`` a SQLite file, or a ``postgresql://`` URL (with ``lease``)."""
    if isinstance(url, str):
        sources = f'[api]\nurl = "{url}"\ntoken = "{TOKEN}"\ntimeout = "5m"\n'
    else:
        sources = "".join(
            f'[[sources]]\nname = "s{i:04d}"\nurl = "{u}"\ntoken = "{TOKEN}"\n\n'
            for i, u in enumerate(url)
        )
    return (
        f"{sources}\n"
        f'[schedule]\ninterval = "{interval:g}s"\n\n'
        + (
            f'[state]\nurl = "{state}"\n' + (f'lease = "{lease}"\n' if lease else "") + "\n"
            if isinstance(state, str)
            else f'[state]\npath = "{state}"\n\n'
        )
        + '[log]\nlevel = "info"\nformat = "json"\n\n'
        f'[[sinks]]\nname = "receiver"\ntype = "webhook"\nurl = "{receiver}"\ntimeout = "30s"\n'
        f"{RULES_TOML}{extra_rules(extra)}"
    )


def daemon_argv(config: Path) -> list[str]:
    script = Path(PYTHON).parent / "balance-monitor"
    if script.exists():
        return [str(script), "run", "--config", str(config)]
    return [PYTHON, "-m", "monitor", "run", "--config", str(config)]


async def measure(
    api: FakeApiProcess,
    receiver: Receiver,
    workdir: Path,
    *,
    runner: str,
    accounts: int,
    polls: int,
    trips: Sequence[Trip],
    changed: Sequence[int],
    profile: Path | None = None,
    tag: str = "",
    state_url: str | None = None,
    warmup: int = 0,
    extra: int = 0,
) -> Measurement:
    """Run one runner for a baseline and ``polls`` polls; what the measured polls cost.

    With ``profile``, py-spy samples the measured polls into that file (raw collapsed stacks);
    its sampling costs CPU, so such a run is for the profile, not for the figures.
    """
    interval = interval_for(accounts)
    client = f"{runner}-{accounts}{tag}"
    files: list[Path] = []
    if runner == "daemon":
        rundir = workdir / client
        rundir.mkdir()
        state = rundir / "state.db"
        files = [state, Path(f"{state}-wal")] if state_url is None else []
        config = rundir / "config.toml"
        config.write_text(
            daemon_config(
                url=api.url(client),
                receiver=receiver.url,
                state=state if state_url is None else state_url,
                interval=interval,
                extra=extra,
            )
        )
        argv = daemon_argv(config)
        baseline_event, poll_event = "baseline_recorded", "poll_ok"
    else:
        argv = [PYTHON, "-u", str(BENCH / "reference.py"), runner, "--url", api.url(client)]
        argv += ["--token", TOKEN, "--interval", f"{interval:g}"]
        baseline_event, poll_event = "baseline", "poll"
    receiver.hits.clear()
    await api.expect(client)
    child = await Child.start(client, argv)
    profiler: Child | None = None
    try:
        await api.watch(client, child.pid, files)
        if profile is not None:
            await _until_request(api, child, client, warmup + 2)
            profiler = await Child.start("py-spy", py_spy_argv(child.pid, profile))
        await _until_request(api, child, client, warmup + polls + 2)
        if runner == "daemon":
            await _until_delivered(receiver, trips)
        stats = await api.stats(client)
        events = list(child.events)
        hits = list(receiver.hits)
    finally:
        if profiler is not None:
            await profiler.stop(signal.SIGINT)  # py-spy writes its file on SIGINT
        with contextlib.suppress(aiohttp.ClientError):
            await api.release(client)
        await child.stop()
    first = procstat.Probe.from_dict(stats["probes"][str(warmup + 1)])
    last = procstat.Probe.from_dict(stats["probes"][str(warmup + polls + 1)])
    polled = [e for e in events if e.get("event") == poll_event]
    baseline = [e for e in events if e.get("event") == baseline_event]
    result = Measurement(
        runner=runner,
        accounts=accounts,
        polls=polls,
        interval=interval,
        cpu=(last.cpu - first.cpu) / polls,
        cpu_ticks=(last.cpu_ticks - first.cpu_ticks) / polls,
        walls=[e["duration_ms"] / 1000 for e in polled[warmup : warmup + polls]],
        baseline_wall=baseline[0]["duration_ms"] / 1000 if baseline else None,
        hwm=last.hwm,
        rss=last.rss,
        write_bytes=(last.write_bytes - first.write_bytes) / polls,
        files_growth=(last.files - first.files) / polls,
        changed=(
            statistics.fmean(changed[warmup + 1 : warmup + polls + 1])
            if len(changed) > warmup + polls
            else 0.0
        ),
        warmup=warmup,
        rules=3 + extra,
    )
    if runner == "daemon":
        _latencies(result, trips, hits, stats["served"], polled)
        result.notes += [
            f"{e.get('level')}: {e.get('event')}"
            for e in events
            if e.get("level") in ("warning", "error", "critical")
            and e.get("event") not in ("poll_failed", "stop_requested")
        ]
    return result


async def _until_request(api: FakeApiProcess, child: Child, client: str, wanted: int) -> None:
    """Until the client made ``wanted`` requests; a ``BenchError`` if it dies or stalls."""
    deadline = time.monotonic() + RUN_TIMEOUT + 3 * wanted  # a long warm-up takes its time
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(
                f"{client}: no request {wanted} in {RUN_TIMEOUT:g}s\n{child.problem()}"
            )
        waiting = asyncio.ensure_future(api.wait(client, wanted, min(left, 5.0)))
        exited = asyncio.ensure_future(child.process.wait())
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done and waiting.result() >= wanted:
            exited.cancel()
            return
        if exited in done:
            waiting.cancel()
            raise BenchError(
                f"{client} exited ({child.process.returncode}) early:\n{child.problem()}"
            )
        exited.cancel()


async def _until_delivered(receiver: Receiver, trips: Sequence[Trip]) -> None:
    """Until every trip's notification arrived, or 10 s passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while True:
                receiver.arrived.clear()  # before looking, so no arrival goes unnoticed
                if not _missing(receiver.hits, trips):
                    return
                await receiver.arrived.wait()


def _find(hits: Sequence[Hit], trip: Trip) -> Hit | None:
    for hit in hits:
        p = hit.payload
        if (
            p.get("account_number") == trip.account_number
            and p.get("rule") == trip.rule
            and p.get("status") == "firing"
        ):
            return hit
    return None


def _missing(hits: Sequence[Hit], trips: Sequence[Trip]) -> int:
    return sum(1 for trip in trips if _find(hits, trip) is None)


def _latencies(
    result: Measurement,
    trips: Sequence[Trip],
    hits: Sequence[Hit],
    served: dict[str, list[float]],
    polled: Sequence[dict[str, Any]],
) -> None:
    """Notification arrival minus (a) the end of the response that carried the change and
    (b) the time the daemon logged the end of that poll (``poll_ok``)."""
    ended = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in polled]
    for trip in trips:
        hit = _find(hits, trip)
        if hit is None:
            result.missing += 1
            continue
        result.latency_response.append(hit.at - served[str(trip.poll)][1])
        if trip.poll <= len(ended):
            result.latency_poll_end.append(hit.at - ended[trip.poll - 1])


# --------------------------------------------------------------------------- profile


def py_spy_argv(pid: int, output: Path) -> list[str]:
    found = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if found is None:
        raise BenchError("--profile needs py-spy: .venv/bin/python -m pip install py-spy")
    return [
        found, "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
        "--format", "raw", "--output", str(output),
    ]  # fmt: skip


# --------------------------------------------------------------------------- many sources


@dataclass
class ManySources:
    sources: int
    interval: float
    seconds: float
    cpu: float  # seconds of CPU in the window
    polls: int  # requests served in the window
    rss: int
    hwm: int
    startup: float  # seconds from start to every baseline recorded
    expected: int = 0  # polls the window should hold (sources x seconds / interval)
    lateness_p99: float = 0.0  # seconds: a poll's gap after the previous one beyond the interval
    lateness_max: float = 0.0
    missed: list[str] = field(default_factory=list)  # daemon log lines about missed jobs

    @property
    def share(self) -> float:
        return self.cpu / self.seconds


def sources_supported() -> bool:
    from monitor.config import Config

    return "sources" in Config.model_fields


async def many_sources(
    api: FakeApiProcess,
    receiver: Receiver,
    workdir: Path,
    seconds: float,
    count: int = MANY_SOURCES,
) -> ManySources:
    rundir = workdir / f"many-sources-{count}"
    rundir.mkdir()
    config = rundir / "config.toml"
    urls = [api.url(f"ms{count}-{i}") for i in range(count)]
    config.write_text(
        daemon_config(
            url=urls, receiver=receiver.url, state=rundir / "state.db", interval=MANY_INTERVAL
        )
    )
    started = time.monotonic()
    child = await Child.start("many-sources", daemon_argv(config))
    try:
        while child.count("baseline_recorded") < count:
            if child.process.returncode is not None:
                raise BenchError(f"many-sources daemon exited early:\n{child.problem()}")
            if time.monotonic() - started > RUN_TIMEOUT:
                raise BenchError(f"many-sources: baselines not done\n{child.problem()}")
            await asyncio.sleep(0.1)
        startup = time.monotonic() - started
        await asyncio.sleep(1.0)  # let the last baselines' commits and logs settle
        before, served_before = procstat.probe(child.pid), await api.requests()
        await asyncio.sleep(seconds)
        after, served_after = procstat.probe(child.pid), await api.requests()
        arrivals = await api.arrivals()
        missed = [
            f"{e.get('event')}: {e.get('message') or e.get('job') or ''}".strip()
            for e in child.events
            if "miss" in str(e.get("event", "")) or "miss" in str(e.get("message", ""))
        ]
    finally:
        await child.stop()
    polls = sum(
        served_after.get(f"ms{count}-{i}", 0) - served_before.get(f"ms{count}-{i}", 0)
        for i in range(count)
    )
    late = _lateness(
        [arrivals.get(f"ms{count}-{i}", []) for i in range(count)],
        MANY_INTERVAL,
        (before.at, after.at),
    )
    return ManySources(
        sources=count,
        interval=MANY_INTERVAL,
        seconds=after.at - before.at,
        cpu=after.cpu - before.cpu,
        polls=polls,
        rss=after.rss,
        hwm=after.hwm,
        startup=startup,
        expected=round(count * (after.at - before.at) / MANY_INTERVAL),
        lateness_p99=_quantile(late, 0.99),
        lateness_max=max(late, default=0.0),
        missed=missed[:5],
    )


def _lateness(
    arrivals: Sequence[Sequence[float]], interval: float, window: tuple[float, float]
) -> list[float]:
    """How late each poll in ``window`` came: its gap after the source's previous poll, beyond
    the interval (0 when on time). A skipped poll shows as a gap of two intervals."""
    start, end = window
    late = []
    for times in arrivals:
        for before, at in itertools.pairwise(times):
            if start <= at <= end:
                late.append(max(0.0, at - before - interval))
    return late


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- alert storm

STORM_INTERVAL: Final = 5.0
STORM_TIMEOUT: Final = 120.0


@dataclass
class Storm:
    notifications: int  # expected: one restriction_change per account
    delivered: int  # arrived at the receiver within STORM_TIMEOUT
    first: float  # seconds from the end of the response that carried the storm
    last: float
    from_poll_end: float  # seconds from the poll's poll_ok line to the last arrival
    cpu: float  # the daemon's CPU seconds from that poll's request to the next one
    sink: str


async def storm(api: FakeApiProcess, receiver: Receiver, workdir: Path, accounts: int) -> Storm:
    """Every account restricted in one poll: how long until the webhook has them all."""
    client = "storm"
    rundir = workdir / client
    rundir.mkdir()
    state = rundir / "state.db"
    config = rundir / "config.toml"
    config.write_text(
        daemon_config(
            url=api.url(client), receiver=receiver.url, state=state, interval=STORM_INTERVAL
        )
    )
    receiver.hits.clear()
    await api.expect(client)
    child = await Child.start(client, daemon_argv(config))
    try:
        await api.watch(client, child.pid, [state, Path(f"{state}-wal")])
        await _until_request(api, child, client, 2)
        deadline = time.monotonic() + STORM_TIMEOUT
        while time.monotonic() < deadline and _storm_hits(receiver) < accounts:
            receiver.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await receiver.arrived.wait()
        await _until_request(api, child, client, 3)
        stats = await api.stats(client)
        events = list(child.events)
        hits = [h for h in receiver.hits if h.payload.get("rule") == RESTRICTION]
    finally:
        with contextlib.suppress(aiohttp.ClientError):
            await api.release(client)
        await child.stop()
    served_end = stats["served"]["1"][1]
    polled = [e for e in events if e.get("event") == "poll_ok"]
    poll_end = datetime.fromisoformat(polled[0]["timestamp"]).timestamp() if polled else 0.0
    times = sorted(h.at for h in hits)
    first = procstat.Probe.from_dict(stats["probes"]["1"])
    after = procstat.Probe.from_dict(stats["probes"]["2"])
    return Storm(
        notifications=accounts,
        delivered=len({h.payload.get("account_number") for h in hits}),
        first=times[0] - served_end if times else 0.0,
        last=times[-1] - served_end if times else 0.0,
        from_poll_end=times[-1] - poll_end if times and poll_end else 0.0,
        cpu=after.cpu - first.cpu,
        sink="webhook",
    )


def _storm_hits(receiver: Receiver) -> int:
    return sum(1 for h in receiver.hits if h.payload.get("rule") == RESTRICTION)
