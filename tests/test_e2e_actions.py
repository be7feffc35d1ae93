"""End to end, issue 16: silences, acknowledgements, escalation, the notification record, the
write API and the heartbeat, through the real CLI (``python -m monitor``) against the
simulator and loopback receivers.

Polls are 1 s apart and the daemon looks for silences and acks written elsewhere every second;
the timing of ``repeat`` and ``escalate`` is proven with a fake clock in
``test_cycle_control.py``: here a reminder an hour later is reached by moving the stored alert
back in time between two runs.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e_helpers import (
    COR,
    LOW_CASH_RULE,
    VISION,
    Cli,
    Hook,
    MakeConfig,
    SimControl,
    account,
    eventually,
    healthy,
    low_cash,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-actions-token-616"
RULE = "low-cash-to-withdraw"


def both_low() -> list[dict[str, Any]]:
    """Both accounts below 1,000 to withdraw."""
    return [
        account(VISION, cash_to_withdraw=Decimal("512.25")),
        account(COR, cash_to_withdraw=Decimal("12.00")),
    ]


async def test_a_silence_added_while_running_holds_and_its_expiry_releases(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``silence add`` next to a running daemon is in force within a couple of seconds: the
    alert it matches is held (nothing reaches the receiver, ``status`` shows the silence
    holding it); ``silence expire`` releases it, notified once."""
    config = make_config(rules=LOW_CASH_RULE)
    daemon = await cli.start("run", "--config", config)
    await daemon.wait_event("baseline_recorded")

    added = await cli.run(
        "silence", "add", "--rule", RULE, "--account", "*@vision", "--for", "1h",
        "--comment", "maintenance", "--author", "ops-alice", "--config", config,
    )  # fmt: skip
    assert added.code == 0, added.output
    ident = added.stdout.strip()
    assert len(ident) == 12
    await daemon.wait_event("control_refreshed")

    await sim.set_accounts(low_cash())
    firing = await daemon.wait_event("alert_firing", rule=RULE)
    assert firing["held_by"] == f"silence:{ident}"

    status = await cli.run("status", "--json", "--config", config)
    [silence] = json.loads(status.stdout)["silences"]
    assert (silence["id"], silence["account"], silence["held"]) == (ident, "*@vision", 1)
    listed = await cli.run("silence", "list", "--config", config)
    assert ident in listed.stdout
    assert "ops-alice: maintenance" in listed.stdout
    assert hook.delivered() == []

    expired = await cli.run("silence", "expire", ident, "--config", config)
    assert expired.code == 0, expired.output
    await eventually(lambda: hook.matching(rule=RULE, status="firing"), what="the release")
    assert len(hook.matching(rule=RULE)) == 1
    assert (await cli.run("silence", "list", "--config", config)).stdout.strip() == "no silences"
    every = json.loads(
        (await cli.run("silence", "list", "--all", "--json", "--config", config)).stdout
    )
    assert [(s["id"], s["active"]) for s in every] == [(ident, False)]

    await daemon.wait_event("mute_released")
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0


async def test_a_silence_made_with_the_daemon_stopped_holds_and_ends_by_itself(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """Added while nothing runs (the command creates the state database), a silence holds
    ``source_down`` in the next run, and when its time is up the alert, still firing, is
    notified without anyone doing anything."""
    config = make_config(rules=LOW_CASH_RULE, api="down_after = 1")
    added = await cli.run(
        "silence", "add", "--rule", "source_down", "--for", "10s", "--config", config
    )
    assert added.code == 0, added.output
    await sim.fail(status=503, count=1000)
    daemon = await cli.start("run", "--config", config)
    firing = await daemon.wait_event("alert_firing", rule="source_down")
    assert firing["held_by"] == f"silence:{added.stdout.strip()}"
    assert hook.delivered() == []
    await eventually(
        lambda: hook.matching(rule="source_down", status="firing"), what="the release", timeout=20
    )
    released = await daemon.wait_event("mute_released")
    assert released["queued"] == 1


def _shift_back(state: Path, hours: float) -> None:
    """Move every stored alert ``hours`` into the past (as if that long went by)."""
    back = (datetime.now(tz=UTC) - timedelta(hours=hours)).isoformat()
    with sqlite3.connect(state) as db:
        db.execute("UPDATE alerts SET started_at=?, notified_at=?", (back, back))
    db.close()


async def test_an_ack_stops_reminders_and_is_carried_by_the_resolution(
    tmp_path: Path, sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """Two accounts fire a rule with ``repeat``; VISION's is acknowledged (by the id of its
    notification, with the daemon running). An hour later (the stored alerts moved back, the
    daemon restarted) COR gets its reminder and VISION none; VISION's resolution carries
    ``acknowledged_by`` and ``acknowledged_at``, COR's does not."""
    rules = LOW_CASH_RULE + 'repeat = "1h"\n'
    config = make_config(rules=rules)
    await sim.set_accounts(both_low())
    daemon = await cli.start("run", "--config", config)
    await eventually(lambda: len(hook.matching(rule=RULE)) == 2 or None, what="two firing")
    [vision] = hook.matching(account_number=VISION)

    acked = await cli.run(
        "ack", vision["id"], "--author", "ops-bob", "--comment", "on it", "--config", config
    )
    assert acked.code == 0, acked.output
    assert vision["fingerprint"] in acked.stdout
    status = json.loads((await cli.run("status", "--json", "--config", config)).stdout)
    by_account = {a["account_number"]: a for a in status["alerts_firing"]}
    assert by_account[VISION]["acknowledged_by"] == "ops-bob"
    assert by_account[COR]["acknowledged_by"] is None
    again = await cli.run("ack", "--rule", RULE, "--account", VISION, "--config", config)
    assert "already acknowledged" in again.stdout
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0

    _shift_back(tmp_path / "state.db", hours=1.5)
    daemon = await cli.start("run", "--config", config)
    await eventually(lambda: len(hook.matching(rule=RULE)) == 3 or None, what="a reminder")
    reminders = hook.matching(rule=RULE, status="firing")[2:]
    assert [r["account_number"] for r in reminders] == [COR]

    await sim.set_accounts(healthy())
    await eventually(lambda: len(hook.matching(rule=RULE, status="resolved")) == 2 or None,
                     what="both resolved")  # fmt: skip
    ended = {p["account_number"]: p for p in hook.matching(rule=RULE, status="resolved")}
    assert ended[VISION]["acknowledged_by"] == "ops-bob"
    assert ended[VISION]["acknowledged_at"].endswith("Z")
    assert "acknowledged_by" not in ended[COR]
    assert len(hook.matching(rule=RULE, account_number=VISION)) == 2  # fired, resolved
    record = await cli.run("notifications", "--account", VISION, "--config", config)
    assert "acknowledged by ops-bob" in record.stdout
    assert ": on it" in record.stdout


ESCALATING = """
[[sinks]]
name = "pager"
type = "webhook"
url = "PAGER_URL"

[[sinks]]
name = "pd"
type = "pagerduty"
routing_key = "R0UTINGKEY0000000000000000000000"
url = "PD_URL"

[[rules]]
name = "low-cash-to-withdraw"
type = "threshold"
field = "cash_to_withdraw"
op = "<"
value = 1000
sinks = ["hook", "pd"]
escalate = [{ after = "8s", sinks = ["pager"] }]
"""


async def test_escalation_reaches_the_next_sink_unless_acknowledged(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """Both accounts fire; VISION's is acknowledged at once (``--rule --account``): PagerDuty
    gets an ``acknowledge`` event for it. After ``after`` the pager gets COR's alert, once,
    and never VISION's."""
    pager = await Hook(path="/pager").start()
    pd = await Hook(path="/pd").start()
    try:
        rules = ESCALATING.replace("PAGER_URL", pager.url).replace("PD_URL", pd.url)
        config = make_config(rules=rules)
        await sim.set_accounts(both_low())
        await cli.start("run", "--config", config)
        await eventually(lambda: len(hook.matching(rule=RULE)) == 2 or None, what="firing")
        acked = await cli.run("ack", "--rule", RULE, "--account", VISION, "--config", config)
        assert acked.code == 0, acked.output

        await eventually(lambda: pager.delivered() or None, what="the escalation", timeout=25)
        actions = [(p.payload["event_action"], p.payload["dedup_key"]) for p in pd.posts]
        vision = hook.matching(account_number=VISION)[0]["fingerprint"]
        assert ("acknowledge", vision) in actions
        await sim.wait_requests(await sim.requests() + 3)  # a few more polls: nothing more
        escalated = pager.delivered()
        assert [p["account_number"] for p in escalated] == [COR]
        assert escalated[0]["summary"].endswith("unacknowledged (escalated)")
        status = json.loads((await cli.run("status", "--json", "--config", config)).stdout)
        steps = {a["account_number"]: a["escalation"] for a in status["alerts_firing"]}
        assert steps[COR]["sent"] == 1
        assert steps[VISION]["sent"] == 0
    finally:
        await pager.aclose()
        await pd.aclose()


async def test_the_record_lists_every_attempt_of_a_notification(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """The receiver fails twice (503) then accepts: ``notifications`` lists the notification
    delivered after three attempts, each with its time and outcome, also with filters."""
    config = make_config(rules=LOW_CASH_RULE)
    hook.status = 503
    daemon = await cli.start("run", "--config", config)
    await daemon.wait_event("baseline_recorded")
    await sim.set_accounts(low_cash())
    await eventually(lambda: len(hook.posts) >= 2 or None, what="two failed attempts")
    hook.status = 200
    await eventually(lambda: hook.delivered() or None, what="the delivery")
    await daemon.wait_event("notification_delivered")

    found = await cli.run(
        "notifications", "--json", "--rule", RULE, "--account", "*@vision", "--sink", "hook",
        "--status", "delivered", "--since", "1h", "--config", config,
    )  # fmt: skip
    assert found.code == 0, found.output
    [record] = json.loads(found.stdout)
    assert record["id"] == hook.delivered()[0]["id"]
    assert [a["outcome"] for a in record["attempts"]] == ["retry", "retry", "delivered"]
    assert "503" in record["attempts"][0]["error"]
    text = await cli.run("notifications", "--config", config)
    assert text.stdout.count("attempt ") == 3
    none = await cli.run("notifications", "--status", "failed", "--config", config)
    assert none.stdout.strip() == "no notifications"


async def test_the_write_api_needs_the_token(
    cli: Cli,
    make_config: MakeConfig,
    session: aiohttp.ClientSession,
    unused_tcp_port: int,
) -> None:
    """Without ``[http] auth_token`` a POST is refused (403) and reading works; with one, a
    request without it is refused (401) and one with it creates the silence, which the CLI
    lists; DELETE ends it."""
    base = f"http://127.0.0.1:{unused_tcp_port}"
    http = f'\n[http]\nlisten = "127.0.0.1:{unused_tcp_port}"\n'
    open_config = make_config("open.toml", rules=LOW_CASH_RULE + http)
    daemon = await cli.start("run", "--config", open_config)
    await daemon.wait_event("baseline_recorded")
    body = {"rule": RULE, "account": "*@vision", "for": "2h", "comment": "window"}
    async with session.post(f"{base}/api/v1/silences", json=body) as answer:
        assert answer.status == 403
    async with session.get(f"{base}/api/v1/silences") as answer:
        assert (answer.status, await answer.json()) == (200, [])
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0

    secured = make_config(
        "secured.toml", rules=LOW_CASH_RULE + http + 'auth_token = "s3cret-t0ken"\n'
    )
    daemon = await cli.start("run", "--config", secured)
    await daemon.wait_event("started")
    async with session.post(f"{base}/api/v1/silences", json=body) as answer:
        assert answer.status == 401
    auth = {"Authorization": "Bearer s3cret-t0ken"}
    async with session.post(f"{base}/api/v1/silences", json=body, headers=auth) as answer:
        assert answer.status == 201
        made = await answer.json()
    assert (made["rule"], made["account"], made["comment"], made["active"]) == (
        RULE, "*@vision", "window", True,
    )  # fmt: skip
    async with session.post(f"{base}/api/v1/silences", json={"for": "1h"}, headers=auth) as answer:
        assert answer.status == 400
        assert "at least one matcher" in (await answer.json())["error"]
    listed = await cli.run("silence", "list", "--json", "--config", secured)
    assert [s["id"] for s in json.loads(listed.stdout)] == [made["id"]]
    async with session.delete(f"{base}/api/v1/silences/{made['id']}", headers=auth) as answer:
        assert answer.status == 200
    async with session.delete(f"{base}/api/v1/silences/nope", headers=auth) as answer:
        assert answer.status == 404
    async with session.get(f"{base}/api/v1/notifications", headers=auth) as answer:
        assert (answer.status, await answer.json()) == (200, [])
    assert "s3cret-t0ken" not in daemon.stderr


async def test_the_heartbeat_pings_while_healthy_and_stops_when_the_api_fails(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """Every second while polls succeed the heartbeat URL is pinged; once the API fails the
    pings stop (and the reason is logged once); the URL never shows in the logs."""
    beats = await Hook(path="/ping/heartbeat-secret-uuid").start()
    try:
        heartbeat = f'\n[heartbeat]\nurl = "{beats.url}"\nevery = "1s"\nmethod = "POST"\n'
        config = make_config(rules=LOW_CASH_RULE + heartbeat)
        daemon = await cli.start("run", "--config", config)
        await eventually(lambda: len(beats.posts) >= 2 or None, what="two pings")
        await sim.fail(status=503, count=1000)
        await daemon.wait_event("heartbeat_skipped")
        seen = len(beats.posts)
        await sim.wait_requests(await sim.requests() + 3)
        assert len(beats.posts) <= seen + 1  # one ping may have been on its way
        await sim.clear_failures()
        await eventually(lambda: len(beats.posts) >= seen + 2 or None, what="pings again")
        assert "heartbeat-secret-uuid" not in daemon.stderr
    finally:
        await beats.aclose()
