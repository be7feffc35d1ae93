"""The Telegram sink against a real HTTP receiver on 127.0.0.1 as its Bot API server: the
sendMessage request, HTML text within Telegram's limits, batches, and its error answers."""

from __future__ import annotations

import re

import aiohttp
import pytest
from sinks_helpers import (
    BOT_TOKEN,
    DESCRIPTION,
    LABELS,
    Receiver,
    Reply,
    huge,
    make_notification,
    make_telegram,
    notifications,
    posted,
    send_failing,
)

from monitor.models import Severity, Status
from monitor.sinks import telegram
from monitor.sinks import text as sink_text


def assert_telegram_html(text: str) -> None:
    """At most 4096 characters; only our tags, balanced; only whole entities."""
    assert len(text) <= 4096
    for tag in ("b", "i", "code"):
        assert text.count(f"<{tag}>") == text.count(f"</{tag}>")
    bare = re.sub(r"</?(b|i|code)>", "", text)
    assert "<" not in bare
    assert ">" not in bare
    assert not re.search(r"&(?!amp;|lt;|gt;)", text)


async def test_telegram_request(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """sendMessage on the bot's path, HTML mode, no link previews, a numeric chat id."""
    notification = make_notification(labels=LABELS, description=DESCRIPTION)

    await make_telegram(receiver.url, session).send(notification)

    document = posted(receiver)
    assert receiver.requests[0].path == f"/bot{BOT_TOKEN}/sendMessage"
    assert {k: v for k, v in document.items() if k != "text"} == {
        "chat_id": -1001234567890,
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    assert document["text"] == (
        "🚨 <b>[CRITICAL] FIRING low-cash</b>\n"
        "cash_to_withdraw fell to 512.25 (&lt; 1000)\n"
        f"<i>{DESCRIPTION}</i>\n"
        "\n"
        "<b>Account:</b> 12345678\n"
        "<b>Field:</b> cash_to_withdraw\n"
        "<b>Previous:</b> 1500.00\n"
        "<b>Current:</b> 512.25\n"
        "<b>Source:</b> default\n"
        "<b>Labels:</b> team=risk, desk=ny\n"
        "<b>Observed:</b> 2024-05-01T12:00:00Z\n"
        "<b>Fingerprint:</b> <code>fp-0123456789abcdef</code>"
    )


async def test_telegram_channel_and_resolved(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """An @channel chat id stays text; resolved says so first."""
    sink = make_telegram(receiver.url, session, chat_id="@balance_alerts")

    await sink.send(make_notification(status=Status.RESOLVED, severity=Severity.WARNING))

    document = posted(receiver)
    assert document["chat_id"] == "@balance_alerts"
    assert document["text"].startswith("✅ <b>RESOLVED [WARNING] low-cash</b>\n")
    assert "<i>" not in document["text"]
    assert "Labels" not in document["text"]


@pytest.mark.parametrize(
    ("status", "severity", "prefix"),
    [
        (Status.FIRING, Severity.CRITICAL, "🚨 <b>[CRITICAL] FIRING "),
        (Status.FIRING, Severity.WARNING, "⚠️ <b>[WARNING] FIRING "),
        (Status.FIRING, Severity.INFO, f"{sink_text.SYMBOLS[Severity.INFO]} <b>[INFO] FIRING "),
        (Status.RESOLVED, Severity.INFO, "✅ <b>RESOLVED [INFO] "),
    ],
)
def test_telegram_severity(status: Status, severity: Severity, prefix: str) -> None:
    """The headline shows the severity, with an emoji for it (or for resolved)."""
    assert telegram.text([make_notification(status=status, severity=severity).alert]).startswith(
        prefix
    )


def test_telegram_escapes_user_text() -> None:
    """&, < and > in rule names, summaries, values and labels become entities."""
    alert = make_notification(
        rule="a<b>&c",
        summary="<a href='x'>y</a> & more",
        current="<restricted>",
        labels={"team": "<i>"},
        description="<b>bold</b>",
    ).alert

    text = telegram.text([alert])

    assert_telegram_html(text)
    assert "a&lt;b&gt;&amp;c" in text
    assert "&lt;a href='x'&gt;y&lt;/a&gt; &amp; more" in text
    assert "<i>&lt;b&gt;bold&lt;/b&gt;</i>" in text
    assert "team=&lt;i&gt;" in text


@pytest.mark.parametrize("count", [1, 3, 40, 500])
def test_telegram_limits(count: int) -> None:
    """Huge texts and long batches stay within 4096 characters of valid HTML."""
    for batch in (notifications(count), [huge() for _ in range(count)]):
        text = telegram.text([n.alert for n in batch])
        assert_telegram_html(text)


async def test_telegram_batch(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """One message: a count headline and one line each."""
    await make_telegram(receiver.url, session).send_batch(notifications(3))

    assert posted(receiver)["text"] == (
        "<b>3 alerts: 2 firing, 1 resolved</b>\n"
        "🚨 <b>[CRITICAL] FIRING rule-0</b> · <code>10000000</code>: summary number 0\n"
        "⚠️ <b>[WARNING] FIRING rule-1</b> · <code>10000001</code>: summary number 1\n"
        "✅ <b>RESOLVED [INFO] rule-2</b> · <code>10000002</code>: summary number 2"
    )


def test_telegram_long_batch_counts_the_rest() -> None:
    """Lines that do not fit are counted on a last line."""
    batch = notifications(500)

    lines = telegram.text([n.alert for n in batch]).splitlines()

    shown = len(lines) - 2
    rest = batch[shown:]
    resolved = sum(n.alert.status is Status.RESOLVED for n in rest)
    assert 20 < shown < 500
    assert lines[-1] == f"…and {len(rest)} more: {len(rest) - resolved} firing, {resolved} resolved"


@pytest.mark.parametrize(
    ("body", "retry_after"),
    [
        (
            '{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5",'
            '"parameters":{"retry_after":5}}',
            5.0,
        ),
        ('{"ok":false,"parameters":{"retry_after":"5"}}', None),
        ('{"ok":false}', None),
        ("<html>", None),
    ],
)
async def test_telegram_rate_limit(
    receiver: Receiver, session: aiohttp.ClientSession, body: str, retry_after: float | None
) -> None:
    """A 429 is retryable after the body's parameters.retry_after."""
    receiver.reply = Reply(status=429, body=body)

    error = await send_failing(make_telegram(receiver.url, session))

    assert error.retryable
    assert error.retry_after == retry_after


async def test_telegram_rejection(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A 400 is permanent and quotes Telegram's description."""
    receiver.reply = Reply(
        status=400, body='{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}'
    )

    error = await send_failing(make_telegram(receiver.url, session))

    assert not error.retryable
    assert "Bad Request: chat not found" in str(error)


async def test_telegram_timeout_hides_the_token(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A timeout names the sink only."""
    receiver.reply = Reply(hang=True)

    error = await send_failing(make_telegram(receiver.url, session, timeout=0.1))

    assert str(error) == "timeout after 0.1s sending to sink 'tg'"


async def test_with_commands_a_firing_alert_carries_the_buttons(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """ "Acknowledge" and "Silence 1h", each naming the notification (at most 64 bytes)."""
    sink = make_telegram(receiver.url, session, commands=True)
    await sink.send(make_notification())
    assert posted(receiver)["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Acknowledge", "callback_data": "ack:n-0001"},
                {"text": "Silence 1h", "callback_data": "s1h:n-0001"},
            ]
        ]
    }


async def test_an_event_carries_silence_only(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """An event (a restriction change) fires once and is never an episode that firing lasts:
    there is nothing to acknowledge (``ack`` would refuse it), so only "Silence 1h" is offered."""
    sink = make_telegram(receiver.url, session, commands=True)
    await sink.send(make_notification(kind="event", rule="restricted", type="restriction_change"))
    assert posted(receiver)["reply_markup"] == {
        "inline_keyboard": [[{"text": "Silence 1h", "callback_data": "s1h:n-0001"}]]
    }


@pytest.mark.parametrize(
    ("commands", "batch", "status"),
    [
        (False, 1, Status.FIRING),  # no bot: nobody would answer the buttons
        (True, 1, Status.RESOLVED),  # nothing left to act on
        (True, 3, Status.FIRING),  # a grouped message: no single alert to act on
    ],
)
async def test_no_buttons(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    commands: bool,
    batch: int,
    status: Status,
) -> None:
    sink = make_telegram(receiver.url, session, commands=commands)
    await sink.send_batch(notifications(batch, status=status))
    assert "reply_markup" not in posted(receiver)
