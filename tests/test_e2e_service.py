"""Running as a service, end to end: the unit file and the Prometheus rules checked by the real
systemd-analyze and promtool, and the real daemon (``python -m monitor run``) as a subprocess
against the simulator: /metrics, /healthz, /readyz, sd_notify, SIGHUP reload, ``status`` and
the log formats.

systemd-analyze (Debian package ``systemd``) and promtool (``prometheus``) are skipped when
missing on a developer's machine, never under ``CI=true`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from e2e_helpers import (
    LOW_CASH_RULE,
    VISION,
    WAIT,
    Cli,
    Hook,
    Proc,
    SimControl,
    config_toml,
    eventually,
    low_cash,
)
from prometheus_client.parser import text_string_to_metric_families

from monitor import __version__

pytestmark = pytest.mark.e2e

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "balance-monitor.service"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ALERTS.with_name("alerts_test.yml")
INSTALLED_BINARY = "/opt/balance-monitor/bin/balance-monitor"
TOOL_PACKAGES = {"systemd-analyze": "systemd", "promtool": "prometheus"}

TOKEN = "service-sekrit-token-456"
LOW_CASH = "low-cash-to-withdraw"
#: Fires for both healthy accounts (each is worth 40410.28).
VALUE_RULE = """
[[rules]]
name = "value-high"
type = "threshold"
field = "account_value_total"
op = ">"
value = 40000
"""
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
#: Log events of a poll, and of a delivery attempt: each names its source.
POLL_EVENTS = frozenset(
    {"baseline_recorded", "poll_ok", "poll_failed", "poll_deferred", "poll_crashed"}
)
ALERT_EVENTS = frozenset({"alert_firing", "alert_resolved"})
DELIVERY_EVENTS = frozenset(
    {
        "notification_delivered",
        "delivery_retry",
        "delivery_failed",
        "delivery_crashed",
        "notification_expired",
    }
)


# --------------------------------------------------------------------------- external tools


def require_tool(name: str) -> str:
    """The path of ``name``; skip the test without it, but fail under ``CI=true``."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (Debian package '{TOOL_PACKAGES.get(name, name)}')"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must install it (see .ci/run)")
    pytest.skip(message)


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run an external checker to completion, output captured, no pager, no colours."""
    env = dict(os.environ, SYSTEMD_PAGER="cat", SYSTEMD_COLORS="0", LC_ALL="C.UTF-8")
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )


def balance_monitor_executable() -> Path:
    """The ``balance-monitor`` console script of the environment running the tests."""
    beside = Path(sys.executable).parent / "balance-monitor"
    if beside.exists():
        return beside
    found = shutil.which("balance-monitor")
    assert found is not None, "balance-monitor is not installed in this environment"
    return Path(found)


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit file, its ExecStart pointing at this environment's real executable."""
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_BINARY in text
    copy = tmp_path / UNIT.name
    copy.write_text(
        text.replace(INSTALLED_BINARY, str(balance_monitor_executable())), encoding="utf-8"
    )
    return copy


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given (systemd keys may repeat), comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# --------------------------------------------------------------------------- the unit file


def test_unit_file_passes_systemd_analyze_verify(unit: Path) -> None:
    """``systemd-analyze verify`` accepts the unit without a single warning (it exits 0 on
    unknown keys and bad values, so stderr must be empty too)."""
    tool = require_tool("systemd-analyze")
    result = run_tool(tool, "verify", unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_file_is_a_hardened_notify_service() -> None:
    """The unit is Type=notify with a watchdog and restart, systemd-managed state, config and
    credentials, and the sandboxing the deployment guide promises."""
    service = unit_settings(UNIT.read_text(encoding="utf-8"))["Service"]

    def last(key: str) -> str:
        assert key in service, f"[Service] has no {key}="
        return service[key][-1]

    assert last("Type") == "notify"
    assert last("WatchdogSec")
    assert last("Restart") == "on-failure"
    assert last("StateDirectory") == "balance-monitor"
    assert last("ConfigurationDirectory") == "balance-monitor"
    assert last("LoadCredential")
    assert last("ProtectSystem") == "strict"
    assert last("ProtectHome") == "yes"
    assert last("PrivateTmp") == "yes"
    assert last("NoNewPrivileges") == "yes"
    assert last("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert "@system-service" in service["SystemCallFilter"]
    assert service["CapabilityBoundingSet"] == [""]  # empty: no capabilities at all
    assert "${CONFIGURATION_DIRECTORY}" in last("ExecStart")


def test_unit_file_exposure_is_low(unit: Path) -> None:
    """``systemd-analyze security --offline=yes`` rates the unit's exposure 2.0 or better."""
    tool = require_tool("systemd-analyze")
    result = run_tool(tool, "security", "--offline=yes", unit)
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout
    assert float(match.group(1)) <= 2.0, result.stdout


# --------------------------------------------------------------------------- Prometheus rules


def alert_exprs(text: str) -> dict[str, str]:
    """Alert name -> its ``expr``, continuation lines joined (enough YAML for alerts.yml)."""
    exprs: dict[str, str] = {}
    name: str | None = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := re.match(r"^\s*- alert:\s*(\S+)\s*$", line):
            name = m.group(1)
        elif (m := re.match(r"^(\s*)expr:\s*(.*)$", line)) and name is not None:
            indent, parts = len(m.group(1)), [m.group(2).lstrip("|>-").strip()]
            for more in lines[i + 1 :]:
                if more.strip() and len(more) - len(more.lstrip()) <= indent:
                    break
                parts.append(more.strip())
            exprs[name] = " ".join(p for p in parts if p)
    return exprs


def rule_for(exprs: dict[str, str], metric: str, *needles: str) -> str:
    """The one alert expression that reads ``metric`` (and contains ``needles``)."""
    found = [e for e in exprs.values() if metric in e and all(n in e for n in needles)]
    assert len(found) == 1, f"want one alert on {metric} {needles}, found {found}"
    return found[0]


def test_alert_rules_pass_promtool_check() -> None:
    """``promtool check rules`` accepts deploy/prometheus/alerts.yml."""
    tool = require_tool("promtool")
    result = run_tool(tool, "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    """``promtool test rules deploy/prometheus/alerts_test.yml`` passes: the stale-poll rule stays
    quiet off hours (10-minute polls, a cron line's quiet night) and fires on a real stall, off
    hours and in session; the retry rule fires on a sink whose every attempt is retried."""
    tool = require_tool("promtool")
    result = run_tool(tool, "test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_when_the_outbox_grows_or_deliveries_fail(tmp_path: Path) -> None:
    """Evaluated by ``promtool test rules`` on synthetic series (the stale-poll rule has its
    cases in alerts_test.yml): the outbox rule fires on a growing outbox and not on a constant
    one; the notification rule fires on failed deliveries and not on
    delivered ones; the held rule fires on notifications held after every window closed and
    not while one is open."""
    tool = require_tool("promtool")
    exprs = alert_exprs(ALERTS.read_text(encoding="utf-8"))
    growing = rule_for(exprs, "balance_monitor_outbox_pending")
    failing = rule_for(exprs, "balance_monitor_notifications_total", "failed")
    held = rule_for(exprs, "balance_monitor_notifications_held")

    def fires(expr: str, at: str, *, expected: bool) -> dict[str, Any]:
        samples = [{"labels": "{}", "value": 1}] if expected else []
        return {"expr": f"count({expr})", "eval_time": at, "exp_samples": samples}

    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'balance_monitor_outbox_pending{instance="a"}', "values": "0+1x40"},
                {"series": 'balance_monitor_outbox_pending{instance="b"}', "values": "5x40"},
            ],
            "promql_expr_test": [
                {
                    "expr": f"count({growing})",
                    "eval_time": "20m",
                    "exp_samples": [{"labels": "{}", "value": 1}],
                },
                {
                    "expr": f"count(({growing}) and on(instance) "
                    'balance_monitor_outbox_pending{instance="b"})',
                    "eval_time": "20m",
                    "exp_samples": [],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": 'balance_monitor_notifications_total{sink="a",result="failed"}',
                    "values": "0x10 1x20",
                },
                {
                    "series": 'balance_monitor_notifications_total{sink="b",result="failed"}',
                    "values": "0x30",
                },
                {
                    "series": 'balance_monitor_notifications_total{sink="b",result="delivered"}',
                    "values": "0+1x30",
                },
            ],
            "promql_expr_test": [
                fires(failing, "5m", expected=False),
                {
                    "expr": failing,
                    "eval_time": "15m",
                    "exp_samples": [{"labels": '{sink="a"}', "value": 1}],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # a: held while its window is open, still held after it closed (at 10m).
                {"series": 'balance_monitor_notifications_held{instance="a"}', "values": "2x30"},
                {
                    "series": 'balance_monitor_mute_active{instance="a",mute="night"}',
                    "values": "1x10 0x20",
                },
                # b: held while its window stays open.
                {"series": 'balance_monitor_notifications_held{instance="b"}', "values": "2x30"},
                {
                    "series": 'balance_monitor_mute_active{instance="b",mute="night"}',
                    "values": "1x30",
                },
            ],
            "promql_expr_test": [
                fires(held, "8m", expected=False),
                {
                    "expr": held,
                    "eval_time": "20m",
                    "exp_samples": [
                        {"labels": 'balance_monitor_notifications_held{instance="a"}', "value": 2}
                    ],
                },
            ],
        },
    ]
    # JSON is YAML, so the test file needs no YAML library.
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(
        json.dumps({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}),
        encoding="utf-8",
    )
    result = run_tool(tool, "test", "rules", spec)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- fixtures


@dataclass
class Service:
    """Writes config files for the simulator and the receiver, with an HTTP endpoint."""

    dir: Path
    sim: SimControl
    hook: Hook
    port: int
    path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Path:
        return self.dir / "state.db"

    def write(
        self, *, rules: str = LOW_CASH_RULE, interval: str = "1s", log: str = "json", **extra: Any
    ) -> Path:
        """(Re)write the config file: ``[http]`` on :attr:`port`, ``[log] format = log``."""
        tables = f'\n[http]\nlisten = "127.0.0.1:{self.port}"\n\n[log]\nformat = "{log}"\n'
        text = config_toml(
            api_url=self.sim.url,
            hook_url=self.hook.url,
            state=self.state,
            rules=tables + rules,
            **extra,
        )
        self.path.write_text(text.replace('interval = "1s"', f'interval = "{interval}"'), "utf-8")
        return self.path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def service(tmp_path: Path, sim: SimControl, hook: Hook) -> Service:
    return Service(tmp_path, sim, hook, free_port(), tmp_path / "config.toml")


async def until(check: Callable[[], Awaitable[T | None]], *, what: str, timeout: float = WAIT) -> T:  # noqa: ASYNC109
    """Await ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def stop(daemon: Proc) -> None:
    """SIGTERM, then the daemon must exit 0 and have printed no traceback."""
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert '"exception":' not in daemon.stderr


def firings(hook: Hook, rule: str) -> list[dict[str, Any]]:
    return hook.matching(rule=rule, status="firing")


# --------------------------------------------------------------------------- /metrics


async def test_metrics_endpoint_passes_promtool_and_exports_every_metric(
    service: Service, sim: SimControl, hook: Hook, cli: Cli, session: aiohttp.ClientSession
) -> None:
    """After a few polls and one delivered notification, /metrics passes ``promtool check
    metrics`` without a lint remark and holds every documented metric with the right values."""
    tool = require_tool("promtool")
    await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", service.write())
    await daemon.wait_event("notification_delivered")
    await sim.wait_requests(3)  # polls never overlap: two have finished

    status, text = await get(session, service.url + "/metrics")
    assert status == 200
    check = await asyncio.create_subprocess_exec(
        tool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(check.communicate(text.encode()), 30)
    assert check.returncode == 0, (out + err).decode()
    assert (out + err).decode() == ""

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, f"no sample {name}{labels} in:\n{text}"
        return samples[key]

    assert value("balance_monitor_polls_total", source="default", result="ok") >= 2
    assert value("balance_monitor_poll_duration_seconds_bucket", source="default", le="+Inf") >= 2
    assert value("balance_monitor_poll_duration_seconds_count", source="default") >= 2
    assert value("balance_monitor_accounts", source="default") == 2
    assert value("balance_monitor_alerts_firing", rule=LOW_CASH, severity="warning") == 1
    assert value("balance_monitor_notifications_total", sink="hook", result="delivered") == 1
    assert value("balance_monitor_notifications_total", sink="hook", result="failed") == 0
    assert value("balance_monitor_outbox_pending") == 0
    assert value("balance_monitor_notifications_held") == 0
    last = value("balance_monitor_last_success_timestamp_seconds", source="default")
    assert abs(time.time() - last) < 30
    assert value("balance_monitor_build_info", version=__version__) == 1
    await stop(daemon)


class FlakyHook(Hook):
    """A :class:`Hook` that answers 503 to its first ``failures`` POSTs, then ``status``."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.ok_status = self.status

    async def _handle(self, request: web.Request) -> web.Response:
        self.status = 503 if len(self.posts) < self.failures else self.ok_status
        return await super()._handle(request)


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, sorted labels) -> value of every sample of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_negotiate_openmetrics_and_gzip_and_count_notifications_not_attempts(
    tmp_path: Path, sim: SimControl, cli: Cli, session: aiohttp.ClientSession
) -> None:
    """Scraped as Prometheus does (``Accept: application/openmetrics-text``, ``Accept-Encoding:
    gzip``), the daemon answers gzip-compressed OpenMetrics with the process metrics; the
    failed-poll series is there at 0 though no poll failed; and a notification answered 503
    twice and then 200 counts one notification delivered and three attempts."""
    hook = await FlakyHook(failures=2).start()
    try:
        service = Service(tmp_path, sim, hook, free_port(), tmp_path / "config.toml")
        await sim.set_accounts(low_cash())
        started = time.time()
        daemon = await cli.start("run", "--config", service.write())
        await daemon.wait_event("notification_delivered")
        await sim.wait_requests(3)

        headers = {
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip",
        }
        async with session.get(
            service.url + "/metrics", headers=headers, auto_decompress=False
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/openmetrics-text;")
            assert response.headers["Content-Encoding"] == "gzip"
            text = gzip.decompress(await response.read()).decode()
        await stop(daemon)
    finally:
        await hook.aclose()

    assert text.endswith("# EOF\n")
    samples = scraped(text)

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, f"no sample {name}{labels} in:\n{text}"
        return samples[key]

    assert value("balance_monitor_polls_total", source="default", result="ok") >= 2
    assert value("balance_monitor_polls_total", source="default", result="failed") == 0
    assert [p.answered for p in hook.posts] == [503, 503, 200]
    assert value("balance_monitor_notifications_total", sink="hook", result="delivered") == 1
    assert value("balance_monitor_notifications_total", sink="hook", result="failed") == 0
    assert value("balance_monitor_notification_attempts_total", sink="hook", result="retry") == 2
    attempts = "balance_monitor_notification_attempts_total"
    assert value(attempts, sink="hook", result="delivered") == 1
    assert value("process_resident_memory_bytes") > 0
    assert value("process_open_fds") > 0
    assert started - 5 < value("process_start_time_seconds") <= time.time()
    assert value("balance_monitor_missed_polls", source="default") <= 1
    next_poll = value("balance_monitor_next_poll_timestamp_seconds", source="default")
    assert started < next_poll < time.time() + 5


async def test_missed_polls_count_a_stall_and_reset_on_success(
    service: Service, sim: SimControl, cli: Cli, session: aiohttp.ClientSession
) -> None:
    """While the source fails, every scheduled poll (1 s apart) adds to
    ``balance_monitor_missed_polls``; the next successful poll sets it back to 0 or 1."""
    daemon = await cli.start("run", "--config", service.write())
    await daemon.wait_event("baseline_recorded")
    await sim.fail(status=500, count=-1)

    async def missed() -> float:
        _, text = await get(session, service.url + "/metrics")
        return scraped(text)[("balance_monitor_missed_polls", (("source", "default"),))]

    async def stalled() -> float | None:
        count = await missed()
        return count if count >= 3 else None

    await until(stalled, what="three missed polls")
    await sim.clear_failures()

    async def recovered() -> bool:
        return await missed() <= 1

    await until(recovered, what="missed polls back to 0 after a success")
    await stop(daemon)


async def test_last_success_survives_a_restart_while_the_source_is_down(
    service: Service, sim: SimControl, cli: Cli, session: aiohttp.ClientSession
) -> None:
    """A daemon restarted while its source fails still exports the last successful poll
    (from the state database), so the stale-poll alert can fire instead of seeing no series."""
    config = service.write()
    first = await cli.start("run", "--config", config)
    await first.wait_event("baseline_recorded")
    await stop(first)
    succeeded = time.time()

    await sim.fail(status=500, count=-1)
    second = await cli.start("run", "--config", config)
    await second.wait_event("poll_failed")

    async def last_success() -> float | None:
        _, text = await get(session, service.url + "/metrics")
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "balance_monitor_last_success_timestamp_seconds":
                    return s.value
        return None

    at = await until(last_success, what="last success exported after the restart")
    assert succeeded - 30 < at <= succeeded
    await stop(second)


# --------------------------------------------------------------------------- health


async def test_readiness_follows_the_source_while_liveness_stays_ok(
    service: Service, sim: SimControl, cli: Cli, session: aiohttp.ClientSession
) -> None:
    """/readyz is 200 after a successful poll, still 200 after one failure, 503 with a JSON
    reason once the source has failed for more than 3 intervals, and 200 again after it
    recovers; /healthz is 200 throughout."""
    daemon = await cli.start("run", "--config", service.write(interval="1s"))
    await daemon.wait_event("started")
    assert (await get(session, service.url + "/healthz"))[0] == 200

    async def readyz(want: int) -> str | None:
        code, body = await get(session, service.url + "/readyz")
        return body if code == want else None

    body = json.loads(await until(lambda: readyz(200), what="/readyz 200 after the first poll"))
    assert body["status"] == "ready"
    assert body["reasons"] == []

    await sim.fail(status=500, count=-1)
    await daemon.wait_event("poll_failed")
    code, _ = await get(session, service.url + "/readyz")
    assert code == 200  # one failed poll is not yet "stale"

    body = json.loads(await until(lambda: readyz(503), what="/readyz 503 while failing"))
    # Not ready once three scheduled polls have passed since the last success: two of them
    # have failed by then, the third may still be on its way.
    assert len(daemon.events("poll_failed")) >= 2
    await daemon.wait_event("poll_failed", count=3)
    assert body["status"] == "not ready"
    (reason,) = body["reasons"]
    assert "default" in reason
    assert "500" in reason  # the last error says why
    assert body["sources"]["default"]["last_success_at"] is not None
    assert (await get(session, service.url + "/healthz"))[0] == 200

    await sim.clear_failures()
    await until(lambda: readyz(200), what="/readyz 200 after recovery")
    await stop(daemon)


# --------------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """systemd's notify socket, played by a datagram socket in a short /tmp directory (the
    AF_UNIX path limit is 108 bytes; pytest's tmp_path can be longer)."""
    folder = Path(tempfile.mkdtemp(prefix="bm-", dir="/tmp"))
    path = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


async def test_sd_notify_protocol_under_a_fake_service_manager(
    service: Service,
    sim: SimControl,
    cli: Cli,
    notify_socket: tuple[socket.socket, str],
) -> None:
    """With NOTIFY_SOCKET and WATCHDOG_USEC=1s the daemon sends READY=1 with its MAINPID,
    WATCHDOG=1 about every 0.5 s, a STATUS line after a poll, RELOADING=1 then READY=1 on
    SIGHUP, and STOPPING=1 on SIGTERM before exiting 0."""
    sock, path = notify_socket
    got: list[tuple[float, str]] = []

    async def collect() -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 4096)
            got.append((time.monotonic(), data.decode()))

    def lines(since: int = 0) -> list[str]:
        return [text for _, text in got[since:]]

    collector = asyncio.create_task(collect())
    runner = Cli(
        service.dir / "notify",
        cli.env | {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"},
    )
    runner.workdir.mkdir()
    try:
        daemon = await runner.start("run", "--config", service.write())
        await eventually(lambda: any("READY=1" in t for t in lines()), what="READY=1")
        ready = next(t.split("\n") for t in lines() if "READY=1" in t)
        assert f"MAINPID={daemon.process.pid}" in ready

        await eventually(
            lambda: len([t for t in lines() if t == "WATCHDOG=1"]) >= 4, what="4 watchdog pings"
        )
        pings = [at for at, text in got if text == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(gap < 1.0 for gap in gaps), gaps  # within WATCHDOG_USEC, always
        assert 0.35 <= statistics.median(gaps) <= 0.75, gaps
        await eventually(
            lambda: [t for t in lines() if t.startswith("STATUS=last poll") and " ok" in t],
            what="a STATUS line about the last poll",
        )

        mark = len(got)
        daemon.send(signal.SIGHUP)
        await daemon.wait_event("reloaded")
        await eventually(
            lambda: any(t.startswith("READY=1") for t in lines(mark)), what="READY after reload"
        )
        after = lines(mark)
        reloading = next(i for i, t in enumerate(after) if t.startswith("RELOADING=1"))
        assert "MONOTONIC_USEC=" in after[reloading]
        assert any(t.startswith("READY=1") for t in after[reloading + 1 :]), after

        mark = len(got)
        await stop(daemon)
        await eventually(lambda: "STOPPING=1" in lines(mark), what="STOPPING=1")
        after = lines(mark)
        assert not any("READY=1" in t for t in after[after.index("STOPPING=1") :]), after
        assert daemon.events("started")[0]["systemd"] is True
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await runner.aclose()


# --------------------------------------------------------------------------- SIGHUP


async def test_reload_applies_rules_and_schedule_and_keeps_firing_alerts(
    service: Service, sim: SimControl, hook: Hook, cli: Cli
) -> None:
    """SIGHUP with a valid new file: an added rule fires, the new interval takes effect, and a
    rule left unchanged keeps its firing alert (no second notification)."""
    await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", service.write(interval="3s"))
    await eventually(lambda: firings(hook, LOW_CASH), what="low cash firing")
    await daemon.wait_event("notification_delivered")

    service.write(interval="1s", rules=LOW_CASH_RULE + VALUE_RULE)
    daemon.send(signal.SIGHUP)
    reloaded = await daemon.wait_event("reloaded")
    assert reloaded["rules"] == 2
    assert reloaded["rules_reset"] == {}
    assert reloaded["schedule"] == "every 1s"

    seen = await sim.requests()
    # Three polls within 5.5 s: at the old 3 s interval they would span at least 6 s.
    await sim.wait_requests(seen + 3, timeout=5.5)
    await eventually(lambda: len(firings(hook, "value-high")) == 2, what="the added rule firing")
    assert len(firings(hook, LOW_CASH)) == 1
    assert len(daemon.events("alert_firing", rule=LOW_CASH)) == 1
    assert daemon.events("reload_rejected") == []
    await stop(daemon)


async def test_reload_refuses_a_bad_file_and_keeps_the_old_config(
    service: Service, sim: SimControl, hook: Hook, cli: Cli
) -> None:
    """SIGHUP with a TOML syntax error, then with an unknown key: each is one
    ``reload_rejected`` event naming the problem; the daemon keeps polling with its old rules
    (a later change still alerts) and exits 0 on SIGTERM."""
    good = service.write()
    daemon = await cli.start("run", "--config", good)
    await daemon.wait_event("baseline_recorded")
    original = good.read_text(encoding="utf-8")

    good.write_text(original + "\n[[rules]\nname = 'broken'\n", encoding="utf-8")
    daemon.send(signal.SIGHUP)
    rejected = await daemon.wait_event("reload_rejected")
    assert "TOML syntax error" in rejected["error"], rejected

    service.write(api="pollinterval = 5")
    daemon.send(signal.SIGHUP)
    rejected = await daemon.wait_event("reload_rejected", count=2)
    assert "pollinterval" in json.dumps(rejected["problems"]), rejected

    seen = await sim.requests()
    await sim.wait_requests(seen + 2)  # still polling
    await sim.set_accounts(low_cash())
    await eventually(lambda: firings(hook, LOW_CASH), what="the old rule still alerting")
    assert daemon.events("reloaded") == []
    await stop(daemon)


# --------------------------------------------------------------------------- status


async def test_status_after_a_run_reads_the_state_without_the_api(
    service: Service, sim: SimControl, hook: Hook, cli: Cli
) -> None:
    """``status`` after the daemon stopped shows the last poll and its result, the accounts
    known, the firing alert (rule, account, since) and an empty outbox, as a table and as
    JSON; it never contacts the API."""
    await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", service.write())
    await eventually(lambda: firings(hook, LOW_CASH), what="low cash firing")
    await daemon.wait_event("notification_delivered")
    await stop(daemon)
    requests = await sim.requests()

    table = await cli.run("status", "--config", service.path)
    assert table.code == 0, table.output
    assert table.stderr == ""
    lines = table.stdout.splitlines()
    header = next(line for line in lines if line.startswith("SOURCE"))
    assert header.split()[:5] == ["SOURCE", "LAST", "POLL", "RESULT", "LAST"]
    row = next(line for line in lines if line.startswith("default "))
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)\s+ok\s", row), row
    assert row.split()[-1] == "2"  # accounts known, no error
    assert "alerts firing: 1" in lines
    alert = next(line for line in lines if line.startswith(LOW_CASH))
    assert alert.split()[1:3] == [VISION, "default"]
    assert "ago)" in alert
    assert any(line.startswith("outbox: 0 pending;") for line in lines), table.stdout

    result = await cli.run("status", "--config", service.path, "--json")
    assert result.code == 0, result.output
    data = json.loads(result.stdout)
    assert {"sources", "alerts_firing", "outbox"} <= set(data)
    (source,) = data["sources"]
    assert source["source"] == "default"
    assert source["last_result"] == "ok"
    assert source["accounts_known"] == 2
    assert source["consecutive_failures"] == 0
    assert datetime.now(tz=UTC) - datetime.fromisoformat(source["last_poll_at"]) < timedelta(
        seconds=60
    )
    (firing,) = data["alerts_firing"]
    assert (firing["rule"], firing["account_number"]) == (LOW_CASH, VISION)
    assert firing["since"] is not None
    assert data["outbox"]["pending"] == 0
    assert data["outbox"]["oldest_pending_at"] is None
    assert await sim.requests() == requests


async def test_status_shows_the_queue_of_a_sink_that_is_down(
    service: Service, sim: SimControl, hook: Hook, cli: Cli
) -> None:
    """While the sink answers 503, ``status --json`` (beside the running daemon) counts the
    pending notification and says since when it waits."""
    hook.status = 503
    await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", service.write())
    await daemon.wait_event("delivery_retry")

    result = await cli.run("status", "--config", service.path, "--json")
    assert result.code == 0, result.output
    outbox = json.loads(result.stdout)["outbox"]
    assert outbox["pending"] == 1
    assert outbox["oldest_pending_at"] is not None
    oldest = datetime.fromisoformat(outbox["oldest_pending_at"])
    assert datetime.now(tz=UTC) - oldest < timedelta(seconds=60)
    (sink,) = outbox["by_sink"]
    assert (sink["sink"], sink["pending"]) == ("hook", 1)
    assert sink["max_attempts"] >= 1

    table = await cli.run("status", "--config", service.path)
    assert "outbox: 1 pending, oldest " in table.stdout
    await stop(daemon)


async def test_status_without_a_state_database_is_one_clear_error(
    service: Service, sim: SimControl, cli: Cli
) -> None:
    """Before the monitor ever ran, ``status`` exits non-zero with one line naming the missing
    database, creates nothing and never calls the API."""
    result = await cli.run("status", "--config", service.write(), "--json")
    assert result.code != 0
    assert result.stdout == ""
    assert "no state database" in result.stderr
    assert str(service.state) in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not service.state.exists()
    assert await sim.requests() == 0


# --------------------------------------------------------------------------- logs


async def test_json_logs_carry_event_level_timestamp_and_context(
    service: Service, sim: SimControl, hook: Hook, cli: Cli
) -> None:
    """With format = "json" every stderr line is a JSON object with event, level and an ISO
    UTC timestamp; poll and delivery lines name their source, alert and delivery lines their
    rule and account."""
    hook.status = 503
    await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", service.write(log="json"))
    await daemon.wait_event("delivery_retry")
    hook.status = 200
    await daemon.wait_event("notification_delivered")
    await sim.fail(status=500, count=1)
    await daemon.wait_event("poll_failed")
    await stop(daemon)

    events = [json.loads(line) for line in daemon.stderr.splitlines() if line.strip()]
    assert all(isinstance(e, dict) for e in events)
    for event in events:
        assert {"event", "level", "timestamp"} <= set(event), event
        assert ISO_UTC.match(event["timestamp"]), event
    names = {e["event"] for e in events}
    assert {"baseline_recorded", "poll_failed", "alert_firing", "delivery_retry"} <= names
    assert "notification_delivered" in names
    for event in events:
        if event["event"] in POLL_EVENTS | ALERT_EVENTS | DELIVERY_EVENTS:
            assert event.get("source") == "default", event
        if event["event"] in ALERT_EVENTS | DELIVERY_EVENTS:
            assert event.get("rule") == LOW_CASH, event
            assert event.get("account") == VISION, event


async def test_console_logs_are_readable_lines_not_json(service: Service, cli: Cli) -> None:
    """With format = "console" the lines are key=value text, not JSON, still naming the
    source of each poll."""
    daemon = await cli.start("run", "--config", service.write(log="console"))
    await eventually(lambda: "baseline_recorded" in daemon.stderr, what="the baseline line")
    await stop(daemon)
    lines = [line for line in daemon.stderr.splitlines() if line.strip()]
    for line in lines:
        with pytest.raises(ValueError):  # noqa: PT011 - any JSON decode error
            json.loads(line)
    baseline = next(line for line in lines if "baseline_recorded" in line)
    assert "source=default" in baseline
    assert "accounts=2" in baseline
