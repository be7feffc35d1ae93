"""What the HTTP sinks share (``monitor/sinks/base.py``), against real HTTP receivers on
127.0.0.1: status errors, Retry-After, timeouts, connection errors, the URL and other secrets
kept out of messages and reprs. Shown through the webhook sink, and for the ``ChatSink``
contract through each chat sink (Slack, Discord, Microsoft Teams, Telegram)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sinks_helpers import (
    BOT_TOKEN,
    SECRET_PATH,
    SECRET_QUERY,
    SIGNING_KEY,
    Receiver,
    Reply,
    make_discord,
    make_msteams,
    make_slack,
    make_telegram,
    make_webhook,
    send_failing,
    unused_url,
)
from yarl import URL

from monitor.sinks.base import BatchSink, ChatSink, seconds_in_json
from monitor.sinks.webhook import WebhookSink

ChatSinkFactory = Callable[[str, aiohttp.ClientSession], ChatSink]
CHAT_SINKS: dict[str, ChatSinkFactory] = {
    "discord": make_discord,
    "msteams": make_msteams,
    "telegram": make_telegram,
    "slack": make_slack,
}


@pytest.fixture
def closed_url() -> str:
    """A URL on a port nothing listens on."""
    return unused_url(f"{SECRET_PATH}?{SECRET_QUERY}")


def assert_no_secrets(message: str, url: str) -> None:
    for secret in (
        url,
        SECRET_PATH,
        "XyZpathSecretToken",
        "XyZpathSecret",
        "qs-secret",
        SIGNING_KEY,
        BOT_TOKEN,
        "botToken",
        "127.0.0.1",
    ):
        assert secret not in message


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


# --------------------------------------------------------------------------- secrets


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


def test_repr_hides_the_url(session: aiohttp.ClientSession) -> None:
    """A sink's repr names it and nothing else."""
    sinks = [
        make_webhook(f"http://h{SECRET_PATH}", session),
        make_slack(f"http://h{SECRET_PATH}", session),
    ]

    assert [repr(s) for s in sinks] == ["WebhookSink(name='ops')", "SlackSink(name='chat')"]


# --------------------------------------------------------------------------- all chat sinks


@pytest.mark.parametrize("kind", CHAT_SINKS)
def test_chat_sinks_are_batch_sinks_whose_repr_hides_secrets(
    kind: str, session: aiohttp.ClientSession
) -> None:
    """Each is a BatchSink; its repr names the class and the sink, not the URL or token."""
    sink = CHAT_SINKS[kind](f"http://h{SECRET_PATH}?{SECRET_QUERY}", session)

    assert isinstance(sink, BatchSink)
    assert repr(sink) == f"{type(sink).__name__}(name={sink.name!r})"
    for secret in (SECRET_PATH, "XyZpathSecretToken", SECRET_QUERY, BOT_TOKEN, "http://h"):
        assert secret not in repr(sink)


@pytest.mark.parametrize("kind", CHAT_SINKS)
@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (429, {"Retry-After": "7"}, True, 7.0),
        (503, {"Retry-After": "120"}, True, 120.0),
        (500, {}, True, None),
        (400, {}, False, None),
        (403, {}, False, None),
        (404, {}, False, None),
    ],
)
async def test_chat_status_errors(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    *,
    kind: str,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    retry_after: float | None,
) -> None:
    """429 and 5xx are retryable with Retry-After; other 4xx are permanent."""
    receiver.reply = Reply(status=status, headers=headers, body="")

    error = await send_failing(CHAT_SINKS[kind](receiver.url, session))

    assert (error.status, error.retryable, error.retry_after) == (status, retryable, retry_after)


@pytest.mark.parametrize("kind", CHAT_SINKS)
@pytest.mark.parametrize("status", [400, 404, 429, 500])
async def test_chat_errors_hide_echoed_secrets(
    receiver: Receiver, session: aiohttp.ClientSession, kind: str, status: int
) -> None:
    """A receiver echoing its URL, path, query or the bot token does not leak them."""
    sink = CHAT_SINKS[kind](receiver.url, session)
    receiver.reply = Reply(status=status, body="")
    await send_failing(sink)
    [request] = receiver.requests
    if kind == "telegram":  # its secret is the token in the path; the receiver's path is not
        url = f"{URL(receiver.url).origin()}{request.path}"
        extra = f"{BOT_TOKEN} bot{BOT_TOKEN} {BOT_TOKEN.replace(':', '%3A')}"
    else:
        url = receiver.url
        extra = f"XyZpathSecretToken {SECRET_QUERY} qs-secret-signature"
    receiver.reply = Reply(
        status=status, body=f"bad {url} {request.path} {URL(request.path).path} {extra}"
    )

    error = await send_failing(sink)

    assert str(error).startswith(f"HTTP {status} from sink '{sink.name}'")
    assert_no_secrets(str(error), url)


@pytest.mark.parametrize("kind", CHAT_SINKS)
async def test_chat_connection_errors_hide_secrets(
    receiver: Receiver, closed_url: str, session: aiohttp.ClientSession, kind: str
) -> None:
    """Connection failures say what failed, not where, and drop aiohttp's text."""
    error = await send_failing(CHAT_SINKS[kind](closed_url, session))

    assert error.retryable
    assert error.__suppress_context__
    assert_no_secrets(str(error), closed_url)


@pytest.mark.parametrize("kind", CHAT_SINKS)
async def test_empty_batch_sends_nothing(
    receiver: Receiver, session: aiohttp.ClientSession, kind: str
) -> None:
    """No notifications, no request."""
    sink = CHAT_SINKS[kind](receiver.url, session)
    assert isinstance(sink, BatchSink)

    await sink.send_batch([])

    assert receiver.requests == []


# --------------------------------------------------------------------------- TLS, non-HTTP URLs


@pytest.fixture(scope="module")
def untrusted_tls() -> ssl.SSLContext:
    """A server context with a certificate from a CA nobody trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.mark.parametrize(
    ("server", "detail"),
    [
        pytest.param(
            "plain-http",
            "TLS handshake failed: the server does not speak TLS (wrong port?)",
            id="https-to-a-plain-port",
        ),
        pytest.param(
            "untrusted",
            "TLS handshake failed: certificate verify failed: unable to get local issuer "
            "certificate",
            id="untrusted-certificate",
        ),
    ],
)
async def test_a_tls_failure_is_permanent_and_named_truthfully(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    untrusted_tls: ssl.SSLContext,
    server: str,
    detail: str,
) -> None:
    """An https:// sink URL that meets a plain-HTTP port or a certificate it cannot trust is a
    configuration problem: failed at once (no retries), saying what TLS said, with no errno
    (ssl's error code 1 is not EPERM) and not where."""
    tls = TestServer(receiver.app(), host="127.0.0.1")
    await tls.start_server(ssl=untrusted_tls)
    port = URL(receiver.url).port if server == "plain-http" else tls.port
    url = f"https://127.0.0.1:{port}{SECRET_PATH}?{SECRET_QUERY}"
    try:
        error = await send_failing(make_webhook(url, session, secret=SIGNING_KEY))
    finally:
        await tls.close()

    assert not error.retryable
    assert str(error) == f"connection failed sending to sink 'ops': {detail}"
    assert "EPERM" not in str(error)
    assert "not permitted" not in str(error)
    assert_no_secrets(str(error), url)
    assert receiver.requests == []


async def test_a_non_http_url_is_permanent(session: aiohttp.ClientSession) -> None:
    """A URL aiohttp cannot send to (``ftp://``) fails at once: no retry can fix it."""
    sink = WebhookSink("ops", session=session, url=SecretStr(f"ftp://127.0.0.1{SECRET_PATH}"))

    error = await send_failing(sink)

    assert not error.retryable
    assert str(error) == "invalid URL for sink 'ops': not an http or https URL"


@pytest.mark.parametrize("kind", CHAT_SINKS)
async def test_chat_sinks_fail_tls_at_once(
    receiver: Receiver, session: aiohttp.ClientSession, kind: str
) -> None:
    """Every chat sink posts through the one translation table: https:// on a plain port is a
    permanent TLS failure for each."""
    url = f"https://127.0.0.1:{URL(receiver.url).port}{SECRET_PATH}?{SECRET_QUERY}"

    error = await send_failing(CHAT_SINKS[kind](url, session))

    assert not error.retryable
    assert str(error).endswith("TLS handshake failed: the server does not speak TLS (wrong port?)")
    assert_no_secrets(str(error), url)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param('{"retry_after": 7}', 7.0, id="integer"),
        pytest.param('{"retry_after": 1.5}', 1.5, id="fraction"),
        pytest.param('{"retry_after": 0}', 0.0, id="zero"),
        pytest.param('{"retry_after": -1}', None, id="negative"),
        pytest.param('{"retry_after": true}', None, id="boolean"),
        pytest.param('{"retry_after": "7"}', None, id="string"),
        pytest.param('{"other": 7}', None, id="absent"),
        pytest.param("[7]", None, id="not-an-object"),
        pytest.param("rate limited", None, id="not-json"),
        pytest.param('{"retry_after": 1' + "0" * 400 + "}", None, id="too-large-for-a-float"),
        pytest.param("[" * 100_000, None, id="nested-too-deep"),
    ],
)
def test_seconds_in_json(body: str, expected: float | None) -> None:
    """A rate-limit answer's wait in its JSON body, or None for anything else a receiver may
    send: never an exception."""
    assert seconds_in_json(body, "retry_after") == expected
