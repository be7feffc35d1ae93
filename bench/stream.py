"""The account stream: change -> webhook latency, streaming against polling, and CPU per push.

    python bench/stream.py [--changes 20] [--accounts 10000] [--pushes 20] [--quick]

Runs the real daemon (``balance-monitor run``, a process of its own) against the simulator
(:mod:`monitor.simulator`, in this process, so the moment of each change is known exactly) and
a webhook receiver here:

* latency, streaming: ``stream = true`` (polls every 5 minutes); ``--changes`` accounts are
  tripped one at a time (cash below 1,000), each change is pushed at once, and the time from the
  change to the webhook's arrival is noted;
* latency, polling: the same with ``stream = false`` and polls every 30 s; the changes come at
  random moments over about three intervals, each seen at the next poll;
* CPU per pushed message: ``--accounts`` accounts subscribed, ``--pushes`` messages that each
  carry every account (Lime re-sends the whole list on any change), one account changed in each
  (tripping no rule); the daemon's CPU seconds (``/proc``) over the pushes, divided by their
  number, beside the reference measured here in the same run: ``orjson.loads`` of the same
  message (the parse floor), and a poll of the same accounts (the daemon, same run).

Prints a Markdown section on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson
import procstat
from harness import daemon_argv
from processes import Child, Receiver, log

from monitor.encoding import dumps
from monitor.simulator import DEMO_TOKEN, Simulator, start

POLL_INTERVAL: Final = 30.0
CHANGES: Final = 20
ACCOUNTS: Final = 10_000
PUSHES: Final = 20
STREAM_POLLS: Final = "5m"
LOW: Final = Decimal("500.00")


def accounts(count: int) -> list[dict[str, Any]]:
    """``count`` cash accounts well above the rule's threshold."""
    return [
        {
            "account_number": f"{n:08d}@vision",
            "trade_platform": "ETNA",
            "margin_type": "marginx2",
            "restriction": "none",
            "daytrades_count": 0,
            "account_value_total": Decimal("40410.28"),
            "cash": Decimal("2524.54"),
            "margin_buying_power": Decimal("5049.08"),
            "non_margin_buying_power": Decimal("2524.54"),
            "position_market_value": Decimal("37885.74"),
            "unsettled_cash": Decimal("0.00"),
            "cash_to_withdraw": Decimal("2524.54"),
        }
        for n in range(count)
    ]


def write_config(
    path: Path, url: str, hook: str, *, stream: bool, every: float = POLL_INTERVAL
) -> Path:
    interval = STREAM_POLLS if stream else f"{every:g}s"
    text = f"""
[api]
url = "{url}"
token = "{DEMO_TOKEN}"
stream = {"true" if stream else "false"}
timeout = "60s"

[schedule]
interval = "{interval}"

[state]
path = "{path / "state.db"}"

[log]
level = "warning"
format = "json"

[[sinks]]
type = "webhook"
name = "hook"
url = "{hook}"

[[rules]]
type = "threshold"
name = "low-cash"
field = "cash"
op = "<"
value = 1000
"""
    config = path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config


async def until(check: Any, what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def daemon(config: Path) -> Child:
    return await Child.start("daemon", daemon_argv(config))


async def latencies(
    changes: int, *, stream: bool, receiver: Receiver, every: float = POLL_INTERVAL
) -> list[float]:
    """Seconds from each change to its notification's arrival at the webhook."""
    sim = Simulator(scenario="static")
    records = accounts(changes)
    sim.set_accounts(records)
    runner, url = await start(sim)
    workdir = Path(tempfile.mkdtemp(prefix="balance-monitor-bench-stream-"))
    child = await daemon(write_config(workdir, url, receiver.url, stream=stream, every=every))
    receiver.hits.clear()
    changed_at: dict[str, float] = {}
    try:
        await until(lambda: sim.requests >= 1, "the first poll", 30)
        if stream:
            await until(lambda: sim.stream.subscribes >= changes, "the subscriptions", 30)
        else:
            await asyncio.sleep(0.5)
        order = list(range(changes))
        if stream:
            for i in order:
                records[i] = {**records[i], "cash": LOW, "cash_to_withdraw": LOW}
                changed_at[records[i]["account_number"]] = time.time()
                sim.set_accounts(records)
                await until(lambda i=i: len(receiver.hits) > i, "a notification", 10)
                await asyncio.sleep(0.05)
        else:
            span = 3 * every
            moments = sorted(random.uniform(0, span) for _ in order)
            started = time.monotonic()
            for i, moment in zip(order, moments, strict=True):
                await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
                records[i] = {**records[i], "cash": LOW, "cash_to_withdraw": LOW}
                changed_at[records[i]["account_number"]] = time.time()
                sim.set_accounts(records)
            await until(lambda: len(receiver.hits) >= changes, "every notification", 2 * span)
    finally:
        await child.stop()
        await runner.cleanup()
    arrived = {h.payload["account_number"]: h.at for h in receiver.hits}
    return [arrived[n] - at for n, at in changed_at.items()]


async def cpu_per_push(count: int, pushes: int) -> dict[str, float]:
    """The daemon's CPU seconds per balances message carrying ``count`` accounts (one changed),
    beside orjson.loads of the same message and one poll of the same accounts."""
    sim = Simulator(scenario="static")
    records = accounts(count)
    sim.set_accounts(records)
    runner, url = await start(sim)
    receiver = Receiver()
    await receiver.start()
    workdir = Path(tempfile.mkdtemp(prefix="balance-monitor-bench-stream-"))
    child = await daemon(write_config(workdir, url, receiver.url, stream=True))
    try:
        await until(lambda: sim.requests >= 1, "the first poll", 60)
        await until(lambda: sim.stream.subscribes >= count, "the subscriptions", 120)
        await until(lambda: sim.stream.messages >= 1, "the first push", 60)
        await asyncio.sleep(2.0)  # the first (unchanged) push handled, the daemon idle
        before = procstat.probe(child.pid)
        sent = sim.stream.messages
        for i in range(pushes):
            records[i] = {**records[i], "position_market_value": Decimal(37000 + i)}
            sim.set_accounts(records)
            await until(lambda i=i: sim.stream.messages > sent + i, "a push", 30)
            await asyncio.sleep(0.3)  # let the daemon finish with it before the next
        await asyncio.sleep(1.0)
        after = procstat.probe(child.pid)
        idle_before = procstat.probe(child.pid)
        await asyncio.sleep(pushes * 0.3 + 1.0)
        idle_after = procstat.probe(child.pid)
    finally:
        await child.stop()
        await runner.cleanup()
        await receiver.close()
    message = dumps({"t": "b", "data": records}).encode()
    floor_started = time.process_time()
    for _ in range(pushes):
        orjson.loads(message)
    floor = (time.process_time() - floor_started) / pushes
    idle = idle_after.cpu - idle_before.cpu
    return {
        "daemon": (after.cpu - before.cpu - idle) / pushes,
        "idle": idle / pushes,
        "floor": floor,
        "bytes": float(len(message)),
    }


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


async def run(changes: int, count: int, pushes: int, every: float = POLL_INTERVAL) -> str:
    receiver = Receiver()
    await receiver.start()
    try:
        log(f"stream: latency of {changes} changes, streaming")
        streamed = await latencies(changes, stream=True, receiver=receiver)
        log(f"stream: latency of {changes} changes, polling every {every:g}s")
        polled = await latencies(changes, stream=False, receiver=receiver, every=every)
    finally:
        await receiver.close()
    log(f"stream: CPU of {pushes} pushes of {count:,} accounts")
    cpu = await cpu_per_push(count, pushes)
    s_med, s_max = summary(streamed)
    p_med, p_max = summary(polled)
    lines = [
        "## Account stream",
        "",
        f"Change -> webhook latency over {changes} changes (the real daemon, the simulator's",
        "stream and a loopback webhook; measured in the same run):",
        "",
        "| mode | median | worst |",
        "|---|---|---|",
        f"| streaming (`stream = true`) | {s_med * 1000:.1f} ms | {s_max * 1000:.1f} ms |",
        f"| polling every {every:g} s | {p_med:.1f} s | {p_max:.1f} s |",
        "",
        f"Streaming is {p_med / s_med:,.0f}x faster at the median.",
        "",
        f"CPU per pushed message carrying all {count:,} accounts (one changed), "
        f"{cpu['bytes'] / 1e6:.1f} MB each, over {pushes} pushes:",
        "",
        "| what | CPU per message | ratio |",
        "|---|---|---|",
        f"| the daemon (parse, diff, rules; nothing written but the changed row) | "
        f"{cpu['daemon'] * 1000:.1f} ms | {cpu['daemon'] / cpu['floor']:.1f}x |",
        f"| reference: `orjson.loads` of the message (the parse floor) | "
        f"{cpu['floor'] * 1000:.1f} ms | 1.0x |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=CHANGES)
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--pushes", type=int, default=PUSHES)
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    args = parser.parse_args()
    print(asyncio.run(run(args.changes, args.accounts, args.pushes, args.poll_interval)))


if __name__ == "__main__":
    main()
