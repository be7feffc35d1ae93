"""The two references the daemon is measured against, each a loop in a process of its own.

    python bench/reference.py stdlib --url URL --token TOKEN --interval 1
    python bench/reference.py floor  --url URL --token TOKEN --interval 1

``stdlib`` is the loop people write instead of a monitor, standard library only: fetch with
urllib, ``json.loads`` (money becomes float), a dict of the records by account number, compare
each record with the previous poll's, and the three example rules on what changed (thresholds
fire on crossing, and on the first poll like the daemon's); alerts are printed. ``floor`` is the
least any poller can do: the same fetch, then ``orjson.loads``, nothing else.

Each poll prints one JSON line (``{"event": "poll", ...}``) to stdout; the loop runs until it is
killed and polls every ``interval`` seconds (at once when a poll took longer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

Record = dict[str, Any]


def fetch(url: str, token: str) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - the URL is the benchmark's loopback API
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310
        body: bytes = response.read()
    return body


def check_rules(number: str, before: Record | None, record: Record) -> list[str]:
    """The three example rules for one account whose record is new or changed."""
    alerts = []
    if before is not None and before.get("restriction") != record.get("restriction"):
        alerts.append(
            f"{number}: restriction {before.get('restriction')} -> {record['restriction']}"
        )
    cash = record.get("cash_to_withdraw")
    if fnmatchcase(number, "*@vision") and cash is not None and cash < 1000:
        was = before.get("cash_to_withdraw") if before is not None else None
        if was is None or was >= 1000:
            alerts.append(f"{number}: cash_to_withdraw fell to {cash}")
    trades = record.get("daytrades_count")
    if trades is not None and trades >= 3:
        was = before.get("daytrades_count") if before is not None else None
        if was is None or was < 3:
            alerts.append(f"{number}: daytrades_count rose to {trades}")
    return alerts


class StdlibLoop:
    """Fetch, ``json.loads``, dict by account number, compare, rules, print."""

    def __init__(self) -> None:
        self.previous: dict[str, Record] | None = None

    def poll(self, body: bytes) -> dict[str, int]:
        current = {record["account_number"]: record for record in json.loads(body)}
        previous = self.previous
        alerts: list[str] = []
        changed = 0
        for number, record in current.items():
            before = previous.get(number) if previous is not None else None
            if previous is not None and before == record:
                continue
            changed += before is not None
            alerts += check_rules(number, before, record)
        for text in alerts:
            print("ALERT", text)
        self.previous = current
        return {"accounts": len(current), "changed": changed, "alerts": len(alerts)}


class ParseFloor:
    """Fetch and ``orjson.loads``: the cost below which no poller can go."""

    def __init__(self) -> None:
        import orjson

        self._loads: Callable[[bytes], Any] = orjson.loads

    def poll(self, body: bytes) -> dict[str, int]:
        return {"accounts": len(self._loads(body))}


def run(loop: StdlibLoop | ParseFloor, url: str, token: str, interval: float) -> None:
    polls = 0
    while True:
        started = time.monotonic()
        try:
            body = fetch(url, token)
        except (urllib.error.URLError, OSError) as exc:
            print(json.dumps({"event": "poll_failed", "error": str(exc)}), flush=True)
        else:
            outcome = loop.poll(body)
            duration_ms = round((time.monotonic() - started) * 1000, 3)
            event = "poll" if polls else "baseline"
            print(json.dumps({"event": event, **outcome, "duration_ms": duration_ms}), flush=True)
            polls += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("stdlib", "floor"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    loop = StdlibLoop() if args.kind == "stdlib" else ParseFloor()
    run(loop, args.url, args.token, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
