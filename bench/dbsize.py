"""How big the state database gets over a long run: a simulated year of polls, in minutes.

    python bench/dbsize.py [--days 365] [--interval 30] [--accounts 1000] [--json FILE]

Through the real :class:`monitor.store.Store` on a SQLite file, with a simulated clock: every
``interval`` seconds one poll of one source commits (its ``sources`` row, one changed account,
one notification queued for a webhook), the notification is delivered (claimed and marked), and
every simulated hour the daemon's maintenance job runs as ``Daemon._maintenance_job`` does
(``Delivery.expire``: expire old pending rows, prune finished rows older than the outbox's keep
period; ``prune_history``). The report gives the database (+ WAL) size at the end of each month
and at the end, and the outbox's row count. No network, no sink: only the store's writes.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from monitor.cycle import Delivery, PollRecord, PollWrite
from monitor.models import Account, Alert, Notification, Severity, Status
from monitor.rules import SourceHealth
from monitor.store import open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600.0
MAX_AGE = 86400.0  # [delivery] max_age's default
KEEP_HISTORY = 90 * 86400.0  # [history] keep's default
KEEP_FINISHED = 7 * 86400.0  # [delivery] keep_finished's default


@dataclass
class Result:
    days: int
    interval: float
    polls: int
    seconds: float
    size: int  # bytes, database + WAL at the end
    outbox_rows: int
    keep_finished: str
    monthly: list[tuple[int, int]] = field(default_factory=list)  # (day, bytes)


def _record(number: str, cents: int) -> MappingProxyType[str, Any]:
    cash = Decimal(cents) / 100
    return MappingProxyType(
        {
            "account_number": number,
            "trade_platform": "ETNA",
            "margin_type": "marginx2",
            "restriction": "none",
            "daytrades_count": 0,
            "account_value_total": cash + Decimal("12345.67"),
            "cash": cash,
            "day_trading_buying_power": 4 * cash,
            "margin_buying_power": 2 * cash,
            "non_margin_buying_power": cash,
            "position_market_value": Decimal("12345.67"),
            "unsettled_cash": Decimal("0.00"),
            "cash_to_withdraw": cash,
        }
    )


def _notification(poll: int, at: datetime, record: MappingProxyType[str, Any]) -> Notification:
    number = record["account_number"]
    alert = Alert(
        status=Status.FIRING,
        fingerprint=f"{poll:024x}",
        rule="low-cash-to-withdraw",
        type="threshold",
        severity=Severity.WARNING,
        account_number=number,
        field="cash_to_withdraw",
        previous=record["cash"] + 1000,
        current=record["cash"],
        summary=f"{number}: cash_to_withdraw fell to {record['cash']} (< 1000)",
        observed_at=at,
        snapshot=record,
        source="default",
        started_at=at,
        kind="event",
    )
    return Notification(f"n-{poll:012d}", alert)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def simulate(path: Path, days: int, interval: float, accounts: int) -> Result:
    store = await open_store(path)
    supports_keep = "keep_finished" in inspect.signature(store.expire).parameters
    polls = int(days * 86400 / interval)
    per_hour = max(1, round(HOUR / interval))
    started = time.monotonic()
    result = Result(
        days, interval, polls, 0.0, 0, 0, "7d (keep_finished)" if supports_keep else "7d (fixed)"
    )
    health = SourceHealth()
    try:
        for poll in range(1, polls + 1):
            at = T0 + timedelta(seconds=poll * interval)
            record = _record(f"{10_000_000 + poll % accounts}@vision", 50_000 + poll % 997)
            note = _notification(poll, at, record)
            await store.commit(
                PollWrite(
                    "default",
                    PollRecord(at, ok=True, account_count=accounts),
                    health,
                    upserts=(Account(record["account_number"], record),),
                    deliveries=(Delivery(note, ("hook",)),),
                )
            )
            row = await store.next_pending("hook")
            if row is not None:
                await store.mark(row.seq, "delivered", now=at.timestamp() + 0.2)
            if poll % per_hour == 0:
                now = at.timestamp()
                if supports_keep:
                    await store.expire(
                        older_than=now - MAX_AGE, now=now, keep_finished=KEEP_FINISHED
                    )
                else:
                    await store.expire(older_than=now - MAX_AGE, now=now)
                await store.prune_history(before=now - KEEP_HISTORY)
            if poll % (per_hour * 24 * 30) == 0:
                day = round(poll * interval / 86400)
                result.monthly.append((day, _size(path)))
                print(f"[dbsize] day {day}: {_size(path) / 2**20:.1f} MiB", file=sys.stderr)
    finally:
        await store.close()
    result.seconds = time.monotonic() - started
    result.size = _size(path)
    db = sqlite3.connect(path)
    try:
        result.outbox_rows = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    return result


def render(r: Result) -> str:
    months = ", ".join(f"day {d}: {b / 2**20:.1f} MiB" for d, b in r.monthly)
    return (
        f"{r.days} days at one poll and one notification every {r.interval:g}s "
        f"({r.polls:,} polls, simulated in {r.seconds:.0f}s): state database + WAL "
        f"**{r.size / 2**20:.1f} MiB** at the end, {r.outbox_rows:,} outbox rows; outbox keep "
        f"{r.keep_finished}.\n\nBy month: {months or '-'}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    parent = "/var/tmp" if Path("/var/tmp").is_dir() and not os.environ.get("TMPDIR") else None  # noqa: S108
    with tempfile.TemporaryDirectory(prefix="balance-monitor-dbsize-", dir=parent) as tmp:
        result = asyncio.run(
            simulate(Path(tmp) / "state.db", args.days, args.interval, args.accounts)
        )
    print(render(result), end="")
    if args.json is not None:
        args.json.write_text(json.dumps(result.__dict__, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
