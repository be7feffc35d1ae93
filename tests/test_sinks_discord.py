"""The Discord sink against a real HTTP receiver on 127.0.0.1: the message and its embeds,
batches, Discord's size limits, mentions that ping nobody, and its rate-limit answers."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sinks_helpers import (
    DESCRIPTION,
    LABELS,
    SECRET_PATH,
    SECRET_QUERY,
    Receiver,
    Reply,
    huge,
    make_discord,
    make_notification,
    notifications,
    posted,
    send_failing,
)

from monitor.models import Severity, Status
from monitor.sinks import discord


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
