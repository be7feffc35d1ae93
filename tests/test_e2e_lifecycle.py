"""End to end, issue 5: the rule lifecycle, templates, labels, expressions and mute windows
through the real CLI (``python -m monitor``) against the simulator and a webhook receiver.

Polls are 1 s apart, so ``for = "2s"`` waits two or three polls; everything else is driven
through the simulator's control API and observed in what the receiver got and the CLI logged.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from e2e_helpers import (
    COR,
    PAYLOAD_KEYS,
    VISION,
    Cli,
    Hook,
    MakeConfig,
    SimControl,
    account,
    eventually,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-lifecycle-token-456"


LIFECYCLE_RULE = """
[[rules]]
name = "low-cash"
type = "threshold"
field = "cash_to_withdraw"
op = "<"
value = 1000
clear = 1200
for = "2s"
labels = { team = "risk" }
summary = "{{ account_number }}: only {{ cash_to_withdraw | money }} to withdraw"
description = "Cash {{ cash | money }}; rule {{ rule }} ({{ labels.team }})"
"""

PDT_RULE = """
[[rules]]
name = "pdt-risk"
type = "expression"
when = "daytrades_count >= 3 && account_value_total < 25000.0 && margin_type != 'cash'"
severity = "critical"
"""

MUTE_ALL = """
[[mute]]
name = "always"
start = "00:00"
end = "24:00"
timezone = "UTC"
rules = ["low-cash"]
"""


async def test_for_clear_labels_and_templates(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A dip shorter than `for` pages nobody; a lasting one fires once with the rule's labels
    and rendered templates; between `value` and `clear` it keeps firing; above `clear` it
    resolves with the same fingerprint."""
    await sim.set_accounts([account(VISION), account(COR)])
    daemon = await cli.start("run", "--config", make_config(rules=LIFECYCLE_RULE))
    await daemon.wait_event("baseline_recorded")

    # One poll below the threshold, then back: shorter than `for`, so nothing.
    await sim.set_accounts([account(VISION), account(COR, cash_to_withdraw=Decimal("500.00"))])
    await sim.wait_requests(await sim.requests() + 1)
    await sim.set_accounts([account(VISION), account(COR)])
    await sim.wait_requests(await sim.requests() + 4)
    assert hook.posts == []

    low = account(COR, cash_to_withdraw=Decimal("500.00"), cash=Decimal("700.25"))
    dipped = time.monotonic()
    await sim.set_accounts([account(VISION), low])
    [firing] = await eventually(hook.delivered, what="the firing notification")
    assert time.monotonic() - dipped >= 2.0  # it waited for `for`
    assert set(firing) == PAYLOAD_KEYS
    assert firing["status"] == "firing"
    assert firing["labels"] == {"team": "risk"}
    assert firing["summary"] == f"{COR}: only 500.00 to withdraw"
    assert firing["description"] == "Cash 700.25; rule low-cash (risk)"
    assert datetime.fromisoformat(firing["started_at"]) <= datetime.fromisoformat(
        firing["observed_at"]
    )

    # Above `value`, below `clear`: still firing, nothing new.
    await sim.set_accounts([account(VISION), account(COR, cash_to_withdraw=Decimal("1100.00"))])
    await sim.wait_requests(await sim.requests() + 3)
    assert len(hook.delivered()) == 1

    await sim.set_accounts([account(VISION), account(COR, cash_to_withdraw=Decimal("1300.00"))])
    resolved = await eventually(
        lambda: hook.matching(status="resolved"), what="the resolved notification"
    )
    assert resolved[0]["fingerprint"] == firing["fingerprint"]
    assert resolved[0]["labels"] == {"team": "risk"}
    assert daemon.running


async def test_expression_rule_fires_on_pdt_risk(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """The issue's CEL expression fires for the margin account under $25k with 3 day trades,
    not for the cash account with the same numbers."""
    risky = {"daytrades_count": 3, "account_value_total": Decimal("24000.00")}
    await sim.set_accounts(
        [
            account(VISION, margin_type="marginx2", **risky),
            account(COR, margin_type="cash", **risky),
        ]
    )
    daemon = await cli.start("run", "--config", make_config(rules=PDT_RULE))
    [alert] = await eventually(hook.delivered, what="the pdt-risk notification")
    await sim.wait_requests(await sim.requests() + 2)
    assert len(hook.delivered()) == 1
    assert (alert["rule"], alert["type"], alert["severity"]) == (
        "pdt-risk",
        "expression",
        "critical",
    )
    assert alert["account_number"] == VISION
    assert daemon.running


async def test_mute_holds_then_releases_on_reload(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig, tmp_path: Path
) -> None:
    """While a window covers the rule the alert is recorded and held (status shows the window
    and what it holds); once the window is gone (a reload) the held alert is sent."""
    rule = LIFECYCLE_RULE.replace('for = "2s"\n', "")
    config = make_config(rules=rule + MUTE_ALL)
    await sim.set_accounts([account(VISION), account(COR, cash_to_withdraw=Decimal("10.00"))])
    daemon = await cli.start("run", "--config", config)
    held = await daemon.wait_event("alert_firing", rule="low-cash")
    assert held["held_by"] == "always"
    await sim.wait_requests(await sim.requests() + 2)
    assert hook.posts == []

    status = await cli.run("status", "--config", config, "--json")
    assert status.code == 0, status.output
    data = json.loads(status.stdout)
    [mute] = data["mutes"]
    assert (mute["name"], mute["active"], mute["held"]) == ("always", True, 1)
    assert [a["rule"] for a in data["alerts_firing"]] == ["low-cash"]
    text = await cli.run("status", "--config", config)
    assert "mutes active: 1; 1 notifications held" in text.stdout

    make_config(rules=rule)  # the same file, without the window
    daemon.send(signal.SIGHUP)
    await daemon.wait_event("reloaded")
    [released] = await eventually(hook.delivered, what="the released notification")
    assert (released["status"], released["rule"]) == ("firing", "low-cash")
    assert released["summary"] == f"{COR}: only 10.00 to withdraw"
    await sim.wait_requests(await sim.requests() + 2)
    assert len(hook.delivered()) == 1  # released once, not re-fired


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(
            '[[rules]]\nname = "x"\ntype = "expression"\nwhen = "cash < "\n',
            "rules[0] (x).when: ",
            id="cel-syntax",
        ),
        pytest.param(
            '[[rules]]\nname = "x"\ntype = "expression"\nwhen = "csh < 1.0"\n',
            "csh",
            id="cel-unknown-field",
        ),
        pytest.param(
            '[[rules]]\nname = "x"\ntype = "restriction_change"\nsummary = "{{ acount }}"\n',
            "rules[0] (x).summary: bad template: ",
            id="template-unknown-name",
        ),
        pytest.param(
            '[[rules]]\nname = "x"\ntype = "threshold"\nfield = "cash"\nop = "=="\n'
            "value = 1\nclear = 2\n",
            "rules[0] (x).clear: not used with op '=='",
            id="clear-with-equality",
        ),
        pytest.param(
            '[[mute]]\nname = "m"\nstart = "25:00"\n',
            "mute[0] (m).start: must be a time like",
            id="mute-bad-time",
        ),
        pytest.param(
            '[[mute]]\nname = "m"\nrules = ["nope"]\n',
            "mute[0] (m).rules: unknown rule 'nope'",
            id="mute-unknown-rule",
        ),
    ],
)
async def test_check_config_reports_new_keys(
    cli: Cli, make_config: MakeConfig, rule: str, message: str
) -> None:
    """Bad expressions, templates, hysteresis and mute windows are config errors naming the
    key (exit 2), never a traceback."""
    result = await cli.run("check-config", "--config", make_config(rules=rule))
    assert result.code == 2, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output


async def test_test_sink_opens_and_closes_a_pagerduty_incident(
    hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``test-sink`` on a sink that tracks alert state (PagerDuty) triggers the test incident
    and resolves it at once, so no test incident is left open."""
    sink = f"""
[[sinks]]
name = "pd"
type = "pagerduty"
routing_key = "R0123456789abcdef0123456789abcdef"
url = "{hook.url}"
"""
    result = await cli.run("test-sink", "--config", make_config(rules=sink), "pd")
    assert result.code == 0, result.output
    assert "firing then resolved" in result.stdout
    events = [post.payload for post in hook.posts]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]
    assert "R0123456789abcdef" not in result.output


async def test_once_resolves_the_pagerduty_incident_of_an_event(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A restriction change (an event) triggers a PagerDuty incident and, with
    resolve_events_after = "0s", resolves it (same dedup_key) in the same `once` run."""
    sink = f"""
[[sinks]]
name = "pd"
type = "pagerduty"
routing_key = "R0123456789abcdef0123456789abcdef"
url = "{hook.url}"
resolve_events_after = "0s"

[[rules]]
name = "restriction-changed"
type = "restriction_change"
severity = "critical"
sinks = ["pd"]
"""
    config = make_config(rules=sink)
    baseline = await cli.run("once", "--config", config)
    await sim.set_accounts([account(VISION, restriction="restricted"), account(COR)])
    changed = await cli.run("once", "--config", config)

    assert (baseline.code, changed.code) == (0, 0), changed.output
    events = [post.payload for post in hook.posts]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]
    assert "R0123456789abcdef" not in changed.output
