"""The Slack sink against a real HTTP receiver on 127.0.0.1: the message (Block Kit with an
attachment), colours and emoji, escaping, batches within Block Kit's limits, and rejections."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from sinks_helpers import (
    LABELS,
    Receiver,
    Reply,
    huge,
    make_notification,
    make_slack,
    notifications,
    posted,
    send_failing,
)

from monitor.models import Severity, Status
from monitor.sinks import slack


async def post_to_slack(
    receiver: Receiver, session: aiohttp.ClientSession, **changes: Any
) -> dict[str, Any]:
    await make_slack(receiver.url, session).send(make_notification(**changes))
    return posted(receiver)


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
