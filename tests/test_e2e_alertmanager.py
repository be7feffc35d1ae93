"""End to end with the real Alertmanager: the daemon (``python -m monitor run``) fires an alert
into ``prometheus-alertmanager``, keeps it alive across a restart by re-sending what the state
database says is firing, and resolves it.

Alertmanager here forgets an alert 8 s after it last heard of it (``resolve_timeout``), and the
daemon re-sends every second: an alert that stays active for longer than that after a restart
was re-sent by the restarted daemon, which learnt of it only from its state database.
"""

from __future__ import annotations

import asyncio
import signal
import time
from decimal import Decimal

import aiohttp
import pytest
import test_sinks_alertmanager
from e2e_helpers import COR, VISION, Cli, Hook, MakeConfig, SimControl, account, eventually
from test_sinks_alertmanager import RealAlertmanager, active_alerts, real_alertmanager

pytestmark = pytest.mark.e2e

TOKEN = "e2e-alertmanager-token-789"
__all__ = ["real_alertmanager"]  # the fixture, used by name
#: Alertmanager's resolve_timeout in this module, in seconds. The restarted daemon has that long
#: (less up to a second since the first one last re-sent) to start and re-send: a few seconds on
#: a machine busy with the other tests (pytest-xdist workers), so not the 4 s of
#: test_sinks_alertmanager, whose sink re-sends from the test's own process.
RESOLVE_TIMEOUT = 8

RULE = """
[[rules]]
name = "low-cash"
type = "threshold"
field = "cash_to_withdraw"
op = "<"
value = 1000
labels = { team = "risk" }
"""


@pytest.fixture(autouse=True)
def _resolve_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """``real_alertmanager`` (set up after this autouse fixture) with :data:`RESOLVE_TIMEOUT`."""
    default = test_sinks_alertmanager.CONFIG_YML
    config = default.replace("resolve_timeout: 4s", f"resolve_timeout: {RESOLVE_TIMEOUT}s")
    assert config != default
    monkeypatch.setattr(test_sinks_alertmanager, "CONFIG_YML", config)


def am_sink(url: str) -> str:
    return f"""
[[sinks]]
name = "am"
type = "alertmanager"
url = "{url}"
resend_interval = "1s"
"""


async def test_alert_survives_a_restart_and_resolves(
    real_alertmanager: RealAlertmanager,
    *,
    session: aiohttp.ClientSession,
    sim: SimControl,
    hook: Hook,
    cli: Cli,
    make_config: MakeConfig,
) -> None:
    """The firing alert reaches Alertmanager (labels included), stays active across a daemon
    restart well past resolve_timeout without a new notification, and resolves with the data."""
    am = real_alertmanager
    config = make_config(rules=RULE + am_sink(am.url))
    await sim.set_accounts([account(VISION), account(COR, cash_to_withdraw=Decimal("10.00"))])
    daemon = await cli.start("run", "--config", config)
    await eventually(lambda: am.notifications("firing"), what="a firing webhook from AM")
    [listed] = await active_alerts(session, am.url)
    assert listed["labels"]["alertname"] == "low-cash"
    assert listed["labels"]["account_number"] == COR
    assert listed["labels"]["team"] == "risk"

    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0
    stopped = time.monotonic()  # the first daemon's last re-send was before this
    restarted = await cli.start("run", "--config", config)
    await restarted.wait_event("sink_restored", sink="am")
    # Well past resolve_timeout since the first daemon stopped: only re-sends keep it active.
    await asyncio.sleep(stopped + RESOLVE_TIMEOUT + 3 - time.monotonic())
    assert [a["labels"]["account_number"] for a in await active_alerts(session, am.url)] == [COR]
    assert am.notifications("resolved") == []
    assert len([p for p in hook.delivered() if p["status"] == "firing"]) == 1  # not re-fired

    await sim.set_accounts([account(VISION), account(COR, cash_to_withdraw=Decimal("5000.00"))])
    await eventually(lambda: am.notifications("resolved"), what="a resolved webhook from AM")
    assert await active_alerts(session, am.url) == []
    assert restarted.running
