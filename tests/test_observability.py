"""The monitor's own observability, in-process: metrics, sd_notify, the health server
(``status`` is in ``test_status.py``).

No mocks: the notifier talks to a real datagram socket bound by the test, and the health server
is served on 127.0.0.1 and fetched with aiohttp.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from monitor import __version__
from monitor.config import parse_listen
from monitor.encoding import loads
from monitor.health import HealthServer, Readiness
from monitor.metrics import Metrics
from monitor.sdnotify import Notifier

# --------------------------------------------------------------------------- metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of ``balance_monitor_<name>{labels}``, None if the series does not exist."""
    return metrics.registry.get_sample_value(f"balance_monitor_{name}", labels)


def test_set_firing_counts_pairs_and_drops_vanished_ones_to_zero() -> None:
    """Each (rule, severity) pair is the number of its alerts; a pair that stops firing is set
    to 0 rather than left at its old value (or removed, which would break rate queries)."""
    metrics = Metrics()
    metrics.set_firing([("low", "warning"), ("low", "warning"), ("restricted", "critical")])
    assert sample(metrics, "alerts_firing", rule="low", severity="warning") == 2
    assert sample(metrics, "alerts_firing", rule="restricted", severity="critical") == 1

    metrics.set_firing([("restricted", "critical")])
    assert sample(metrics, "alerts_firing", rule="low", severity="warning") == 0
    assert sample(metrics, "alerts_firing", rule="restricted", severity="critical") == 1

    metrics.set_firing([])
    assert sample(metrics, "alerts_firing", rule="restricted", severity="critical") == 0


def test_set_pending_counts_rules_and_drops_vanished_ones_to_zero() -> None:
    """Pending alerts (waiting for their rule's `for`) are counted per rule like firing ones."""
    metrics = Metrics()
    metrics.set_pending(["low", "low", "pdt"])
    assert sample(metrics, "alerts_pending", rule="low") == 2
    assert sample(metrics, "alerts_pending", rule="pdt") == 1
    metrics.set_pending(["pdt"])
    assert sample(metrics, "alerts_pending", rule="low") == 0


def test_set_mutes_exports_open_windows_and_held_notifications() -> None:
    """Each mute window is 1 while open and 0 otherwise; held notifications are one number."""
    metrics = Metrics()
    metrics.set_mutes([("weekend", True), ("night", False)], held=3)
    assert sample(metrics, "mute_active", mute="weekend") == 1
    assert sample(metrics, "mute_active", mute="night") == 0
    assert sample(metrics, "notifications_held") == 3
    metrics.set_mutes([("night", False)], held=0)
    assert sample(metrics, "mute_active", mute="weekend") == 0  # removed by a reload
    assert sample(metrics, "notifications_held") == 0


def test_observe_poll_counts_by_result_and_times_every_poll() -> None:
    """A poll counts by result and lands in the histogram; only a successful one moves the
    account gauge."""
    metrics = Metrics()
    metrics.observe_poll("default", ok=True, duration=0.02, accounts=2, at=1000.0)
    metrics.observe_poll("default", ok=False, duration=3.0, accounts=None, at=1000.0)
    metrics.observe_poll("default", ok=False, duration=0.2, accounts=None, at=1000.0)

    assert sample(metrics, "polls_total", source="default", result="ok") == 1
    assert sample(metrics, "polls_total", source="default", result="failed") == 2
    assert sample(metrics, "poll_duration_seconds_count", source="default") == 3
    assert sample(metrics, "poll_duration_seconds_bucket", source="default", le="0.025") == 1
    assert sample(metrics, "poll_duration_seconds_bucket", source="default", le="+Inf") == 3
    assert sample(metrics, "last_success_timestamp_seconds", source="default") == 1000.0
    assert sample(metrics, "accounts", source="default") == 2


@pytest.mark.parametrize(("at", "exported"), [(1000.0, 1000.0), (0.0, 0.0)])
def test_a_failed_first_poll_exports_the_known_last_success(at: float, exported: float) -> None:
    """After a restart the first poll may fail: the last success it carries (from the state
    database; 0 for never) is exported anyway, so "no successful poll for 5 minutes" can
    fire instead of finding no series."""
    metrics = Metrics()
    metrics.observe_poll("default", ok=False, duration=0.1, accounts=None, at=at)
    assert sample(metrics, "last_success_timestamp_seconds", source="default") == exported
    assert sample(metrics, "accounts", source="default") is None


def test_render_is_parseable_exposition_with_build_info() -> None:
    """The rendered text parses as the Prometheus format and carries the version."""
    metrics = Metrics()
    metrics.observe_poll("default", ok=True, duration=0.01, accounts=1, at=5.0)
    names = {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    assert {
        "balance_monitor_polls",
        "balance_monitor_build_info",
        "balance_monitor_outbox_pending",
    } <= names
    assert sample(metrics, "build_info", version=__version__) == 1


def test_metrics_use_their_own_registry() -> None:
    """Two instances never collide (no global registry, which refuses duplicates)."""
    first, second = Metrics(), Metrics()
    first.outbox_pending.set(3)
    assert sample(second, "outbox_pending") == 0


# --------------------------------------------------------------------------- sd_notify


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's notify socket, and its path."""
    path = str(short_dir / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram already waiting on ``sock``, decoded."""
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2.0)
    return out


def test_notifier_sends_state_lines_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    """READY carries the status and MAINPID; STATUS, RELOADING, STOPPING and WATCHDOG are one
    datagram each, newline-separated KEY=value lines."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    try:
        notifier.ready("polling")
        assert sock.recv(4096).decode() == f"READY=1\nSTATUS=polling\nMAINPID={os.getpid()}"
        notifier.status("last poll ok")
        assert sock.recv(4096).decode() == "STATUS=last poll ok"
        notifier.reloading()
        lines = sock.recv(4096).decode().split("\n")
        assert lines[0] == "RELOADING=1"
        assert lines[1].startswith("MONOTONIC_USEC=")
        assert int(lines[1].partition("=")[2]) > 0
        notifier.watchdog()
        assert sock.recv(4096).decode() == "WATCHDOG=1"
        notifier.stopping()
        assert sock.recv(4096).decode() == "STOPPING=1"
    finally:
        notifier.close()


def test_notifier_reaches_an_abstract_socket() -> None:
    """``NOTIFY_SOCKET=@name`` is a Linux abstract-namespace socket (leading NUL byte)."""
    name = f"balance-monitor-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
    try:
        notifier.status("hello")
        assert sock.recv(4096) == b"STATUS=hello"
    finally:
        notifier.close()
        sock.close()


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative"}])
async def test_notifier_without_a_socket_does_nothing(environ: dict[str, str]) -> None:
    """Outside systemd every call is a no-op and the watchdog task returns at once."""
    notifier = Notifier(environ | {"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    with capture_logs() as logs:
        notifier.ready("x")
        notifier.status("x")
        notifier.reloading()
        notifier.stopping()
        async with asyncio.timeout(1):
            await notifier.run_watchdog(asyncio.Event())
    notifier.close()
    assert logs == []


def test_notifier_logs_a_failed_send_and_carries_on(short_dir: Path) -> None:
    """A notify socket that is gone is a warning, never an exception in the daemon."""
    notifier = Notifier({"NOTIFY_SOCKET": str(short_dir / "gone")})
    with capture_logs() as logs:
        notifier.ready("x")
    notifier.close()
    assert [e["event"] for e in logs] == ["sd_notify_failed"]


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "1000000"}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    """Ping every WATCHDOG_USEC/2; a WATCHDOG_PID naming another process disables it."""
    assert Notifier(environ | {"NOTIFY_SOCKET": "/run/x"}).watchdog_interval == interval


async def test_run_watchdog_pings_at_half_the_interval_until_stopped(
    listener: tuple[socket.socket, str],
) -> None:
    """With WATCHDOG_USEC=200 ms it pings every ~100 ms and returns promptly once ``stop`` is
    set, sending nothing more."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    stop = asyncio.Event()
    pings: list[float] = []

    def on_ping() -> None:
        pings.append(time.monotonic())
        if len(pings) == 4:
            stop.set()

    try:
        async with asyncio.timeout(5):
            await notifier.run_watchdog(stop, on_ping)
        stopped = time.monotonic()
    finally:
        notifier.close()
    assert len(pings) == 4
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert all(0.08 <= gap < 0.5 for gap in gaps), gaps
    assert stopped - pings[-1] < 0.1  # the stop event ends the wait, not the timer
    assert received(sock) == ["WATCHDOG=1"] * 4


# --------------------------------------------------------------------------- health server


class Probe:
    """Readiness and refresh callbacks for the server, changed by the test."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.state = Readiness(True)
        self.refreshed = 0

    def readiness(self) -> Readiness:
        return self.state

    async def refresh(self) -> None:
        await asyncio.sleep(0)  # a real coroutine: the server must await it
        self.refreshed += 1
        self.metrics.outbox_pending.set(7)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Probe, aiohttp.ClientSession]]:
    metrics = Metrics()
    probe = Probe(metrics)
    server = HealthServer(metrics, probe.readiness, probe.refresh)
    url = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield url, probe, session
    finally:
        await server.close()


async def test_healthz_answers_ok_with_the_version(
    served: tuple[str, Probe, aiohttp.ClientSession],
) -> None:
    """/healthz is 200 with a small JSON body whenever the loop answers."""
    url, probe, session = served
    probe.state = Readiness(False, ["whatever"])
    async with session.get(url + "/healthz") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert loads(await response.read()) == {"status": "ok", "version": __version__}


async def test_readyz_follows_the_readiness_callback(
    served: tuple[str, Probe, aiohttp.ClientSession],
) -> None:
    """/readyz is 200 when ready, 503 with the reasons and detail in JSON when not."""
    url, probe, session = served
    async with session.get(url + "/readyz") as response:
        assert response.status == 200
        assert loads(await response.read()) == {"status": "ready", "reasons": []}

    probe.state = Readiness(
        False, ["source default: no successful poll"], {"sources": {"default": {"x": 1}}}
    )
    async with session.get(url + "/readyz") as response:
        assert response.status == 503
        assert response.content_type == "application/json"
        assert loads(await response.read()) == {
            "status": "not ready",
            "reasons": ["source default: no successful poll"],
            "sources": {"default": {"x": 1}},
        }


async def test_metrics_endpoint_refreshes_then_renders(
    served: tuple[str, Probe, aiohttp.ClientSession],
) -> None:
    """/metrics awaits the refresh callback before rendering; without an Accept header it
    answers the classic text format (version 0.0.4), uncompressed."""
    url, probe, session = served
    headers = {"Accept-Encoding": "identity"}
    async with session.get(url + "/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
        assert "Content-Encoding" not in response.headers
        text = await response.text()
    assert probe.refreshed == 1
    assert "balance_monitor_outbox_pending 7.0" in text.splitlines()


async def test_metrics_endpoint_negotiates_openmetrics(
    served: tuple[str, Probe, aiohttp.ClientSession],
) -> None:
    """``Accept: application/openmetrics-text`` (what Prometheus asks for first) gets the
    OpenMetrics format, which ends in ``# EOF``."""
    url, _, session = served
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with session.get(url + "/metrics", headers={"Accept": accept}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text;")
        text = await response.text()
    assert text.endswith("# EOF\n")
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["balance_monitor_outbox_pending"] == 7


async def test_metrics_endpoint_compresses_when_asked(
    served: tuple[str, Probe, aiohttp.ClientSession],
) -> None:
    """``Accept-Encoding: gzip`` gets a gzip body (Prometheus asks for it on every scrape)."""
    url, _, session = served
    async with session.get(
        url + "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"
        body = await response.read()
    text = gzip.decompress(body).decode()
    assert "balance_monitor_outbox_pending 7.0" in text.splitlines()


async def test_health_server_reports_a_busy_port() -> None:
    """Binding a taken port raises OSError (the daemon turns it into a ConfigError)."""
    first = HealthServer(Metrics(), lambda: Readiness(True))
    url = await first.start("127.0.0.1", 0)
    port = int(url.rpartition(":")[2])
    second = HealthServer(Metrics(), lambda: Readiness(True))
    try:
        with pytest.raises(OSError, match="address already in use"):
            await second.start("127.0.0.1", port)
        assert second.url is None
    finally:
        await second.close()
        await first.close()


# --------------------------------------------------------------------------- [http] listen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),  # noqa: S104
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:9464", ("::", 9464)),
        (":9464", ("0.0.0.0", 9464)),  # noqa: S104
    ],
)
def test_parse_listen_accepts(value: str, expected: tuple[str, int]) -> None:
    """HOST:PORT, [IPv6]:PORT and :PORT (every interface)."""
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["9464", "", "127.0.0.1", "127.0.0.1:", "host:0", "host:65536", "host:http", "h:-1"]
)
def test_parse_listen_rejects(value: str) -> None:
    """A missing, non-numeric or out-of-range port is an error naming the expected form."""
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(value)
