"""The dashboard at 1,000 accounts: how long the overview takes to render on the server, and
how much its first load transfers, beside a reference measured in the same run.

A SQLite state database gets 1,000 accounts and a day of history (a poll every 30 minutes, 1%
of the accounts changing at each; the last hour left in the journal), then the daemon's own
HTTP server (``HealthServer`` with the dashboard) serves it on 127.0.0.1. Measured, as the
median of ``REPEAT`` runs each:

* the overview rendered in the process (the store's reads and the template), and ``GET /`` over
  loopback (what a browser waits for);
* the reference: reading the 1,000 accounts' records from the same database
  (``store.accounts()``), the floor under any page that lists them;
* the bytes of the first load: the overview's HTML gzip-compressed as served, CSS, script and
  icon.

    python bench/dashboard.py [--accounts 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from monitor.config import config_from_dict
from monitor.cycle import PollRecord, PollWrite
from monitor.health import HealthServer, Readiness
from monitor.metrics import Metrics
from monitor.parse import parse_records
from monitor.rules import SourceHealth
from monitor.store import open_store
from monitor.web import WebContext
from monitor.web.data import overview
from monitor.web.pages import environment

REPEAT = 15
NOW = datetime(2024, 5, 8, 12, 0, tzinfo=UTC)


def _record(i: int, bump: int = 0) -> dict[str, Any]:
    cash = Decimal(1000 + (i * 37) % 9000 + bump) + Decimal("0.25")
    return {
        "account_number": f"{10_000_000 + i}@bench",
        "trade_platform": "ETNA",
        "margin_type": "cash" if i % 3 else "marginx2",
        "restriction": "restricted" if i % 50 == 0 else "none",
        "restriction_reason": "Pattern day trader" if i % 50 == 0 else None,
        "daytrades_count": i % 4,
        "account_value_total": cash * 4,
        "cash": cash,
        "day_trading_buying_power": cash * 4,
        "margin_buying_power": cash * 2,
        "non_margin_buying_power": cash,
        "position_market_value": cash * 3,
        "unsettled_cash": Decimal(0),
        "cash_to_withdraw": cash,
    }


async def fill(path: Path, accounts: int) -> None:
    store = await open_store(path)
    try:
        start = NOW - timedelta(days=1)
        book = dict(parse_records([_record(i) for i in range(accounts)]).accounts)
        await store.commit(
            PollWrite(
                "default",
                PollRecord(start, ok=True, account_count=accounts),
                SourceHealth(),
                upserts=tuple(book.values()),
            )
        )
        for poll in range(1, 48):
            at = start + timedelta(minutes=30 * poll)
            moved = [(poll * 7 + k * 97) % accounts for k in range(max(1, accounts // 100))]
            changed = parse_records([_record(i, bump=poll * 10) for i in moved]).accounts
            await store.commit(
                PollWrite(
                    "default",
                    PollRecord(at, ok=poll % 20 != 0, account_count=accounts),
                    SourceHealth(),
                    upserts=tuple(changed.values()),
                    series=tuple(
                        (n, f, book[n].record[f], a.record[f])
                        for n, a in changed.items()
                        for f in ("cash", "account_value_total", "cash_to_withdraw",
                                  "non_margin_buying_power", "margin_buying_power")
                    ),
                )
            )  # fmt: skip
            book.update(changed)
        await store.compact_history(before=NOW.timestamp() - 3600)  # as the hourly job does
    finally:
        await store.close()


async def _median(fn: Any) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def measure(accounts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="balance-monitor-bench-web-") as tmp:
        path = Path(tmp) / "state.db"
        await fill(path, accounts)
        config = config_from_dict(
            {
                "api": {"url": "http://127.0.0.1:9/accounts", "token": "t"},
                "sinks": [{"name": "log", "type": "log"}],
                "state": {"path": str(path)},
            },
            base_dir=Path(tmp),
        )
        store = await open_store(path, readonly=True)
        try:
            ctx = WebContext(store, lambda: config, dict, lambda: NOW)
            template = environment().get_template("overview.html")

            async def in_process() -> None:
                template.render(page="overview", view=await overview(ctx))

            async def reference() -> None:
                await store.accounts()

            server = HealthServer(Metrics(), lambda: Readiness(True), dashboard=ctx)
            url = await server.start("127.0.0.1", 0)
            try:
                async with aiohttp.ClientSession(auto_decompress=False) as session:

                    async def get(path: str = "/") -> bytes:
                        headers = {"Accept-Encoding": "gzip"}
                        async with session.get(url + path, headers=headers) as response:
                            response.raise_for_status()
                            return await response.read()

                    html = await get()
                    assets = [await get(f"/static/{n}") for n in ("app.css", "app.js", "icon.svg")]
                    render_ms = await _median(in_process)
                    http_ms = await _median(get)
                    reference_ms = await _median(reference)
            finally:
                await server.close()
        finally:
            await store.close()
    return {
        "accounts": accounts,
        "render_ms": render_ms,
        "http_ms": http_ms,
        "reference_ms": reference_ms,
        "html_bytes": len(gzip.decompress(html)) if html[:2] == b"\x1f\x8b" else len(html),
        "html_transferred": len(html),
        "first_load_transferred": len(html) + sum(len(a) for a in assets),
    }


def render(m: dict[str, Any]) -> str:
    kib = 1024
    rows = [
        ("overview rendered in the process (store reads + template)", f"{m['render_ms']:.1f} ms"),
        ("`GET /` over loopback", f"{m['http_ms']:.1f} ms"),
        ("reference: the accounts' records read from the store", f"{m['reference_ms']:.1f} ms"),
        (
            "overview HTML",
            f"{m['html_bytes'] / kib:.1f} KiB, {m['html_transferred'] / kib:.1f} KiB gzip",
        ),
        (
            "first load transferred (HTML, CSS, JS, icon)",
            f"{m['first_load_transferred'] / kib:.1f} KiB",
        ),
    ]
    return "\n".join(
        [
            f"### The dashboard's overview at {m['accounts']:,} accounts",
            "",
            f"| case | median of {REPEAT} |",
            "|---|---:|",
            *(f"| {case} | {value} |" for case, value in rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args(argv)
    sys.stdout.write(render(asyncio.run(measure(args.accounts))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
