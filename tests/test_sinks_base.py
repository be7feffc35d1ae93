"""The sinks against real HTTP receivers on 127.0.0.1, the log sink, and the registry."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e_helpers import PAYLOAD_FIELDS
from pydantic import SecretStr
from sinks_helpers import Receiver, Reply, make_notification, serving, unused_url
from structlog.testing import capture_logs

from monitor import __version__, encoding
from monitor.config import (
    SINK_CONFIG_TYPES,
    LogSinkConfig,
    SinkConfig,
    SlackSinkConfig,
    WebhookSinkConfig,
)
from monitor.errors import ConfigError, SinkError
from monitor.models import Severity, Status
from monitor.sinks import log, slack, webhook
from monitor.sinks.base import Sink
from monitor.sinks.registry import SINK_FACTORIES, build_sink, build_sinks

SECRET_PATH = "/services/T0001/B0002/XyZpathSecret"
SECRET_QUERY = "token=qs-secret"
SIGNING_KEY = "hmac-signing-key"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(f"{SECRET_PATH}?{SECRET_QUERY}") as receiver:
        yield receiver


@pytest.fixture
def closed_url() -> str:
    """A URL on a port nothing listens on."""
    return unused_url(f"{SECRET_PATH}?{SECRET_QUERY}")


def make_webhook(url: str, session: aiohttp.ClientSession, **settings: Any) -> webhook.WebhookSink:
    config = WebhookSinkConfig.model_validate(
        {"type": "webhook", "name": "ops", "url": url, **settings}
    )
    return webhook.create(config, index=0, session=session)


def make_slack(url: str, session: aiohttp.ClientSession) -> slack.SlackSink:
    config = SlackSinkConfig.model_validate({"type": "slack", "name": "chat", "url": url})
    return slack.create(config, index=0, session=session)


async def send_failing(sink: Sink) -> SinkError:
    with pytest.raises(SinkError) as info:
        await sink.send(make_notification())
    return info.value


# --------------------------------------------------------------------------- webhook


async def test_webhook_body_is_the_payload(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """The body is exactly the documented fields, with money as exact JSON numbers."""
    await make_webhook(receiver.url, session).send(make_notification())

    [request] = receiver.requests
    assert request.path == f"{SECRET_PATH}?{SECRET_QUERY}"
    assert b'"previous":1500.00,"current":512.25' in request.body
    document = encoding.loads(request.body)
    assert list(document) == list(PAYLOAD_FIELDS)
    assert document["current"] == Decimal("512.25")
    assert document["snapshot"] == {
        "account_number": "12345678",
        "cash_to_withdraw": Decimal("512.25"),
    }
    assert document["observed_at"] == "2024-05-01T12:00:00Z"


async def test_webhook_headers(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """JSON content type, our User-Agent, the notification id and the configured headers."""
    sink = make_webhook(receiver.url, session, headers={"X-Team": "ops", "user-agent": "custom/1"})
    await sink.send(make_notification())

    headers = receiver.requests[0].headers
    assert headers["Content-Type"] == "application/json"
    assert headers.getall("User-Agent") == ["custom/1"]
    assert headers["X-Team"] == "ops"
    assert headers["X-Balance-Monitor-Id"] == "n-0001"
    assert "X-Balance-Monitor-Signature" not in headers


async def test_webhook_default_user_agent(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Without a configured one, the User-Agent names balance-monitor and its version."""
    await make_webhook(receiver.url, session).send(make_notification())

    assert receiver.requests[0].headers["User-Agent"] == f"balance-monitor/{__version__}"


@pytest.mark.parametrize("spelling", ["secret", "secret_env", "secret_file"])
async def test_webhook_signature(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    spelling: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The signature is the HMAC-SHA256 of the raw body, whichever way the secret is given."""
    settings = {
        "secret": SIGNING_KEY,
        "secret_env": "TEST_WEBHOOK_SECRET",
        "secret_file": str(tmp_path / "secret"),
    }
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SIGNING_KEY)
    (tmp_path / "secret").write_text(f"{SIGNING_KEY}\n", encoding="utf-8")
    sink = make_webhook(receiver.url, session, **{spelling: settings[spelling]})

    await sink.send(make_notification())

    [request] = receiver.requests
    expected = hmac.new(SIGNING_KEY.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Balance-Monitor-Signature"], f"sha256={expected}")


async def test_webhook_reuses_the_connection(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Bodies are drained, so consecutive sends share one keep-alive connection."""
    sink = make_webhook(receiver.url, session)
    receiver.reply = Reply(body="x" * 10_000)

    await sink.send(make_notification())
    await sink.send(make_notification())

    first, second = receiver.requests
    assert first.peer == second.peer


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (500, {}, True, None),
        (502, {}, True, None),
        (503, {"Retry-After": "120"}, True, 120.0),
        (429, {"Retry-After": "7"}, True, 7.0),
        (429, {"Retry-After": "soon"}, True, None),
        (429, {}, True, None),
        (408, {}, True, None),
        (400, {"Retry-After": "7"}, False, None),
        (401, {}, False, None),
        (404, {}, False, None),
        (410, {}, False, None),
        (302, {"Location": "http://127.0.0.1:1/elsewhere"}, False, None),
    ],
)
async def test_status_errors(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    *,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    retry_after: float | None,
) -> None:
    """Non-2xx answers: 408, 429 and 5xx are retryable (with Retry-After); others are not."""
    receiver.reply = Reply(status=status, headers=headers, body="")

    error = await send_failing(make_webhook(receiver.url, session))

    assert (error.status, error.retryable, error.retry_after) == (status, retryable, retry_after)
    assert str(error).startswith(f"HTTP {status} from sink 'ops'")
    assert len(receiver.requests) == 1  # redirects are not followed


async def test_retry_after_http_date(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A Retry-After HTTP-date becomes the seconds until that moment."""
    later = datetime.now(tz=UTC) + timedelta(seconds=120)
    receiver.reply = Reply(status=503, headers={"Retry-After": format_datetime(later, usegmt=True)})

    error = await send_failing(make_webhook(receiver.url, session))

    assert error.retry_after is not None
    assert 100 <= error.retry_after <= 121


async def test_client_error_body_excerpt(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A 4xx message carries the first 200 characters of the body, on one line."""
    receiver.reply = Reply(status=400, body="  invalid_payload:\n" + "x" * 500)

    error = await send_failing(make_webhook(receiver.url, session))

    excerpt = ("invalid_payload: " + "x" * 500)[:200]
    assert str(error) == f"HTTP 400 from sink 'ops': {excerpt}"


async def test_connection_refused(closed_url: str, session: aiohttp.ClientSession) -> None:
    """Nothing listening is a retryable error without a status."""
    error = await send_failing(make_webhook(closed_url, session))

    assert error.retryable
    assert error.status is None
    assert str(error).startswith("connection failed sending to sink 'ops': ClientConnectorError")


async def test_timeout(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A receiver slower than the sink's timeout is a retryable error."""
    receiver.reply = Reply(hang=True)

    error = await send_failing(make_webhook(receiver.url, session, timeout=0.1))

    assert error.retryable
    assert str(error) == "timeout after 0.1s sending to sink 'ops'"


@pytest.mark.parametrize(
    "reply", [Reply(status=500, body="{url}"), Reply(status=404, body="no route {url} {path}")]
)
async def test_status_messages_hide_the_url(
    receiver: Receiver, session: aiohttp.ClientSession, reply: Reply
) -> None:
    """Even when the receiver echoes the URL, the message does not contain it or the secret."""
    receiver.reply = Reply(
        status=reply.status, body=reply.body.format(url=receiver.url, path=SECRET_PATH)
    )

    error = await send_failing(make_webhook(receiver.url, session, secret=SIGNING_KEY))

    assert_no_secrets(str(error), receiver.url)


async def test_connection_messages_hide_the_url(
    receiver: Receiver, closed_url: str, session: aiohttp.ClientSession
) -> None:
    """Connection errors and timeouts say what failed, not where."""
    receiver.reply = Reply(hang=True)
    hanging = make_webhook(receiver.url, session, secret=SIGNING_KEY, timeout=0.1)
    refused = make_webhook(closed_url, session, secret=SIGNING_KEY)

    for sink, url in ((hanging, receiver.url), (refused, closed_url)):
        error = await send_failing(sink)
        assert_no_secrets(str(error), url)
        assert error.__suppress_context__  # the aiohttp error's text may hold the URL


def assert_no_secrets(message: str, url: str) -> None:
    for secret in (url, SECRET_PATH, "XyZpathSecret", "qs-secret", SIGNING_KEY, "127.0.0.1"):
        assert secret not in message


def test_repr_hides_the_url(session: aiohttp.ClientSession) -> None:
    """A sink's repr names it and nothing else."""
    sinks = [
        make_webhook(f"http://h{SECRET_PATH}", session),
        make_slack(f"http://h{SECRET_PATH}", session),
    ]

    assert [repr(s) for s in sinks] == ["WebhookSink(name='ops')", "SlackSink(name='chat')"]


# --------------------------------------------------------------------------- slack


async def post_to_slack(
    receiver: Receiver, session: aiohttp.ClientSession, **changes: Any
) -> dict[str, Any]:
    await make_slack(receiver.url, session).send(make_notification(**changes))
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    document: dict[str, Any] = json.loads(request.body)
    return document


async def test_slack_message_shape(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A text fallback, a summary section, and an attachment with the details and context."""
    document = await post_to_slack(receiver, session)

    headline = (
        ":rotating_light: [CRITICAL] FIRING low-cash: cash_to_withdraw fell to 512.25 (&lt; 1000)"
    )
    assert document["text"] == headline
    assert document["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": headline}}]
    [attachment] = document["attachments"]
    assert attachment["color"] == "danger"
    fields, context = attachment["blocks"]
    assert [f["text"] for f in fields["fields"]] == [
        "*Rule*\nlow-cash",
        "*Severity*\ncritical",
        "*Account*\n12345678",
        "*Field*\ncash_to_withdraw",
        "*Previous*\n1500.00",
        "*Current*\n512.25",
    ]
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == (
        "observed 2024-05-01T12:00:00Z · fingerprint `fp-0123456789abcdef`"
    )


@pytest.mark.parametrize(
    ("status", "severity", "color", "prefix"),
    [
        (Status.FIRING, Severity.CRITICAL, "danger", ":rotating_light: [CRITICAL] FIRING "),
        (Status.FIRING, Severity.WARNING, "warning", ":warning: [WARNING] FIRING "),
        (Status.FIRING, Severity.INFO, "#439FE0", ":information_source: [INFO] FIRING "),
        (Status.RESOLVED, Severity.CRITICAL, "good", ":white_check_mark: RESOLVED [CRITICAL] "),
        (Status.RESOLVED, Severity.INFO, "good", ":white_check_mark: RESOLVED [INFO] "),
    ],
)
def test_slack_color_and_prefix(
    status: Status, severity: Severity, color: str, prefix: str
) -> None:
    """Resolved is green; firing is coloured by severity."""
    document = slack.message(make_notification(status=status, severity=severity).alert)

    assert document["attachments"][0]["color"] == color
    assert document["text"].startswith(prefix)


def test_slack_escapes_user_text() -> None:
    """&, < and > in rule names, summaries and values become entities."""
    notification = make_notification(
        rule="a<b>&c", summary="<!channel> & <http://x|y>", current="<restricted>"
    )
    document = slack.message(notification.alert)

    text = json.dumps(document)
    assert "<" not in text
    assert ">" not in text.replace("&gt;", "")
    assert "a&lt;b&gt;&amp;c" in document["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in document["text"]
    assert "*Current*\n&lt;restricted&gt;" in text.replace("\\n", "\n")


def test_slack_without_account_or_field() -> None:
    """A source-level alert names the source and shows dashes for account and field."""
    alert = make_notification(
        account_number=None, field=None, previous=None, current=None, source="vision"
    ).alert

    document = slack.message(alert)

    assert " low-cash (vision): " in document["text"]
    fields = [f["text"] for f in document["attachments"][0]["blocks"][0]["fields"]]
    assert "*Account*\n—" in fields
    assert "*Previous*\n—" in fields


def test_slack_names_a_non_default_source() -> None:
    """A notification of a named source names it beside the rule; the default source is implied."""
    named = slack.message(make_notification(source="family").alert)
    default = slack.message(make_notification().alert)

    assert " low-cash (family): " in named["text"]
    assert "(default)" not in default["text"]


async def test_slack_rejection(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Slack's 404 no_service is permanent and says why."""
    receiver.reply = Reply(status=404, body="no_service")

    error = await send_failing(make_slack(receiver.url, session))

    assert not error.retryable
    assert str(error) == "HTTP 404 from sink 'chat': no_service"


# --------------------------------------------------------------------------- log


@pytest.mark.parametrize(
    ("level", "status", "logged_at"),
    [
        ("warning", Status.FIRING, "warning"),
        ("error", Status.FIRING, "error"),
        ("info", Status.FIRING, "info"),
        ("error", Status.RESOLVED, "info"),
    ],
)
async def test_log_sink(level: str, status: Status, logged_at: str) -> None:
    """One 'notification' event per send, at the configured level while firing."""
    config = LogSinkConfig.model_validate({"type": "log", "name": "journal", "level": level})
    sink = log.create(config, index=0, session=None)  # type: ignore[arg-type]

    with capture_logs() as events:
        await sink.send(make_notification(status=status))
    await sink.aclose()

    assert events == [
        {
            "event": "notification",
            "log_level": logged_at,
            "sink": "journal",
            "id": "n-0001",
            "fingerprint": "fp-0123456789abcdef",
            "status": status.value,
            "rule": "low-cash",
            "type": "threshold",
            "severity": "critical",
            "source": "default",
            "account_number": "12345678",
            "field": "cash_to_withdraw",
            "previous": "1500.00",
            "current": "512.25",
            "summary": "cash_to_withdraw fell to 512.25 (< 1000)",
            "observed_at": "2024-05-01T12:00:00Z",
        }
    ]


# --------------------------------------------------------------------------- registry


def test_factories_match_config_types() -> None:
    """Every TOML sink type has a factory, and every factory a config model."""
    assert set(SINK_FACTORIES) == set(SINK_CONFIG_TYPES)


SINK_CONFIGS: list[SinkConfig] = [
    WebhookSinkConfig(type="webhook", name="ops", url=SecretStr("https://example.com/hook")),
    SlackSinkConfig(type="slack", name="chat", url_env="TEST_SLACK_URL"),
    LogSinkConfig(type="log", name="journal"),
]


async def test_build_sinks(session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each config becomes the sink of its type, keyed by name."""
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/X")

    sinks = build_sinks(SINK_CONFIGS, session)

    assert {name: type(sink) for name, sink in sinks.items()} == {
        "ops": webhook.WebhookSink,
        "chat": slack.SlackSink,
        "journal": log.LogSink,
    }
    assert all(isinstance(sink, Sink) and sink.name == name for name, sink in sinks.items())
    for sink in sinks.values():
        await sink.aclose()


def test_build_sink_names_the_missing_secret(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset url_env is a ConfigError naming the key and the variable."""
    monkeypatch.delenv("TEST_SLACK_URL", raising=False)

    with pytest.raises(ConfigError, match=r"^sinks\[1\]\.url_env: .*TEST_SLACK_URL"):
        build_sink(SINK_CONFIGS[1], index=1, session=session)


def test_build_sinks_refuses_duplicate_names(session: aiohttp.ClientSession) -> None:
    """Two sinks with one name are a ConfigError naming the second."""
    configs: list[SinkConfig] = [
        SINK_CONFIGS[2],
        LogSinkConfig(type="log", name="journal", level="error"),
    ]

    with pytest.raises(ConfigError, match=r"^sinks\[1\]\.name: duplicate sink name 'journal'"):
        build_sinks(configs, session)
