"""The apprise sink: Apprise's json:// service against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sinks_helpers import Receiver, Reply, make_digest, make_notification, serving

from monitor import digest_render
from monitor.config import AppriseSinkConfig
from monitor.errors import ConfigError, SinkError
from monitor.models import Severity, Status
from monitor.sinks import apprise as apprise_sink
from monitor.sinks.base import BatchSink, Sink
from monitor.sinks.registry import build_sink

SECRET_PATH = "/hook/XyZpathSecret"

# Apprise's plugins import imghdr (deprecated since Python 3.11) the first time Apprise() loads
# them: a warning about Apprise, not about us.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """The sink quiets Apprise's loggers; put them back as they were after each test."""
    loggers = [logging.getLogger(name) for name in apprise_sink.QUIET_LOGGERS]
    saved = [(logger.propagate, list(logger.handlers)) for logger in loggers]
    try:
        yield
    finally:
        for logger, (propagate, handlers) in zip(loggers, saved, strict=True):
            logger.propagate, logger.handlers[:] = propagate, handlers


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(SECRET_PATH, scheme="json") as receiver:
        yield receiver


def make_sink(url: str, **settings: Any) -> apprise_sink.AppriseSink:
    config = AppriseSinkConfig.model_validate(
        {"type": "apprise", "name": "push", "url": url, **settings}
    )
    return apprise_sink.create(config, index=0, session=None)  # type: ignore[arg-type]


async def send_failing(sink: Sink) -> SinkError:
    with pytest.raises(SinkError) as info:
        await sink.send(make_notification())
    return info.value


def assert_no_url(text: str, url: str) -> None:
    for secret in (url, SECRET_PATH, "XyZpathSecret"):
        assert secret not in text


# --------------------------------------------------------------------------- delivery


async def test_posts_title_and_body(receiver: Receiver) -> None:
    """Apprise's JSON document carries our title, body and notification type."""
    notification = make_notification(description="Top up today.", labels={"team": "ops"})

    await make_sink(receiver.url).send(notification)

    [request] = receiver.requests
    assert request.path == SECRET_PATH
    document = json.loads(request.body)
    assert document["title"] == "[CRITICAL] FIRING low-cash"
    assert document["type"] == "failure"
    assert document["message"].splitlines() == [
        "cash_to_withdraw fell to 512.25 (< 1000)",
        "",
        "Top up today.",
        "",
        "Status:      firing",
        "Source:      default",
        "Account:     12345678",
        "Field:       cash_to_withdraw",
        "Change:      1500.00 → 512.25",
        "Observed at: 2024-05-01T12:00:00Z",
        "Started at:  —",
        "Labels:      team=ops",
        "Fingerprint: fp-0123456789abcdef",
    ]


@pytest.mark.parametrize(
    ("status", "severity", "source", "title", "kind"),
    [
        (Status.FIRING, Severity.CRITICAL, "default", "[CRITICAL] FIRING low-cash", "failure"),
        (Status.FIRING, Severity.WARNING, "default", "[WARNING] FIRING low-cash", "warning"),
        (Status.FIRING, Severity.INFO, "family", "[INFO] FIRING low-cash (family)", "info"),
        (Status.RESOLVED, Severity.CRITICAL, "default", "RESOLVED [CRITICAL] low-cash", "success"),
    ],
)
def test_title_and_type(
    status: Status, severity: Severity, source: str, title: str, kind: str
) -> None:
    """Status, severity and rule in the title; resolved is a success, firing by severity."""
    alert = make_notification(status=status, severity=severity, source=source).alert

    assert (apprise_sink.title(alert), apprise_sink.notify_type(alert)) == (title, kind)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [500, 404])
async def test_failure_is_retryable(receiver: Receiver, status: int) -> None:
    """Apprise reports only failure, so any failure is retryable, and says Apprise hides why."""
    receiver.reply = Reply(status=status, body=f"no route {receiver.url}")

    error = await send_failing(make_sink(receiver.url))

    assert error.retryable
    assert str(error).startswith("Apprise could not deliver to sink 'push'")
    assert "does not say why" in str(error)
    assert_no_url(str(error), receiver.url)


async def test_connection_refused() -> None:
    """Nothing listening is a retryable failure too."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"json://127.0.0.1:{port}{SECRET_PATH}"

    error = await send_failing(make_sink(url))

    assert error.retryable
    assert_no_url(str(error), url)


async def test_timeout(receiver: Receiver) -> None:
    """A receiver slower than the sink's timeout is a retryable error."""
    receiver.reply = Reply(hang=True)

    error = await send_failing(make_sink(receiver.url, timeout="0.2s"))

    assert error.retryable
    assert str(error) == "timeout after 0.2s sending to sink 'push'"


async def test_apprise_logs_stay_out_of_ours(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apprise logs the URL's path and the payload at debug level; none of it reaches us."""
    caplog.set_level(logging.DEBUG)
    receiver.reply = Reply(status=500)

    await send_failing(make_sink(receiver.url))

    ours = [r for r in caplog.records if r.name != "aiohttp.access"]  # the receiver's log
    assert not [r for r in ours if r.name.split(".")[0] in ("apprise", "urllib3")]
    assert_no_url("\n".join(r.getMessage() for r in ours), receiver.url)
    out, err = capsys.readouterr()
    assert_no_url(out + err, receiver.url)


# --------------------------------------------------------------------------- building


def test_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the apprise package the sink is a ConfigError that says how to install it."""
    monkeypatch.setitem(sys.modules, "apprise", None)

    with pytest.raises(ConfigError) as info:
        make_sink("json://127.0.0.1:1/hook")

    assert str(info.value) == (
        "sinks[0] (push).type: the apprise sink needs the 'apprise' extra: "
        "pip install 'balance-monitor[apprise]'"
    )


def test_url_apprise_does_not_understand() -> None:
    """A URL no Apprise plugin takes is a ConfigError naming the key, not the URL."""
    url = f"nosuchservice://host{SECRET_PATH}"

    with pytest.raises(ConfigError) as info:
        make_sink(url)

    assert str(info.value).startswith("sinks[0] (push).url: not a URL that Apprise understands")
    assert_no_url(str(info.value), url)


def test_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """url_env works like every other secret; an unset one names the variable."""
    monkeypatch.delenv("TEST_APPRISE_URL", raising=False)
    config = AppriseSinkConfig.model_validate(
        {"type": "apprise", "name": "push", "url_env": "TEST_APPRISE_URL"}
    )

    with pytest.raises(ConfigError, match=r"^sinks\[2\] \(push\)\.url_env: .*TEST_APPRISE_URL"):
        apprise_sink.create(config, index=2, session=None)  # type: ignore[arg-type]


def test_repr_and_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """type = "apprise" builds an AppriseSink (no groups); its repr is only its name."""
    monkeypatch.setenv("TEST_APPRISE_URL", f"json://127.0.0.1:1{SECRET_PATH}")
    config = AppriseSinkConfig.model_validate(
        {"type": "apprise", "name": "push", "url_env": "TEST_APPRISE_URL"}
    )

    sink = build_sink(config, index=0, session=None)  # type: ignore[arg-type]

    assert isinstance(sink, apprise_sink.AppriseSink)
    assert not isinstance(sink, BatchSink)
    assert repr(sink) == "AppriseSink(name='push')"


async def test_a_digest_is_its_plain_text_under_its_headline(receiver: Receiver) -> None:
    """A digest with an alert fired is a ``warning``; its body is the plain text."""
    digest = make_digest()
    await make_sink(receiver.url).send_digest(digest)
    [request] = receiver.requests
    document = json.loads(request.body)
    assert (document["title"], document["type"]) == ("Digest close: 2026-12-01", "warning")
    assert document["message"] == digest_render.text(digest)
