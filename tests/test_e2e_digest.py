"""End to end, issue 17: a ``[[digests]]`` digest through the real CLI (``python -m monitor``)
against the simulator and a loopback webhook receiver, and ``digest NAME --print``."""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from e2e_helpers import COR, LOW_CASH_RULE, VISION, Cli, Hook, MakeConfig, SimControl, account

pytestmark = pytest.mark.e2e

TOKEN = "e2e-digest-token-170"
DAY = 86400


def _shift_back(state: Path, seconds: float) -> None:
    """Move what the first run recorded back in time: as if it had been polled days ago."""
    with sqlite3.connect(state) as db:
        for table in ("history_journal", "account_history", "polls"):
            db.execute(f"UPDATE {table} SET at = at - ?", (seconds,))  # noqa: S608


def _digest(at: str) -> str:
    return f"""
[[digests]]
name = "close"
at = "{at}"
timezone = "UTC"
sinks = ["hook"]
"""


async def test_a_digest_due_in_seconds_arrives_with_the_days_figures_and_print_matches(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig, tmp_path: Path
) -> None:
    """After a day's changes (one account's value up, the other's cash low enough to fire an
    alert, one failed poll), the digest scheduled a few seconds ahead reaches the webhook
    once with each account's value, its change since the previous digest (yesterday's) and
    percent, the totals, the alert fired and the failed poll; ``digest close --print``
    afterwards prints exactly the text that was sent."""
    state = tmp_path / "state.db"
    first = make_config("first.toml", rules=LOW_CASH_RULE)
    daemon = await cli.start("run", "--config", first)
    await daemon.wait_event("baseline_recorded")
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0
    _shift_back(state, 2 * DAY)

    await sim.set_accounts(
        [
            account(VISION, account_value_total=Decimal("41410.78")),
            account(COR, cash_to_withdraw=Decimal("12.00")),
        ]
    )
    await sim.fail(status=503, count=1)
    at = (datetime.now(tz=UTC) + timedelta(seconds=8)).strftime("%H:%M:%S")
    config = make_config("config.toml", rules=LOW_CASH_RULE + _digest(at))
    daemon = await cli.start("run", "--config", config)
    sent = await daemon.wait_event("digest_delivered", digest="close", timeout=20)
    [document] = hook.matching(type="digest")
    assert document["id"] == sent["id"]
    by_number = {a["account_number"]: a for a in document["accounts"]}
    vision, cor = by_number[VISION], by_number[COR]
    assert vision["account_value_total"] == Decimal("41410.78")
    assert vision["previous"] == Decimal("40410.28")
    assert vision["change"] == Decimal("1000.50")
    assert vision["change_percent"] == Decimal("2.48")
    assert cor["change"] == Decimal("0.00")
    assert cor["cash_to_withdraw"] == Decimal("12.00")
    assert document["totals"]["account_value_total"] == (
        vision["account_value_total"] + cor["account_value_total"]
    )
    assert document["totals"]["change"] == Decimal("1000.50")
    assert [(a["status"], a["rule"]) for a in document["alerts"]] == [
        ("firing", "low-cash-to-withdraw")
    ]
    assert [(s["source"], s["failed"]) for s in document["failed_sources"]] == [("default", 1)]
    assert document["all_clear"] is False
    assert f"{VISION}: value 41,410.78 (+1,000.50, +2.48%)" in document["text"]
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0
    assert len(hook.matching(type="digest")) == 1  # once

    printed = await cli.run("digest", "close", "--print", "--config", config)
    assert printed.code == 0, printed.output
    assert printed.stdout.rstrip("\n") == document["text"]


async def test_digest_with_an_unknown_name_lists_the_names(
    cli: Cli, make_config: MakeConfig
) -> None:
    """An unknown NAME is a one-line error naming the digests there are, exit 2."""
    config = make_config(rules=_digest("16:15"))
    result = await cli.run("digest", "nope", "--print", "--config", config)
    assert result.code == 2
    assert "no digest named 'nope' in [[digests]] (close)" in result.stderr
    assert "Traceback" not in result.output


async def test_digest_without_print_and_no_daemon_is_sent_at_once(
    hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``once`` sends the day's digest (due at 00:00 UTC) once however often it runs; with no
    daemon running, ``digest close`` queues one with an id of its own and sends it there and
    then, printing each sink's outcome; a failing sink exits 1 and leaves it queued."""
    config = make_config(rules=_digest("00:00"), delivery='once_deadline = "2s"')
    for _ in range(2):
        polled = await cli.run("once", "--config", config)
        assert polled.code == 0, polled.output
    [scheduled] = hook.matching(type="digest")
    sent = await cli.run("digest", "close", "--config", config)
    assert sent.code == 0, sent.output
    assert "digest 'close' to sink 'hook': delivered" in sent.stdout
    manual = hook.matching(type="digest")[1]
    assert manual["id"] != scheduled["id"]
    assert manual["totals"]["accounts"] == 2
    hook.status = 503
    failed = await cli.run("digest", "close", "--config", config)
    assert failed.code == 1
    assert "not delivered to every sink" in failed.stderr


async def test_digest_next_to_a_running_daemon_is_sent_by_it_within_seconds(
    hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``digest close`` while the daemon runs only queues it; the daemon notices (its control
    job) and sends it within a couple of seconds."""
    config = make_config(rules=_digest("00:00"))
    daemon = await cli.start("run", "--config", config)
    await daemon.wait_event("digest_delivered", digest="close")  # today's, caught up at start
    queued = await cli.run("digest", "close", "--config", config)
    assert queued.code == 0, queued.output
    assert "the running daemon sends it" in queued.stdout
    await daemon.wait_event("digest_delivered", digest="close", count=2, timeout=5)
    ids = [d["id"] for d in hook.matching(type="digest")]
    assert len(set(ids)) == 2
