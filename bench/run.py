"""``make bench``: what one poll costs the real daemon, beside two references, per book size.

    python bench/run.py [--sizes 1000,10000,100000] [--polls 10] [--quick]
                        [--output FILE] [--json FILE] [--profile FILE]

For each size a synthetic balances API (:mod:`fakeapi`, a process of its own) serves the accounts,
about 1% of them changing between polls and three tripping one of the example rules each poll. In
turn, each in a process of its own and against the same API and bodies:

* the daemon, ``balance-monitor run`` with the three example rules and a webhook sink pointing at
  a loopback receiver here that notes when each notification arrives;
* reference (a), the standard-library loop people write instead (:mod:`reference` ``stdlib``);
* reference (b), the parse floor: fetch and ``orjson.loads`` (:mod:`reference` ``floor``).

Each makes a baseline poll and then ``--polls`` measured ones. The fake API reads the process's
counters (:mod:`procstat`) as each request arrives, so the cost of the measured polls is the
difference between the arrivals of the first and of the one after the last: the polls, the
deliveries and the idle time between them, nothing of the start-up or the baseline. Then come
an idle daemon (2 accounts, nothing changes) and, when the config has ``[[sources]]``, 1,000
sources of 2 accounts at a 10 s interval. With PostgreSQL 15 installed (``--no-postgres`` to
skip), :mod:`postgres` then measures the daemon at 10,000 accounts on a PostgreSQL state beside
SQLite, three replicas sharing ``--replica-sources`` sources, and takeover times; last, the
dashboard's overview at 1,000 accounts (:mod:`dashboard`). A Markdown report goes to stdout;
progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import postgres
import procstat
import stream
from fakeapi import Trip
from harness import (
    IDLE_ACCOUNTS,
    MANY_SOURCES,
    RUNNERS,
    interval_for,
    many_sources,
    measure,
    sources_supported,
    storm,
)
from processes import BENCH, PYTHON, BenchError, FakeApiProcess, Receiver, log
from report import Report, hotspots, machine, render

FULL_SIZES: Final = (1_000, 10_000, 100_000)
QUICK_SIZES: Final = (1_000, 10_000)
DEFAULT_POLLS: Final = 10
QUICK_POLLS: Final = 4
#: Polls before the measured ones: the steady state (changed records scattered in memory, the
#: garbage collector's generations filled) takes 100-200 polls to reach.
DEFAULT_WARMUP: Final = 150
QUICK_WARMUP: Final = 5
#: The many-sources curve: sources of 2 accounts each, every 10 s, in one daemon.
FULL_MANY: Final = (1_000, 5_000, 10_000, 20_000)
QUICK_MANY: Final = (1_000,)
#: Threshold rules added to the three example ones at 10,000 accounts (the rules case).
FULL_RULES: Final = (10, 100)
QUICK_RULES: Final = (100,)
RULES_ACCOUNTS: Final = 10_000
#: The simulated long run of the state database (bench/dbsize.py), in days.
FULL_DAYS: Final = 365
QUICK_DAYS: Final = 7
#: Accounts restricted in one poll (the alert storm), one webhook.
FULL_STORM: Final = 10_000
QUICK_STORM: Final = 2_000
CHANGE_RATE: Final = 0.01
TRIPS_PER_POLL: Final = 3
MANY_SECONDS: Final = 60.0
QUICK_MANY_SECONDS: Final = 20.0


async def bench(
    sizes: list[int],
    polls: int,
    many_seconds: float,
    profile: Path | None = None,
    replica_sources: int | None = 3_000,
    *,
    warmup: int = 0,
    many: Sequence[int] = (MANY_SOURCES,),
    rules: Sequence[int] = (),
    days: int = 0,
    storm_accounts: int = 0,
) -> Report:
    report = Report(machine=machine(), polls=polls, sizes=sizes, warmup=warmup)
    workdir = Path(tempfile.mkdtemp(prefix="balance-monitor-bench-", dir=_state_parent()))
    report.fs_type = procstat.filesystem_type(workdir)
    load_before = os.getloadavg()[0]
    receiver = Receiver()
    await receiver.start()
    log(f"state databases under {workdir} ({report.fs_type})")

    async def each_runner(api: FakeApiProcess, accounts: int, label: str, warm: int) -> None:
        plan = await api.plan()
        trips = [Trip(*t) for t in plan["trips"]]
        for runner in RUNNERS:
            log(f"{label}: {runner}, {warm} + {polls} polls every {interval_for(accounts):g}s")
            report.results[(accounts, runner)] = await measure(
                api, receiver, workdir, runner=runner, accounts=accounts, polls=polls,
                trips=trips, changed=plan["changed"], warmup=warm,
            )  # fmt: skip
        if accounts == RULES_ACCOUNTS:
            for extra in rules:
                log(f"{label}: the daemon with {extra} more threshold rules")
                report.rules[extra] = await measure(
                    api, receiver, workdir, runner="daemon", accounts=accounts, polls=polls,
                    trips=trips, changed=plan["changed"], warmup=warm, extra=extra,
                    tag=f"-rules{extra}",
                )  # fmt: skip
        if profile is not None and accounts == max(sizes):
            log(f"{label}: the daemon again, under py-spy")
            await measure(
                api, receiver, workdir, runner="daemon", accounts=accounts, polls=polls,
                trips=trips, changed=plan["changed"], profile=profile, tag="-profiled",
                warmup=warm,
            )  # fmt: skip
            report.hotspots, report.profiled = hotspots(profile), accounts

    try:
        async with FakeApiProcess.running(
            accounts=IDLE_ACCOUNTS, polls=polls, change_rate=0.0, trips=0
        ) as api:
            await each_runner(api, IDLE_ACCOUNTS, f"idle, {IDLE_ACCOUNTS} accounts", 0)
            if sources_supported():
                for count in many:
                    log(f"many sources: {count:,} x {IDLE_ACCOUNTS} accounts, {many_seconds:g}s")
                    report.many_curve.append(
                        await many_sources(api, receiver, workdir, many_seconds, count)
                    )
                report.many = next(
                    (m for m in report.many_curve if m.sources == MANY_SOURCES), None
                )
            else:
                report.many_note = "many-sources: not supported by this version (needs [[sources]])"
                log(report.many_note)
        for size in sizes:
            log(f"{size:,} accounts: generating the bodies")
            async with FakeApiProcess.running(
                accounts=size, polls=polls, change_rate=CHANGE_RATE, trips=TRIPS_PER_POLL,
                warmup=warmup,
            ) as api:  # fmt: skip
                await each_runner(api, size, f"{size:,} accounts", warmup)
                if replica_sources is not None and size == _pg_size(sizes):
                    await _postgres(report, api, receiver, workdir, size, polls, many_seconds,
                                    replica_sources)  # fmt: skip
        if storm_accounts:
            log(f"alert storm: {storm_accounts:,} accounts restricted in one poll")
            async with FakeApiProcess.running(
                accounts=storm_accounts, polls=1, change_rate=0.0, trips=0, storm=True
            ) as api:
                report.storm = await storm(api, receiver, workdir, storm_accounts)
        if days:
            log(f"the state database over {days} simulated days")
            report.dbsize = await _dbsize(days)
    finally:
        await receiver.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report.load = (load_before, os.getloadavg()[0])
    return report


def _pg_size(sizes: list[int]) -> int:
    """The size the PostgreSQL state is measured at: 10,000 accounts, or the nearest."""
    return min(sizes, key=lambda n: abs(n - 10_000))


async def _postgres(  # noqa: PLR0917
    report: Report,
    api: FakeApiProcess,
    receiver: Receiver,
    workdir: Path,
    size: int,
    polls: int,
    seconds: float,
    replica_sources: int,
) -> None:
    plan = await api.plan()
    async with FakeApiProcess.running(
        accounts=IDLE_ACCOUNTS, polls=polls, change_rate=0.0, trips=0
    ) as idle:
        measured = await postgres.run(
            api, receiver, workdir, accounts=size, polls=polls,
            trips=[Trip(*t) for t in plan["trips"]], changed=plan["changed"], idle_api=idle,
            replica_sources=replica_sources, seconds=seconds,
        )  # fmt: skip
    report.postgres = postgres.render(measured, size)


async def _dbsize(days: int) -> str:
    """bench/dbsize.py in a process of its own (the same interpreter and path as the daemon)."""
    process = await asyncio.create_subprocess_exec(
        PYTHON, str(BENCH / "dbsize.py"), f"--days={days}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise BenchError(f"dbsize.py exited with {process.returncode}")
    return out.decode()


def _counts(text: str) -> list[int]:
    return [n for n in (int(s.replace("_", "")) for s in text.split(",") if s.strip()) if n > 0]


def _state_parent() -> str | None:
    """Somewhere on a disk, so that write_bytes counts: /var/tmp unless TMPDIR says otherwise."""
    if os.environ.get("TMPDIR"):
        return None
    return "/var/tmp" if Path("/var/tmp").is_dir() else None  # noqa: S108


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated book sizes (default 1000,10000,100000)")
    parser.add_argument(
        "--polls", type=int, help=f"measured polls per run (default {DEFAULT_POLLS})"
    )
    parser.add_argument(
        "--stream",
        choices=("also", "only", "no"),
        default="also",
        help="the account stream's latency and CPU per push (bench/stream.py): after the polls "
        "(also, the default), alone (only), or not (no)",
    )
    parser.add_argument(
        "--warmup", type=int, help=f"polls before the measured ones (default {DEFAULT_WARMUP})"
    )
    parser.add_argument(
        "--many",
        help="comma-separated source counts for the many-sources curve (default "
        + ",".join(map(str, FULL_MANY))
        + "; 0: none)",
    )
    parser.add_argument(
        "--rules",
        help="comma-separated counts of threshold rules added at 10,000 accounts (default "
        + ",".join(map(str, FULL_RULES))
        + "; 0: none)",
    )
    parser.add_argument(
        "--storm",
        type=int,
        help=f"accounts restricted in one poll (default {FULL_STORM:,}; 0: none)",
    )
    parser.add_argument(
        "--days",
        type=int,
        help=f"simulated days of the state database (default {FULL_DAYS}; 0: none)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 1000,10000, fewer polls, a short warm-up"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--json", type=Path, help="also write every measurement here, as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="then run the daemon at the largest size once more under py-spy (raw stacks to "
        "FILE) and add its hotspots to the report",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the PostgreSQL state and replicas"
    )
    parser.add_argument(
        "--replica-sources",
        type=int,
        default=3_000,
        help="sources the three replicas share (default 3000)",
    )
    args = parser.parse_args(argv)
    sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.sizes:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    polls = args.polls or (QUICK_POLLS if args.quick else DEFAULT_POLLS)
    warmup = (
        args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    )
    many = _counts(args.many) if args.many else list(QUICK_MANY if args.quick else FULL_MANY)
    rules = _counts(args.rules) if args.rules else list(QUICK_RULES if args.quick else FULL_RULES)
    days = args.days if args.days is not None else (QUICK_DAYS if args.quick else FULL_DAYS)
    storm_accounts = (
        args.storm if args.storm is not None else (QUICK_STORM if args.quick else FULL_STORM)
    )
    if polls < 1 or any(n < 100 for n in sizes):
        parser.error("--polls must be at least 1 and every size at least 100")
    started = time.monotonic()
    text = ""
    try:
        many_seconds = QUICK_MANY_SECONDS if args.quick else MANY_SECONDS
        if args.stream != "only":
            report = asyncio.run(
                bench(
                    sizes,
                    polls,
                    many_seconds,
                    args.profile,
                    None if args.no_postgres else args.replica_sources,
                    warmup=warmup,
                    many=many,
                    rules=rules,
                    days=days,
                    storm_accounts=storm_accounts,
                )
            )
            text = render(report)
            text += _dashboard()
        if args.stream != "no":
            text += "\n" + asyncio.run(stream.run(stream.CHANGES, stream.ACCOUNTS, stream.PUSHES))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    if args.output is not None:
        args.output.write_text(text)
    if args.json is not None and args.stream != "only":
        args.json.write_text(json.dumps(report.as_dict(), indent=1) + "\n")
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0


def _dashboard() -> str:
    """The dashboard's overview at 1,000 accounts (none in a tree older than the dashboard)."""
    try:
        import dashboard  # the tree measured may be older than the dashboard
    except ImportError as exc:
        log(f"the dashboard: not in this version ({exc})")
        return ""
    log("the dashboard's overview at 1,000 accounts")
    return "\n" + dashboard.render(asyncio.run(dashboard.measure(1_000)))


if __name__ == "__main__":
    sys.exit(main())
