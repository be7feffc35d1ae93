"""The Microsoft Teams sink against a real HTTP receiver on 127.0.0.1: one Adaptive Card per
message, its colours, batches, and Teams' size limit."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from sinks_helpers import (
    DESCRIPTION,
    LABELS,
    Receiver,
    Reply,
    huge,
    make_msteams,
    make_notification,
    notifications,
    posted,
)

from monitor.models import Notification, Severity, Status
from monitor.sinks import msteams


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
