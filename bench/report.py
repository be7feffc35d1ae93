"""The Markdown report: the machine, the tables, the hotspots and the targets of issue 6."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import IDLE_ACCOUNTS, ManySources, Measurement, Storm, interval_for


@dataclass
class Report:
    machine: dict[str, str]
    polls: int
    sizes: list[int]
    results: dict[tuple[int, str], Measurement] = field(default_factory=dict)
    many: ManySources | None = None
    many_note: str | None = None
    fs_type: str = "unknown"
    #: 1-minute load average before and after: other work on the machine skews the figures.
    load: tuple[float, float] = (0.0, 0.0)
    hotspots: list[str] | None = None
    profiled: int = 0
    #: The PostgreSQL section (bench/postgres.py), already rendered.
    postgres: str = ""
    warmup: int = 0
    many_curve: list[ManySources] = field(default_factory=list)
    #: The daemon at 10,000 accounts with this many threshold rules added to the example three.
    rules: dict[int, Measurement] = field(default_factory=dict)
    #: bench/dbsize.py's report: the state database after a simulated long run.
    dbsize: str | None = None
    storm: Storm | None = None

    def as_dict(self) -> dict[str, Any]:
        """Everything measured, for ``--json``."""
        return {
            "machine": self.machine,
            "polls": self.polls,
            "fs_type": self.fs_type,
            "load": self.load,
            "results": [asdict(m) for m in self.results.values()],
            "many_sources": asdict(self.many) if self.many is not None else None,
            "warmup": self.warmup,
            "many_curve": [asdict(m) for m in self.many_curve],
            "rules": {str(k): asdict(m) for k, m in self.rules.items()},
            "dbsize": self.dbsize,
            "storm": asdict(self.storm) if self.storm is not None else None,
        }


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    import monitor

    # The daemon runs whichever ``monitor`` Python finds: PYTHONPATH can point at another tree.
    tree = Path(monitor.__file__).resolve().parent.parent
    return {
        "cpu": model,
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "balance-monitor": f"{monitor.__version__} from {tree} ({_git_revision(tree)})",
    }


def _git_revision(tree: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "monitor")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"git {head}{', monitor/ modified' if dirty else ''}"


# --------------------------------------------------------------------------- the Markdown


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms"


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def _bytes(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    if size < 2**20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 2**20:.1f} MiB"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "-"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{_ms(statistics.median(values))} / {_ms(max(values))}"


def _accounts(n: int) -> str:
    return f"{n:,} (idle)" if n == IDLE_ACCOUNTS else f"{n:,}"


def render(report: Report) -> str:
    r = report.results
    sizes = [IDLE_ACCOUNTS, *report.sizes]
    m = report.machine
    out = [
        "### Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory']}",
        f"- {m['python']} on {m['os']}; balance-monitor {m['balance-monitor']}",
        f"- {report.polls} measured polls after a baseline poll and {report.warmup} warm-up polls "
        f"(1% churn each), per runner and size; state on "
        f"{report.fs_type}; intervals: "
        + ", ".join(f"{_accounts(n)}: {interval_for(n):g}s" for n in sizes),
        f"- load average (1 min) {report.load[0]:.2f} before, {report.load[1]:.2f} after",
        "",
        "### CPU per poll (user + system, from /proc)",
        "",
        "| accounts | daemon | (a) stdlib loop | (b) parse floor | daemon / (a) | daemon / (b) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        d, a, b = r[(n, "daemon")], r[(n, "stdlib")], r[(n, "floor")]
        out.append(
            f"| {_accounts(n)} | {_ms(d.cpu)} | {_ms(a.cpu)} | {_ms(b.cpu)} "
            f"| {_ratio(d.cpu, a.cpu)} | {_ratio(d.cpu, b.cpu)} |"
        )
    out += [
        "",
        "### The daemon",
        "",
        "| accounts | changed / poll | wall / poll (median) | baseline poll | peak RSS (VmHWM) "
        "| RSS after | written / poll (write_bytes) | db + wal growth / poll "
        "| change -> webhook (median / max) | poll end -> webhook (median / max) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        d = r[(n, "daemon")]
        missing = f" ({d.missing} missing)" if d.missing else ""
        out.append(
            f"| {_accounts(n)} | {d.changed:,.0f} | {_ms(_median(d.walls))} "
            f"| {_ms(d.baseline_wall)} | {_mib(d.hwm)} | {_mib(d.rss)} "
            f"| {_bytes(d.write_bytes)} | {_bytes(d.files_growth)} "
            f"| {_spread(d.latency_response)}{missing} | {_spread(d.latency_poll_end)} |"
        )
    out += [
        "",
        "### The references",
        "",
        "| accounts | (a) wall / poll | (a) peak RSS | (b) wall / poll | (b) peak RSS |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        a, b = r[(n, "stdlib")], r[(n, "floor")]
        out.append(
            f"| {_accounts(n)} | {_ms(_median(a.walls))} | {_mib(a.hwm)} "
            f"| {_ms(_median(b.walls))} | {_mib(b.hwm)} |"
        )
    out += ["", "### Many sources", ""]
    if report.many is not None:
        ms = report.many
        per_poll = ms.cpu / ms.polls if ms.polls else 0.0
        out.append(
            f"{ms.sources:,} sources x {IDLE_ACCOUNTS} accounts every {ms.interval:g}s: "
            f"**{ms.share:.1%} of one core** over {ms.seconds:.0f}s ({ms.polls:,} polls, "
            f"{_ms(per_poll)} CPU each); RSS {_mib(ms.rss)} (peak {_mib(ms.hwm)}); "
            f"all {ms.sources:,} baselines recorded {ms.startup:.1f}s after start."
        )
    elif not report.many_curve:
        out.append(report.many_note or "not measured")
    if report.many_curve:
        out += [
            "",
            f"| sources x {IDLE_ACCOUNTS} accounts, every 10 s | share of one core | polls made "
            "/ due | CPU / poll | lateness p99 / max | RSS | start-up (all baselines) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for ms in report.many_curve:
            per_poll = ms.cpu / ms.polls if ms.polls else 0.0
            out.append(
                f"| {ms.sources:,} | {ms.share:.1%} | {ms.polls:,} / {ms.expected:,} "
                f"| {_ms(per_poll)} | {_ms(ms.lateness_p99)} / {_ms(ms.lateness_max)} "
                f"| {_mib(ms.rss)} | {ms.startup:.1f}s |"
            )
        missed = sorted({line for ms in report.many_curve for line in ms.missed})
        if missed:
            out += ["", "Missed-job log lines: " + "; ".join(missed[:5])]
    if report.rules:
        out += [
            "",
            "### Rules (10,000 accounts)",
            "",
            "| rules | CPU / poll | / 3 rules | wall / poll (median) | baseline poll |",
            "|---:|---:|---:|---:|---:|",
        ]
        base = r.get((10_000, "daemon"))
        rows = ([(3, base)] if base is not None else []) + [
            (3 + extra, m) for extra, m in sorted(report.rules.items())
        ]
        for count, m in rows:
            ratio = _ratio(m.cpu, base.cpu) if base is not None else "-"
            out.append(
                f"| {count} | {_ms(m.cpu)} | {ratio} | {_ms(_median(m.walls))} "
                f"| {_ms(m.baseline_wall)} |"
            )
    if report.storm is not None:
        st = report.storm
        out += [
            "",
            "### Alert storm",
            "",
            f"{st.notifications:,} accounts restricted in one poll, one webhook sink: "
            f"{st.delivered:,} delivered; the first {_ms(st.first)} and the last "
            f"**{_ms(st.last)}** after the response that carried them ({_ms(st.from_poll_end)} "
            f"after the poll's `poll_ok`); the daemon's CPU over that poll and its deliveries "
            f"{_ms(st.cpu)}.",
        ]
    if report.dbsize is not None:
        out += ["", "### The state database over a long run", "", report.dbsize.rstrip()]
    if report.hotspots is not None:
        out += ["", f"### Where the daemon's time goes ({report.profiled:,} accounts)", ""]
        out += report.hotspots
    out += ["", "### Targets (issue 6)", "", *targets(report)]
    notes = sorted({n for x in r.values() for n in x.notes})
    if notes:
        out += ["", "Daemon log lines at warning or above during the runs: " + "; ".join(notes)]
    return "\n".join(out) + "\n" + report.postgres


def targets(report: Report) -> list[str]:
    r = report.results
    rows = ["| target | measured | met |", "|---|---|---|"]

    def row(target: str, measured: str, met: bool | None) -> None:
        rows.append(f"| {target} | {measured} | {'-' if met is None else 'yes' if met else 'no'} |")

    for n in [s for s in report.sizes if s >= 10_000]:
        d, a, b = r[(n, "daemon")], r[(n, "stdlib")], r[(n, "floor")]
        row(f"CPU / poll at {n:,} <= 1.5x (a)", _ratio(d.cpu, a.cpu), d.cpu <= 1.5 * a.cpu)
        row(f"CPU / poll at {n:,} ~ 1.2x (b) (aim)", _ratio(d.cpu, b.cpu), d.cpu <= 1.2 * b.cpu)
    idle = r[(IDLE_ACCOUNTS, "daemon")]
    row("idle poll of 2 accounts < 2 ms CPU", _ms(idle.cpu), idle.cpu < 0.002)
    row("RSS watching 2 accounts < 60 MiB", f"{_mib(idle.hwm)} peak", idle.hwm < 60 * 2**20)
    if report.sizes:
        # Smallest vs largest book (the idle daemon when only one size ran).
        big = r[(max(report.sizes), "daemon")]
        small = r[(min(report.sizes), "daemon")] if len(report.sizes) > 1 else idle
        growth = (big.hwm - small.hwm) / (big.accounts - small.accounts)
        steady = (big.rss - small.rss) / (big.accounts - small.accounts)
        row(
            "RSS growth < 1 KiB per account",
            f"{growth / 1024:.2f} KiB peak, {steady / 1024:.2f} KiB after the polls "
            f"({small.accounts:,} vs {big.accounts:,} accounts)",
            growth < 1024,
        )
        per_change = {
            n: r[(n, "daemon")].write_bytes / r[(n, "daemon")].changed for n in report.sizes
        }
        low, high = min(report.sizes), max(report.sizes)
        row(
            "state writes proportional to what changed",
            ", ".join(f"{n:,}: {_bytes(v)} per changed account" for n, v in per_change.items())
            + f"; idle: {_bytes(idle.write_bytes)} / poll",
            per_change[high] <= 2 * per_change[low],
        )
        worst = [max(r[(n, "daemon")].latency_poll_end, default=0.0) for n in report.sizes]
        row(
            "change -> delivery < 50 ms after the poll returns",
            "worst "
            + ", ".join(f"{n:,}: {_ms(w)}" for n, w in zip(report.sizes, worst, strict=True)),
            max(worst) < 0.05,
        )
    if report.many is not None:
        share = report.many.share
        row("1,000 sources x 2 accounts at 10 s < 20% of one core", f"{share:.1%}", share < 0.2)
    return rows


def hotspots(raw: Path, top: int = 10) -> list[str]:
    """Markdown: where the sampled stacks spend their time, by function, self and inclusive.

    ``raw`` is py-spy's collapsed format: ``frame;frame;...;leaf count`` per line, each frame
    ``function (file:line)``; line numbers are dropped so a function counts once per stack. The
    inclusive table leaves out the frames above 90% (the call chain down to the poll itself).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return ["(no samples)"]
    below = [
        (name, n) for name, n in inclusive.most_common() if "monitor/" in name and n < 0.9 * total
    ]
    rows = [
        f"py-spy, {total:,} samples at 200 Hz over the measured polls, every thread "
        "(a separate run: sampling costs CPU).",
        "",
        "| self | function | inclusive | `monitor` function |",
        "|---:|---|---:|---|",
    ]
    for (name, n), (iname, i_n) in zip(own.most_common(top), below[:top], strict=False):
        rows.append(f"| {n / total:.1%} | `{name}` | {i_n / total:.1%} | `{iname}` |")
    return rows


def _frame(text: str) -> str:
    """``parse_records (/x/monitor/parse.py:97)`` -> ``parse_records (monitor/parse.py)``."""
    name, _, where = text.partition(" (")
    path = where.removesuffix(")")
    head, _, line = path.rpartition(":")
    if line.isdigit():
        path = head
    path = re.sub(r"^.*/(site-packages|python3\.\d+)/", "", path)
    if "/monitor/" in path:
        path = "monitor/" + path.split("/monitor/", 1)[1]
    return f"{name} ({path})"
