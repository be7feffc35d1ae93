"""The chat sinks (Discord, Microsoft Teams, Telegram, Slack batches) against real HTTP receivers
on 127.0.0.1: message shapes, the services' size limits, errors, and secrets kept out of sight."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from pydantic import TypeAdapter
from sinks_helpers import Receiver, Reply, make_notification, serving, unused_url
from yarl import URL

from monitor.config import (
    DiscordSinkConfig,
    MsTeamsSinkConfig,
    SinkConfig,
    SlackSinkConfig,
    TelegramSinkConfig,
)
from monitor.errors import ConfigError, SinkError
from monitor.models import Notification, Severity, Status
from monitor.sinks import discord, msteams, slack, telegram
from monitor.sinks.base import BatchSink, HttpSink
from monitor.sinks.registry import build_sink

SECRET_PATH = "/api/webhooks/1234/XyZpathSecretToken"
SECRET_QUERY = "sig=qs-secret-signature"
BOT_TOKEN = "123456789:AAE-botTokenSecret_xyz"
CHAT_ID = "-1001234567890"
LABELS = {"team": "risk", "desk": "ny"}
DESCRIPTION = "Withdrawals may bounce; move cash before 16:00."

SinkFactory = Callable[[str, aiohttp.ClientSession], HttpSink]
SINK_CONFIG: TypeAdapter[SinkConfig] = TypeAdapter(SinkConfig)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(f"{SECRET_PATH}?{SECRET_QUERY}") as receiver:
        yield receiver


@pytest.fixture
def closed_url() -> str:
    """A URL on a port nothing listens on."""
    return unused_url(f"{SECRET_PATH}?{SECRET_QUERY}")


def make_discord(url: str, session: aiohttp.ClientSession) -> discord.DiscordSink:
    config = DiscordSinkConfig.model_validate({"type": "discord", "name": "dc", "url": url})
    return discord.create(config, index=0, session=session)


def make_msteams(url: str, session: aiohttp.ClientSession) -> msteams.MsTeamsSink:
    config = MsTeamsSinkConfig.model_validate({"type": "msteams", "name": "teams", "url": url})
    return msteams.create(config, index=0, session=session)


def make_telegram(
    url: str, session: aiohttp.ClientSession, *, chat_id: str = CHAT_ID, timeout: float = 10.0
) -> telegram.TelegramSink:
    """A bot whose API server is the origin of ``url`` (the receiver)."""
    config = TelegramSinkConfig.model_validate(
        {
            "type": "telegram",
            "name": "tg",
            "bot_token": BOT_TOKEN,
            "chat_id": chat_id,
            "api_url": str(URL(url).origin()),
            "timeout": timeout,
        }
    )
    return telegram.create(config, index=0, session=session)


def make_slack(url: str, session: aiohttp.ClientSession) -> slack.SlackSink:
    config = SlackSinkConfig.model_validate({"type": "slack", "name": "chat", "url": url})
    return slack.create(config, index=0, session=session)


SINKS: dict[str, SinkFactory] = {
    "discord": make_discord,
    "msteams": make_msteams,
    "telegram": make_telegram,
    "slack": make_slack,
}


def notifications(count: int, **changes: Any) -> list[Notification]:
    """Every third is resolved; severities cycle critical, warning, info."""
    severities = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
    return [
        replace(
            make_notification(
                **{
                    "status": Status.RESOLVED if i % 3 == 2 else Status.FIRING,
                    "severity": severities[i % 3],
                    "rule": f"rule-{i}",
                    "account_number": f"{10_000_000 + i}",
                    "summary": f"summary number {i}",
                    **changes,
                }
            ),
            id=f"n-{i:04d}",
        )
        for i in range(count)
    ]


def huge(**changes: Any) -> Notification:
    """A notification with every text far beyond any service's limits."""
    texts: dict[str, Any] = {
        "rule": "r" * 300,
        "summary": "s&<" * 3000,
        "description": "d" * 9000,
        "labels": {f"label{i}": "v" * 300 for i in range(40)},
        "previous": {f"field{i}": Decimal("1234567.89") for i in range(200)},
        "current": "c" * 5000,
    }
    return make_notification(**(texts | changes))


def posted(receiver: Receiver) -> dict[str, Any]:
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("balance-monitor/")
    document: dict[str, Any] = json.loads(request.body)
    return document


async def send_failing(sink: HttpSink, notification: Notification | None = None) -> SinkError:
    assert isinstance(sink, BatchSink)
    with pytest.raises(SinkError) as info:
        await sink.send(notification or make_notification())
    return info.value


# --------------------------------------------------------------------------- all chat sinks


@pytest.mark.parametrize("kind", SINKS)
def test_chat_sinks_are_batch_sinks_whose_repr_hides_secrets(
    kind: str, session: aiohttp.ClientSession
) -> None:
    """Each is a BatchSink; its repr names the class and the sink, not the URL or token."""
    sink = SINKS[kind](f"http://h{SECRET_PATH}?{SECRET_QUERY}", session)

    assert isinstance(sink, BatchSink)
    assert repr(sink) == f"{type(sink).__name__}(name={sink.name!r})"
    for secret in (SECRET_PATH, "XyZpathSecretToken", SECRET_QUERY, BOT_TOKEN, "http://h"):
        assert secret not in repr(sink)


@pytest.mark.parametrize("kind", SINKS)
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

    error = await send_failing(SINKS[kind](receiver.url, session))

    assert (error.status, error.retryable, error.retry_after) == (status, retryable, retry_after)


@pytest.mark.parametrize("kind", SINKS)
@pytest.mark.parametrize("status", [400, 404, 429, 500])
async def test_chat_errors_hide_echoed_secrets(
    receiver: Receiver, session: aiohttp.ClientSession, kind: str, status: int
) -> None:
    """A receiver echoing its URL, path, query or the bot token does not leak them."""
    sink = SINKS[kind](receiver.url, session)
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


@pytest.mark.parametrize("kind", SINKS)
async def test_chat_connection_errors_hide_secrets(
    receiver: Receiver, closed_url: str, session: aiohttp.ClientSession, kind: str
) -> None:
    """Connection failures say what failed, not where, and drop aiohttp's text."""
    error = await send_failing(SINKS[kind](closed_url, session))

    assert error.retryable
    assert error.__suppress_context__
    assert_no_secrets(str(error), closed_url)


def assert_no_secrets(message: str, url: str) -> None:
    for secret in (url, SECRET_PATH, "XyZpathSecretToken", "qs-secret", BOT_TOKEN, "botToken"):
        assert secret not in message


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"type": "discord", "name": "dc", "url_env": "TEST_CHAT_SECRET"}, "url_env"),
        ({"type": "msteams", "name": "teams", "url_env": "TEST_CHAT_SECRET"}, "url_env"),
        (
            {
                "type": "telegram",
                "name": "tg",
                "bot_token_env": "TEST_CHAT_SECRET",
                "chat_id": -100123,
            },
            "bot_token_env",
        ),
    ],
)
def test_create_names_the_missing_secret(
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    config: dict[str, Any],
    key: str,
) -> None:
    """An unset secret variable is a ConfigError naming the key and the variable."""
    monkeypatch.delenv("TEST_CHAT_SECRET", raising=False)
    model = SINK_CONFIG.validate_python(config)

    with pytest.raises(ConfigError, match=rf"^sinks\[3\]\.{key}: .*TEST_CHAT_SECRET"):
        build_sink(model, index=3, session=session)


@pytest.mark.parametrize("kind", ["discord", "msteams", "telegram"])
async def test_create_from_env(
    receiver: Receiver, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """With the secret in the environment the registry builds a sink that delivers."""
    secret = BOT_TOKEN if kind == "telegram" else receiver.url
    monkeypatch.setenv("TEST_CHAT_SECRET", secret)
    settings: dict[str, Any] = {"type": kind, "name": kind}
    if kind == "telegram":
        origin = str(URL(receiver.url).origin())
        settings |= {"bot_token_env": "TEST_CHAT_SECRET", "chat_id": 42, "api_url": origin}
    else:
        settings |= {"url_env": "TEST_CHAT_SECRET"}
    model = SINK_CONFIG.validate_python(settings)

    sink = build_sink(model, index=0, session=session)
    await sink.send(make_notification())
    await sink.aclose()

    assert len(receiver.requests) == 1


@pytest.mark.parametrize("kind", SINKS)
async def test_empty_batch_sends_nothing(
    receiver: Receiver, session: aiohttp.ClientSession, kind: str
) -> None:
    """No notifications, no request."""
    sink = SINKS[kind](receiver.url, session)
    assert isinstance(sink, BatchSink)

    await sink.send_batch([])

    assert receiver.requests == []


# --------------------------------------------------------------------------- discord


def total_chars(document: dict[str, Any]) -> int:
    return sum(discord.embed_chars(embed) for embed in document["embeds"])


def assert_discord_limits(document: dict[str, Any]) -> None:
    assert len(document["content"]) <= 2000
    assert len(document["embeds"]) <= 10
    assert total_chars(document) <= 6000
    for embed in document["embeds"]:
        assert 0 < len(embed["title"]) <= 256
        assert len(embed.get("description", "")) <= 4096
        assert len(embed.get("fields", [])) <= 25
        for field in embed.get("fields", []):
            assert 0 < len(field["name"]) <= 256
            assert 0 < len(field["value"]) <= 1024
    assert document["allowed_mentions"] == {"parse": []}


async def test_discord_message_shape(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A one-line content, one embed with title, description, colour, fields, time and footer."""
    notification = make_notification(labels=LABELS, description=DESCRIPTION)

    await make_discord(receiver.url, session).send(notification)

    document = posted(receiver)
    assert receiver.requests[0].path == f"{SECRET_PATH}?{SECRET_QUERY}"
    assert document["content"] == (
        "🚨 [CRITICAL] FIRING low-cash: cash_to_withdraw fell to 512.25 (< 1000)"
    )
    assert document["allowed_mentions"] == {"parse": []}
    [embed] = document["embeds"]
    assert embed["title"] == "🚨 [CRITICAL] FIRING low-cash"
    assert embed["description"] == f"cash_to_withdraw fell to 512.25 (< 1000)\n\n{DESCRIPTION}"
    assert embed["color"] == 0xE01E5A
    assert [(f["name"], f["value"]) for f in embed["fields"]] == [
        ("Account", "12345678"),
        ("Field", "cash_to_withdraw"),
        ("Previous", "1500.00"),
        ("Current", "512.25"),
        ("Source", "default"),
        ("Labels", "team=risk, desk=ny"),
    ]
    assert embed["timestamp"] == "2024-05-01T12:00:00Z"
    assert embed["footer"] == {"text": "fingerprint fp-0123456789abcdef"}


async def test_discord_resolved(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Resolved is green and says so first; no description or labels, no such parts."""
    notification = make_notification(status=Status.RESOLVED, summary="back to 1500")

    await make_discord(receiver.url, session).send(notification)

    [embed] = posted(receiver)["embeds"]
    assert embed["title"] == "✅ RESOLVED [CRITICAL] low-cash"
    assert embed["description"] == "back to 1500"
    assert embed["color"] == 0x2EB67D
    assert "Labels" not in [f["name"] for f in embed["fields"]]


@pytest.mark.parametrize(
    ("status", "severity", "color"),
    [
        (Status.FIRING, Severity.CRITICAL, 0xE01E5A),
        (Status.FIRING, Severity.WARNING, 0xECB22E),
        (Status.FIRING, Severity.INFO, 0x439FE0),
        (Status.RESOLVED, Severity.CRITICAL, 0x2EB67D),
        (Status.RESOLVED, Severity.INFO, 0x2EB67D),
    ],
)
def test_discord_colors(status: Status, severity: Severity, color: int) -> None:
    """Firing is coloured by severity, resolved is green; the title names the severity."""
    alert = make_notification(status=status, severity=severity).alert

    [embed] = discord.message([alert])["embeds"]

    assert embed["color"] == color
    assert f"[{severity.value.upper()}]" in embed["title"]


async def test_discord_batch_of_one_is_a_single_message(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """send_batch of one notification posts what send posts."""
    sink = make_discord(receiver.url, session)

    await sink.send(make_notification())
    await sink.send_batch([make_notification()])

    first, second = receiver.requests
    assert first.body == second.body


async def test_discord_batch_of_three(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """One message: the count as content, one embed each, in order."""
    await make_discord(receiver.url, session).send_batch(notifications(3))

    document = posted(receiver)
    assert document["content"] == "3 alerts: 2 firing, 1 resolved"
    assert [e["title"] for e in document["embeds"]] == [
        "🚨 [CRITICAL] FIRING rule-0",
        "⚠️ [WARNING] FIRING rule-1",
        "✅ RESOLVED [INFO] rule-2",
    ]
    assert_discord_limits(document)


@pytest.mark.parametrize(("count", "embeds"), [(10, 10), (11, 10), (40, 10)])
async def test_discord_batch_of_many(
    receiver: Receiver, session: aiohttp.ClientSession, count: int, embeds: int
) -> None:
    """Up to 10 embeds; beyond that 9 and a last one summing up the rest."""
    await make_discord(receiver.url, session).send_batch(notifications(count))

    document = posted(receiver)
    assert_discord_limits(document)
    assert len(document["embeds"]) == embeds
    if count > 10:
        last = document["embeds"][-1]
        rest = notifications(count)[9:]
        resolved = sum(n.alert.status is Status.RESOLVED for n in rest)
        assert last["title"] == (
            f"…and {count - 9} more: {len(rest) - resolved} firing, {resolved} resolved"
        )
        first_line = last["description"].splitlines()[0]
        assert first_line == "🚨 [CRITICAL] FIRING rule-9: summary number 9"
        assert len(last["description"].splitlines()) == count - 9


@pytest.mark.parametrize("count", [1, 3, 10, 11, 60])
def test_discord_limits_hold_for_huge_notifications(count: int) -> None:
    """Whatever the text, a message stays within Discord's limits."""
    document = discord.message([huge(rule=f"{i}" * 300).alert for i in range(count)])

    assert_discord_limits(document)
    assert len(document["embeds"]) == min(count, 10)
    if count == 1:
        [embed] = document["embeds"]
        assert len(embed["description"]) == 4096
        assert embed["description"].endswith("…")


def test_discord_overflow_lines_are_clipped() -> None:
    """The summary of the rest stays within its description, ending with a count."""
    document = discord.message([huge().alert for _ in range(200)])

    assert_discord_limits(document)
    last = document["embeds"][-1]
    assert last["title"].startswith("…and 191 more: ")
    assert last["description"].splitlines()[-1].startswith("…and ")


@pytest.mark.parametrize("budget", [40, 300, 600])
def test_discord_embed_fits_its_budget(budget: int) -> None:
    """An embed given little room drops field text, then fields, then all but its title."""
    embed = discord.embed(huge(rule="r" * 30).alert, budget)

    assert discord.embed_chars(embed) <= budget
    assert embed["title"].startswith("🚨 [CRITICAL] FIRING rrr")
    if budget < 100:
        assert set(embed) == {"title", "color", "timestamp"}


def test_discord_mentions_are_not_parsed() -> None:
    """An @everyone in account data goes out as text that pings nobody."""
    document = discord.message([make_notification(summary="@everyone <@&123> hi").alert])

    assert "@everyone" in document["content"]
    assert document["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    ("body", "headers", "retry_after"),
    [
        ('{"message": "You are being rate limited.", "retry_after": 1.5}', {}, 1.5),
        ('{"retry_after": 1.5}', {"Retry-After": "3"}, 3.0),
        ("not json", {}, None),
        ('{"retry_after": true}', {}, None),
    ],
)
async def test_discord_rate_limit(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    body: str,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    """A 429 is retryable; the body's retry_after counts when there is no Retry-After header."""
    receiver.reply = Reply(status=429, body=body, headers=headers)

    error = await send_failing(make_discord(receiver.url, session))

    assert error.retryable
    assert error.retry_after == retry_after


# --------------------------------------------------------------------------- msteams


def card_body(document: dict[str, Any]) -> list[dict[str, Any]]:
    [attachment] = document["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    content = attachment["content"]
    assert content["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (content["type"], content["version"]) == ("AdaptiveCard", "1.4")
    body: list[dict[str, Any]] = content["body"]
    return body


async def test_msteams_card_shape(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A message with one Adaptive Card: headline, summary, description and facts."""
    receiver.reply = Reply(status=202, body="")
    notification = make_notification(labels=LABELS, description=DESCRIPTION)

    await make_msteams(receiver.url, session).send(notification)

    document = posted(receiver)
    assert document["type"] == "message"
    headline, summary, description, facts = card_body(document)
    assert headline == {
        "type": "TextBlock",
        "text": "🚨 [CRITICAL] FIRING low-cash",
        "wrap": True,
        "color": "attention",
        "weight": "bolder",
        "size": "medium",
    }
    assert summary["text"] == "cash_to_withdraw fell to 512.25 (< 1000)"
    assert description["text"] == DESCRIPTION
    assert facts["type"] == "FactSet"
    assert [(f["title"], f["value"]) for f in facts["facts"]] == [
        ("Rule", "low-cash"),
        ("Severity", "critical"),
        ("Account", "12345678"),
        ("Field", "cash_to_withdraw"),
        ("Previous", "1500.00"),
        ("Current", "512.25"),
        ("Source", "default"),
        ("Observed", "2024-05-01T12:00:00Z"),
        ("Labels", "team=risk, desk=ny"),
    ]


async def test_msteams_resolved(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Resolved is green; without a description or labels there are no such parts."""
    await make_msteams(receiver.url, session).send(make_notification(status=Status.RESOLVED))

    headline, _summary, facts = card_body(posted(receiver))
    assert (headline["text"], headline["color"]) == ("✅ RESOLVED [CRITICAL] low-cash", "good")
    assert "Labels" not in [f["title"] for f in facts["facts"]]


@pytest.mark.parametrize(
    ("status", "severity", "color"),
    [
        (Status.FIRING, Severity.CRITICAL, "attention"),
        (Status.FIRING, Severity.WARNING, "warning"),
        (Status.FIRING, Severity.INFO, "accent"),
        (Status.RESOLVED, Severity.WARNING, "good"),
    ],
)
def test_msteams_colors(status: Status, severity: Severity, color: str) -> None:
    """The headline's colour follows the severity, and is green once resolved."""
    alert = make_notification(status=status, severity=severity).alert

    headline = card_body(msteams.message([alert]))[0]

    assert headline["color"] == color
    assert headline["weight"] == "bolder"


async def test_msteams_batch_of_three(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """One card: a count headline and a container per notification."""
    await make_msteams(receiver.url, session).send_batch(
        notifications(3, labels=LABELS, description=DESCRIPTION)
    )

    headline, *containers = card_body(posted(receiver))
    assert headline["text"] == "3 alerts: 2 firing, 1 resolved"
    assert [c["type"] for c in containers] == ["Container"] * 3
    assert [(c["items"][0]["text"], c["items"][0]["color"]) for c in containers] == [
        ("🚨 [CRITICAL] FIRING rule-0", "attention"),
        ("⚠️ [WARNING] FIRING rule-1", "warning"),
        ("✅ RESOLVED [INFO] rule-2", "good"),
    ]
    texts = [item["text"] for item in containers[0]["items"]]
    assert texts[1:] == [
        "summary number 0",
        DESCRIPTION,
        "account 10000000 · cash_to_withdraw: 1500.00 → 512.25 · team=risk, desk=ny",
    ]


async def test_msteams_batch_of_one_is_a_single_card(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """send_batch of one notification posts what send posts."""
    sink = make_msteams(receiver.url, session)

    await sink.send(make_notification())
    await sink.send_batch([make_notification()])

    first, second = receiver.requests
    assert first.body == second.body


@pytest.mark.parametrize(
    ("batch", "shown"),
    [(notifications(80), 50), ([huge() for _ in range(80)], None), ([huge()], None)],
)
def test_msteams_batch_limits(batch: list[Notification], shown: int | None) -> None:
    """At most 50 containers and well under Teams' 28 KB; the rest is counted."""
    document = msteams.message([n.alert for n in batch])

    assert len(json.dumps(document, ensure_ascii=False).encode()) < 28_000
    body = card_body(document)
    containers = [block for block in body if block["type"] == "Container"]
    if shown is not None:
        assert len(containers) == shown
    if len(batch) > 1:
        assert len(containers) < len(batch)
        assert body[-1]["text"].startswith(f"…and {len(batch) - len(containers)} more: ")


# --------------------------------------------------------------------------- telegram


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
        (Status.FIRING, Severity.INFO, f"{slack.SYMBOLS[Severity.INFO]} <b>[INFO] FIRING "),
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


# --------------------------------------------------------------------------- slack


async def test_slack_labels_and_description(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """The description is a section below the headline; labels are a field of the attachment."""
    notification = make_notification(labels=LABELS, description="move <cash> & go")

    await make_slack(receiver.url, session).send(notification)

    document = posted(receiver)
    assert document["blocks"][1] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "move &lt;cash&gt; &amp; go"},
    }
    fields = [f["text"] for f in document["attachments"][0]["blocks"][0]["fields"]]
    assert fields[-1] == "*Labels*\nteam=risk, desk=ny"


def test_slack_without_labels_has_no_labels_field() -> None:
    """No labels, no Labels field; no description, one block."""
    document = slack.message(make_notification().alert)

    assert len(document["blocks"]) == 1
    assert "Labels" not in json.dumps(document)


async def test_slack_batch_of_one_is_a_single_message(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """send_batch of one notification posts what send posts."""
    sink = make_slack(receiver.url, session)

    await sink.send(make_notification())
    await sink.send_batch([make_notification()])

    first, second = receiver.requests
    assert first.body == second.body


async def test_slack_batch_of_three(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """One message: a count headline (also the text fallback) and a section each."""
    await make_slack(receiver.url, session).send_batch(notifications(3, labels=LABELS))

    document = posted(receiver)
    assert document["text"] == "3 alerts: 2 firing, 1 resolved"
    headline, *sections = document["blocks"]
    assert headline["text"]["text"] == "*3 alerts: 2 firing, 1 resolved*"
    assert [s["text"]["text"] for s in sections] == [
        ":rotating_light: [CRITICAL] FIRING rule-0: summary number 0\n"
        "account 10000000 · cash_to_withdraw: 1500.00 → 512.25 · team=risk, desk=ny",
        ":warning: [WARNING] FIRING rule-1: summary number 1\n"
        "account 10000001 · cash_to_withdraw: 1500.00 → 512.25 · team=risk, desk=ny",
        ":white_check_mark: RESOLVED [INFO] rule-2: summary number 2\n"
        "account 10000002 · cash_to_withdraw: 1500.00 → 512.25 · team=risk, desk=ny",
    ]


def test_slack_batch_names_the_source_of_source_level_alerts() -> None:
    """Without an account or field, a batch entry names the source."""
    batch = notifications(2, account_number=None, field=None, source="vision")

    sections = slack.batch_message([n.alert for n in batch])["blocks"][1:]

    assert sections[0]["text"]["text"] == (
        ":rotating_light: [CRITICAL] FIRING rule-0 (vision): summary number 0\nsource vision"
    )


@pytest.mark.parametrize(("count", "sections"), [(45, 45), (46, 45), (300, 45)])
def test_slack_batch_limits(count: int, sections: int) -> None:
    """At most 50 blocks: the headline, 45 sections, and a count of the rest."""
    document = slack.batch_message([n.alert for n in notifications(count)])

    blocks = document["blocks"]
    assert len(blocks) <= 50
    assert sum(b["type"] == "section" for b in blocks) == sections + 1
    if count > sections:
        assert blocks[-1]["type"] == "context"
        assert blocks[-1]["elements"][0]["text"].startswith(f"…and {count - sections} more: ")


def test_slack_batch_clips_huge_notifications() -> None:
    """Every section stays within Block Kit's 3000 characters."""
    document = slack.batch_message([huge().alert for _ in range(3)])

    assert all(len(b["text"]["text"]) <= 3000 for b in document["blocks"])
