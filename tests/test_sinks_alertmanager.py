"""The Alertmanager sink: against a fake Alertmanager (a real HTTP server on 127.0.0.1 recording
the POSTs), then against the real one (Debian's ``prometheus-alertmanager``) routing to a webhook
receiver in the test.

The real Alertmanager is skipped when missing on a developer's machine, never when
``BALANCE_MONITOR_REQUIRE_ALERTMANAGER`` is set or under ``CI=true`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from e2e_helpers import eventually
from pydantic import TypeAdapter
from sinks_helpers import OBSERVED_AT, Receiver, Reply, make_notification, serving
from structlog.testing import capture_logs

from monitor import __version__
from monitor.config import AlertmanagerSinkConfig, RuleConfig
from monitor.errors import ConfigError, SinkError
from monitor.models import Notification, Snapshot, Status
from monitor.parse import parse_records
from monitor.rules import evaluate
from monitor.sinks import alertmanager
from monitor.sinks.registry import build_sink

HEADER_SECRET = "Bearer am-header-sekrit"
URL_SECRET = "am-basic-auth-sekrit"
INTERVAL = 0.2
REQUIRE_ENV = "BALANCE_MONITOR_REQUIRE_ALERTMANAGER"
BINARIES = ("prometheus-alertmanager", "alertmanager")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A fake Alertmanager: records every POST, answers 200."""
    async with serving("/") as receiver:
        yield receiver


def make_sink(
    url: str,
    session: aiohttp.ClientSession,
    *,
    resend_interval: float | timedelta = INTERVAL,
    generator_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> alertmanager.AlertmanagerSink:
    return alertmanager.AlertmanagerSink(
        "am",
        session=session,
        url=url,
        resend_interval=resend_interval,
        generator_url=generator_url,
        headers={"Authorization": HEADER_SECRET} if headers is None else headers,
    )


@pytest.fixture
async def sink(
    receiver: Receiver, session: aiohttp.ClientSession
) -> AsyncIterator[alertmanager.AlertmanagerSink]:
    sink = make_sink(receiver.url, session)
    try:
        yield sink
    finally:
        await sink.aclose()


def posted(receiver: Receiver, index: int = -1) -> list[dict[str, Any]]:
    """The alerts of one recorded POST (the last by default)."""
    alerts: list[dict[str, Any]] = json.loads(receiver.requests[index].body)
    return alerts


def accounts(receiver: Receiver, index: int = -1) -> list[str]:
    """The account numbers of one POST's alerts: the tests give each alert its own."""
    return [a["labels"]["account_number"] for a in posted(receiver, index)]


def alert_of(account: str, **changes: Any) -> Notification:
    return make_notification(fingerprint=f"fp-{account}", account_number=account, **changes)


# --------------------------------------------------------------------------- documents


async def test_firing_alert_document(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """One POST to /api/v2/alerts of a one-alert array: our labels and the rule's, the details
    as string annotations, startsAt from when the episode began, no endsAt."""
    sink = make_sink(receiver.url, session, generator_url="https://monitor.example/status")
    started = datetime(2024, 5, 1, 11, 58, tzinfo=UTC)
    notification = make_notification(
        labels={"team": "treasury"}, description="Top up the account.", started_at=started
    )

    await sink.send(notification)
    await sink.aclose()

    [request] = receiver.requests
    assert request.path == "/api/v2/alerts"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"balance-monitor/{__version__}"
    assert request.headers["Authorization"] == HEADER_SECRET
    assert posted(receiver) == [
        {
            "labels": {
                "alertname": "low-cash",
                "severity": "critical",
                "source": "default",
                "account_number": "12345678",
                "team": "treasury",
            },
            "annotations": {
                "summary": "cash_to_withdraw fell to 512.25 (< 1000)",
                "description": "Top up the account.",
                "field": "cash_to_withdraw",
                "previous": "1500.00",
                "current": "512.25",
            },
            "startsAt": "2024-05-01T11:58:00Z",
            "generatorURL": "https://monitor.example/status",
        }
    ]


def test_resolved_alert_ends_when_observed(session: aiohttp.ClientSession) -> None:
    """A resolved alert carries endsAt, its observed_at; startsAt falls back to observed_at."""
    sink = make_sink("http://127.0.0.1:1", session)

    document = sink.document(make_notification(status=Status.RESOLVED).alert)

    assert document["startsAt"] == document["endsAt"] == "2024-05-01T12:00:00Z"
    assert "generatorURL" not in document


def test_empty_and_missing_values_are_left_out(session: aiohttp.ClientSession) -> None:
    """Alertmanager refuses empty label values: no account, an empty rule label, no field or
    values, no description are all simply absent. Records become JSON text."""
    sink = make_sink("http://127.0.0.1:1", session)
    alert = make_notification(
        account_number=None,
        field=None,
        previous=None,
        current={"cash": 1, "closed": True},
        labels={"team": "", "tier": "gold"},
        type="source_down",
        rule="source_down",
    ).alert

    document = sink.document(alert)

    assert document["labels"] == {
        "alertname": "source_down",
        "severity": "critical",
        "source": "default",
        "tier": "gold",
    }
    assert document["annotations"] == {
        "summary": "cash_to_withdraw fell to 512.25 (< 1000)",
        "current": '{"cash":1,"closed":true}',
    }
    assert all(isinstance(v, str) for v in document["labels"].values())


def test_our_labels_win_over_the_rules(session: aiohttp.ClientSession) -> None:
    """A rule label cannot change the alert's identity (the config refuses them anyway)."""
    sink = make_sink("http://127.0.0.1:1", session)

    labels = sink.document(make_notification(labels={"alertname": "x", "env": "prod"}).alert)[
        "labels"
    ]

    assert (labels["alertname"], labels["env"]) == ("low-cash", "prod")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), (True, "true"), (False, "false"), (3, "3"), ("closed", "closed"), ([1], "[1]")],
)
def test_annotation_text(session: aiohttp.ClientSession, value: Any, expected: str) -> None:
    """Values as annotation text: JSON spellings; none is ``""`` and so left out."""
    sink = make_sink("http://127.0.0.1:1", session)

    annotations = sink.document(make_notification(previous=value, current=value).alert)[
        "annotations"
    ]

    assert annotations.get("previous", "") == annotations.get("current", "") == expected
    assert ("previous" in annotations) is bool(expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://am:9093", "http://am:9093/api/v2/alerts"),
        ("http://am:9093/", "http://am:9093/api/v2/alerts"),
        ("https://ops.example/alertmanager/", "https://ops.example/alertmanager/api/v2/alerts"),
    ],
)
def test_endpoint_keeps_a_path_prefix(url: str, expected: str) -> None:
    """The API path goes after whatever prefix the base URL has."""
    assert alertmanager.endpoint(url) == expected


# --------------------------------------------------------------------------- re-sending


async def test_firing_alerts_are_resent_together_until_resolved(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """Every interval one POST carries all firing alerts; a resolved one is sent with endsAt
    and then left out; with none left, nothing more is sent."""
    await sink.send(alert_of("11111111"))
    await sink.send(alert_of("22222222"))
    await eventually(
        lambda: len(receiver.requests) >= 3 and len(posted(receiver)) == 2,
        what="a re-send of both alerts",
    )
    assert accounts(receiver) == ["11111111", "22222222"]
    assert sink.firing == {"fp-11111111", "fp-22222222"}

    await sink.send(alert_of("11111111", status=Status.RESOLVED))
    resolved_at = len(receiver.requests)
    assert "endsAt" in posted(receiver)[0]
    await eventually(lambda: len(receiver.requests) > resolved_at, what="a re-send after resolve")
    assert all(
        accounts(receiver, i) == ["22222222"] for i in range(resolved_at, len(receiver.requests))
    )
    assert accounts(receiver) == ["22222222"]

    await sink.send(alert_of("22222222", status=Status.RESOLVED))
    count = len(receiver.requests)
    await asyncio.sleep(3 * INTERVAL)
    assert len(receiver.requests) == count
    assert sink.firing == frozenset()


async def test_repeated_firing_notification_replaces_the_alert(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """A repeat of a firing alert (same fingerprint) is re-sent as its latest version, once."""
    await sink.send(make_notification())
    await sink.send(make_notification(summary="cash_to_withdraw fell to 12.00 (< 1000)"))
    count = len(receiver.requests)

    await eventually(lambda: len(receiver.requests) > count, what="a re-send")

    [alert] = posted(receiver)
    assert alert["annotations"]["summary"] == "cash_to_withdraw fell to 12.00 (< 1000)"


@pytest.mark.parametrize("rule_type", ["change", "restriction_change", "account_added"])
async def test_events_are_sent_once(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink, rule_type: str
) -> None:
    """Alerts of event rules never resolve: sent once, never kept, left to resolve_timeout."""
    await sink.send(make_notification(type=rule_type, kind="event"))
    await asyncio.sleep(3 * INTERVAL)

    assert len(receiver.requests) == 1
    assert sink.firing == frozenset()


RULE: TypeAdapter[RuleConfig] = TypeAdapter(RuleConfig)


def _rule(**keys: Any) -> RuleConfig:
    return RULE.validate_python({"name": "r", **keys})


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        ({"type": "threshold", "field": "cash", "op": "<", "value": 1}, "condition"),
        ({"type": "expression", "when": "cash < 1"}, "condition"),
        ({"type": "delta", "field": "cash", "by": 1, "window": "1h"}, "condition"),
        ({"type": "stale", "field": "cash", "for": "1h"}, "condition"),
        ({"type": "delta", "field": "cash", "by": 1}, "event"),
        ({"type": "change", "field": "cash"}, "event"),
        ({"type": "restriction_change"}, "event"),
        ({"type": "account_added"}, "event"),
        ({"type": "account_removed"}, "event"),
    ],
)
def test_the_rule_config_says_event_or_condition(keys: dict[str, Any], kind: str) -> None:
    """Whether a rule's alerts resolve is known in one place: the rule's config."""
    assert _rule(**keys).kind == kind


async def test_a_delta_without_window_is_an_event_at_alertmanager(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """A delta rule without ``window`` is an event: its alert is sent once and never re-sent
    (it used to be kept and re-sent forever, as its config model has ``send_resolved``)."""
    rule = _rule(type="delta", field="cash", by=100)
    before = parse_records([{"account_number": "12345678", "cash": 1000}]).accounts
    after = parse_records([{"account_number": "12345678", "cash": 500}]).accounts
    evaluation = evaluate([rule], before, Snapshot("default", OBSERVED_AT, after), {})
    [made] = evaluation.alerts
    assert not evaluation.active

    await sink.send(Notification("n-delta", made))
    await asyncio.sleep(3 * INTERVAL)

    assert len(receiver.requests) == 1
    assert sink.firing == frozenset()


async def test_failed_send_is_not_kept(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """A firing alert that was not delivered is not re-sent: the delivery loop retries it."""
    receiver.reply = Reply(status=503)
    with pytest.raises(SinkError):
        await sink.send(make_notification())

    receiver.reply = Reply()
    await asyncio.sleep(3 * INTERVAL)
    assert len(receiver.requests) == 1
    assert sink.firing == frozenset()


async def test_failed_resolve_still_stops_the_resends(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """A resolve that fails is retried by the delivery loop; meanwhile no re-send revives it."""
    await sink.send(make_notification())
    receiver.reply = Reply(status=503)
    with pytest.raises(SinkError):
        await sink.send(make_notification(status=Status.RESOLVED))
    count = len(receiver.requests)

    await asyncio.sleep(3 * INTERVAL)

    assert len(receiver.requests) == count
    assert sink.firing == frozenset()


async def test_restore_resends_right_away(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """restore() does no I/O itself; the background task POSTs the restored firing alerts at
    once, not an interval later (then every interval, as any firing alert). Resolved
    notifications and events handed over are ignored."""
    sink = make_sink(receiver.url, session, resend_interval=timedelta(minutes=1))
    try:
        await sink.restore(
            [
                alert_of("11111111"),
                alert_of("22222222", status=Status.RESOLVED),
                alert_of("33333333", type="change", kind="event"),
                alert_of("44444444"),
            ]
        )
        assert receiver.requests == []
        assert sink.firing == {"fp-11111111", "fp-44444444"}

        await eventually(lambda: receiver.requests, what="the restored alerts", timeout=5)
        assert accounts(receiver) == ["11111111", "44444444"]
    finally:
        await sink.aclose()


async def test_restore_keeps_what_was_sent_since_start(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """An alert sent since start-up keeps its newer document over the restored one."""
    await sink.send(make_notification(summary="newer"))
    await sink.restore([make_notification(summary="older")])

    await eventually(lambda: len(receiver.requests) >= 2, what="a re-send")

    assert [a["annotations"]["summary"] for a in posted(receiver)] == ["newer"]


async def test_a_replica_that_does_not_do_singleton_work_never_re_sends(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """sync(resend=False): the alerts it delivers are posted, never re-sent by it."""
    sink = make_sink(receiver.url, session, resend_interval=0.1)
    try:
        await sink.sync([], resend=False)
        await sink.send(alert_of("11111111"))
        await asyncio.sleep(0.4)
        assert len(receiver.requests) == 1
    finally:
        await sink.aclose()


async def test_sync_takes_the_database_view_and_ends_what_left_it(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """On the replica doing singleton work, sync replaces the re-sent set with what the state
    database says fires (delivered by any replica), and posts each alert that left the set as
    resolved, once: a re-send that raced with another replica's resolve ends there."""
    sink = make_sink(receiver.url, session, resend_interval=timedelta(minutes=1))
    try:
        await sink.send(alert_of("11111111"))  # this replica delivered it; another resolved it
        await sink.sync([alert_of("22222222"), alert_of("33333333", kind="event")], resend=True)
        assert sink.firing == {"fp-22222222"}
        [ended] = posted(receiver)
        assert ended["labels"]["account_number"] == "11111111"
        assert "endsAt" in ended
        await sink.sync([alert_of("22222222")], resend=True)
        assert len(receiver.requests) == 2  # nothing left the set: nothing posted
        await sink.resend()
        assert accounts(receiver) == ["22222222"]
    finally:
        await sink.aclose()


async def test_resend_failures_are_logged_and_retried(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """A failing re-send logs alertmanager_resend_failed with the sink and the error (never
    the URL or headers), raises nothing, and is tried again next interval."""
    receiver.reply = Reply(status=500, body=f"{HEADER_SECRET} {URL_SECRET}")
    with capture_logs() as logs:
        await sink.restore([make_notification()])
        await eventually(lambda: len(receiver.requests) >= 2, what="two failed re-sends")
        receiver.reply = Reply()
        count = len(receiver.requests)
        await eventually(lambda: len(receiver.requests) > count, what="a re-send that works")

    failures = [e for e in logs if e["event"] == "alertmanager_resend_failed"]
    assert len(failures) >= 2
    assert failures[0]["sink"] == "am"
    assert failures[0]["error"] == "HTTP 500 from sink 'am'"
    assert failures[0]["log_level"] == "warning"
    assert sink.firing == {"fp-0123456789abcdef"}
    for entry in logs:
        text = repr(entry)
        assert receiver.url not in text
        assert "127.0.0.1" not in text
        assert HEADER_SECRET not in text


async def test_unexpected_resend_errors_are_logged_too(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a bug in a re-send is logged (by class name) and the loop carries on."""

    async def broken(documents: list[dict[str, Any]]) -> None:
        raise RuntimeError(HEADER_SECRET)

    await sink.send(make_notification())
    monkeypatch.setattr(sink, "_post", broken)
    with capture_logs() as logs:
        await eventually(
            lambda: len([e for e in logs if e["event"] == "alertmanager_resend_failed"]) >= 2,
            what="two crashed re-sends",
        )

    assert logs[0]["error"] == "RuntimeError"
    assert logs[0]["log_level"] == "error"
    assert HEADER_SECRET not in repr(logs)


async def test_aclose_stops_the_resends(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """After aclose nothing is re-sent, and a late send starts no new task."""
    sink = make_sink(receiver.url, session)
    await sink.send(make_notification())

    await sink.aclose()
    await sink.send(make_notification(fingerprint="fp-late"))
    count = len(receiver.requests)
    await asyncio.sleep(3 * INTERVAL)

    assert len(receiver.requests) == count == 2
    await sink.aclose()  # twice is fine


async def test_resolve_waits_for_a_resend_in_flight(
    receiver: Receiver, sink: alertmanager.AlertmanagerSink
) -> None:
    """A resolve sent while a re-send hangs reaches Alertmanager after it, never before."""
    await sink.send(make_notification())
    receiver.reply = Reply(hang=True)
    await eventually(lambda: len(receiver.requests) >= 2, what="a hanging re-send")

    resolve = asyncio.create_task(sink.send(make_notification(status=Status.RESOLVED)))
    await asyncio.sleep(INTERVAL)
    assert len(receiver.requests) == 2  # the resolve waits for the lock
    receiver.reply = Reply()
    receiver.released.set()
    await resolve

    assert "endsAt" in posted(receiver)[0]
    assert sink.firing == frozenset()


def test_resend_interval_must_be_positive(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="resend_interval"):
        make_sink("http://127.0.0.1:1", session, resend_interval=0)


# --------------------------------------------------------------------------- errors, secrets


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (429, True), (500, True), (503, True)]
)
async def test_status_errors(
    receiver: Receiver,
    sink: alertmanager.AlertmanagerSink,
    *,
    status: int,
    retryable: bool,
) -> None:
    """Alertmanager's 400 (a bad alert) is final, with its text; 429 and 5xx are retried."""
    receiver.reply = Reply(status=status, body='"start time must be before end time"')

    with pytest.raises(SinkError) as info:
        await sink.send(make_notification())

    assert (info.value.status, info.value.retryable) == (status, retryable)
    assert str(info.value).startswith(f"HTTP {status} from sink 'am'")
    if status == 400:
        assert "start time must be before end time" in str(info.value)


async def test_errors_and_repr_hide_url_and_headers(session: aiohttp.ClientSession) -> None:
    """Connection errors name neither the URL (which may hold credentials) nor the headers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:{URL_SECRET}@127.0.0.1:{port}/"
    sink = make_sink(url, session, headers={"X-Api-Key": HEADER_SECRET})

    with pytest.raises(SinkError) as info:
        await sink.send(make_notification())
    await sink.aclose()

    assert info.value.retryable
    for text in (str(info.value), repr(sink)):
        assert URL_SECRET not in text
        assert HEADER_SECRET not in text
        assert "127.0.0.1" not in text
    assert repr(sink) == "AlertmanagerSink(name='am')"


async def test_built_from_config(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """The registry builds it from the TOML keys: headers, generator URL, resend interval."""
    config = AlertmanagerSinkConfig.model_validate(
        {
            "type": "alertmanager",
            "name": "am",
            "url": receiver.url,
            "resend_interval": "1s",
            "generator_url": "https://monitor.example/",
            "headers": {"Authorization": HEADER_SECRET},
            "timeout": "2s",
        }
    )
    sink = build_sink(config, index=0, session=session)
    assert isinstance(sink, alertmanager.AlertmanagerSink)
    try:
        await sink.send(make_notification())
        await eventually(lambda: len(receiver.requests) >= 2, what="a re-send after 1s", timeout=3)
    finally:
        await sink.aclose()

    assert receiver.requests[0].headers["Authorization"] == HEADER_SECRET
    assert posted(receiver)[0]["generatorURL"] == "https://monitor.example/"
    assert HEADER_SECRET not in repr(sink)
    assert AlertmanagerSinkConfig.model_validate(
        {"type": "alertmanager", "name": "am", "url": "http://am:9093"}
    ).resend_interval == timedelta(minutes=1)


def test_url_credentials_and_an_authorization_header_conflict(
    session: aiohttp.ClientSession,
) -> None:
    """Basic auth in the URL plus an Authorization header is a ConfigError naming the key
    (aiohttp would refuse every request), never showing either secret."""
    config = AlertmanagerSinkConfig.model_validate(
        {
            "type": "alertmanager",
            "name": "am",
            "url": f"http://user:{URL_SECRET}@am:9093",
            "headers": {"authorization": HEADER_SECRET},
        }
    )

    with pytest.raises(ConfigError, match=r"^sinks\[4\] \(am\)\.headers: ") as info:
        alertmanager.create(config, index=4, session=session)

    assert URL_SECRET not in str(info.value)
    assert HEADER_SECRET not in str(info.value)


# --------------------------------------------------------------------------- the real one


def require_alertmanager() -> str:
    """The Alertmanager binary; skip without it, unless CI or REQUIRE_ENV says it must be."""
    for name in BINARIES:
        if (path := shutil.which(name)) is not None:
            return path
    message = "prometheus-alertmanager is not installed (Debian package 'prometheus-alertmanager')"
    if os.environ.get(REQUIRE_ENV) or os.environ.get("CI") == "true":
        pytest.fail(f"{message}: {REQUIRE_ENV} or CI is set, so it must be (see .ci/run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


#: Alertmanager forgets an alert it has not heard of for ``resolve_timeout``: 4 s here, so a
#: sink that stops re-sending is caught within a test's time.
CONFIG_YML = """\
global:
  resolve_timeout: 4s
route:
  receiver: hook
  group_by: [alertname, source, account_number]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook}
        send_resolved: true
"""


@dataclass
class RealAlertmanager:
    url: str
    hook: Receiver
    log: Path

    def notifications(self, status: str) -> list[dict[str, Any]]:
        """The webhook notifications Alertmanager sent with this status."""
        documents = [json.loads(r.body) for r in self.hook.requests]
        return [d for d in documents if d["status"] == status]


@pytest.fixture
async def real_alertmanager(
    tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[RealAlertmanager]:
    """``prometheus-alertmanager`` on a free 127.0.0.1 port, clustering off, routing every
    alert at once to a webhook receiver in this test; killed afterwards."""
    binary = require_alertmanager()
    hook = Receiver()
    server = TestServer(hook.app())
    await server.start_server()
    hook.url = str(server.make_url("/hook"))
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG_YML.format(hook=hook.url), encoding="utf-8")
    (tmp_path / "data").mkdir()
    log = tmp_path / "alertmanager.log"
    port = free_port()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(session, url, process, log)
        yield RealAlertmanager(url, hook, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5)
            except TimeoutError:
                process.kill()
                await process.wait()
        await server.close()


async def wait_ready(
    session: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, log: Path
) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.returncode is not None:
            pytest.fail(f"alertmanager exited {process.returncode}:\n{read(log)}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/-/ready") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    pytest.fail(f"alertmanager not ready after 10s:\n{read(log)}")


def read(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


async def active_alerts(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v2/alerts", params={"active": "true"}) as response:
        assert response.status == 200
        alerts: list[dict[str, Any]] = await response.json()
    return alerts


async def test_real_alertmanager_fires_and_resolves(
    real_alertmanager: RealAlertmanager, session: aiohttp.ClientSession
) -> None:
    """The real Alertmanager accepts our alert, lists it as active with our labels, notifies
    its webhook receiver "firing" with our labels and summary, then "resolved" after the
    resolved notification, while the sink re-sends the firing one meanwhile."""
    am = real_alertmanager
    config = AlertmanagerSinkConfig.model_validate(
        {"type": "alertmanager", "name": "am", "url": am.url, "resend_interval": "1s"}
    )
    sink = alertmanager.create(config, index=0, session=session)
    now = datetime.now(tz=UTC)
    firing = make_notification(
        labels={"team": "treasury"},
        description="Top up the account.",
        observed_at=now,
        started_at=now - timedelta(seconds=30),
    )
    expected_labels = {
        "alertname": "low-cash",
        "severity": "critical",
        "source": "default",
        "account_number": "12345678",
        "team": "treasury",
    }
    try:
        await sink.send(firing)

        [listed] = await active_alerts(session, am.url)
        assert listed["labels"] == expected_labels
        assert listed["annotations"]["summary"] == firing.alert.summary
        assert listed["status"]["state"] == "active"
        assert listed["startsAt"].startswith(
            (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
        )

        found = await eventually(
            lambda: am.notifications("firing"), what="a firing webhook", timeout=8
        )
        [alert] = found[0]["alerts"]
        assert alert["status"] == "firing"
        assert alert["labels"] == expected_labels
        assert alert["annotations"]["summary"] == "cash_to_withdraw fell to 512.25 (< 1000)"
        assert alert["annotations"]["description"] == "Top up the account."
        assert alert["annotations"]["current"] == "512.25"

        resolved = make_notification(
            status=Status.RESOLVED,
            summary="cash_to_withdraw back to 1500.00",
            current=firing.alert.previous,
            observed_at=datetime.now(tz=UTC),
            started_at=firing.alert.started_at,
            labels={"team": "treasury"},
        )
        await sink.send(resolved)
        found = await eventually(
            lambda: am.notifications("resolved"), what="a resolved webhook", timeout=8
        )
        [alert] = found[0]["alerts"]
        assert alert["status"] == "resolved"
        assert alert["labels"] == expected_labels
        assert await active_alerts(session, am.url) == []
        assert len(am.notifications("firing")) == 1  # re-sends notify nobody again
    finally:
        await sink.aclose()
