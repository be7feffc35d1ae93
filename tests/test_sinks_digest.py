"""Each sink delivers a digest in its own format, to a real HTTP receiver on 127.0.0.1 (the
email sink's is in ``test_sinks_email.py``); the alert APIs carry none."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from decimal import Decimal

import aiohttp
import pytest
from sinks_helpers import (
    BOT_TOKEN,
    SIGNING_KEY,
    Receiver,
    make_digest,
    make_discord,
    make_msteams,
    make_slack,
    make_telegram,
    make_webhook,
    posted,
)
from structlog.testing import capture_logs

from monitor import digest_render, encoding
from monitor.sinks.base import DigestSink
from monitor.sinks.log import LogSink


async def test_webhook_gets_a_digest_document_signed_with_numbers_and_text(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    digest = make_digest()
    sink = make_webhook(receiver.url, session, secret=SIGNING_KEY)
    await sink.send_digest(digest)
    [request] = receiver.requests
    document = encoding.loads(request.body)
    assert document["type"] == "digest"
    assert document["totals"]["change"] == Decimal("200.00")
    assert document["accounts"][0]["change_percent"] == Decimal("10.00")
    assert document["text"] == digest_render.text(digest)
    assert request.headers["X-Balance-Monitor-Id"] == "d-1"
    expected = hmac.new(SIGNING_KEY.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Balance-Monitor-Signature"] == f"sha256={expected}"


async def test_slack_gets_blocks_escaped(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await make_slack(receiver.url, session).send_digest(make_digest())
    document = posted(receiver)
    texts = [b["text"]["text"] for b in document["blocks"]]
    assert texts[0].startswith("*Digest close: 2026-12-01*")
    assert "*Total of 2 accounts: value 2,200.00 (+200.00, +10.00%)" in texts[0]
    assert "PDT &lt;flag&gt; &amp; co" in texts[1]
    assert "cash &lt;low&gt;" in texts[2]


async def test_discord_gets_one_embed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    await make_discord(receiver.url, session).send_digest(make_digest())
    [embed] = posted(receiver)["embeds"]
    assert embed["title"] == "Digest close: 2026-12-01"
    assert "**Total of 2 accounts" in embed["description"]
    assert "source default: 1 poll failed; last error: HTTP 503" in embed["description"]


async def test_teams_gets_an_adaptive_card(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await make_msteams(receiver.url, session).send_digest(make_digest())
    [attachment] = posted(receiver)["attachments"]
    body = attachment["content"]["body"]
    assert attachment["content"]["type"] == "AdaptiveCard"
    assert body[0]["text"] == "Digest close: 2026-12-01"
    assert body[2]["text"].startswith("Total of 2 accounts")


async def test_telegram_gets_html_within_its_limit(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """400 accounts: cut at whole lines with "…and N more accounts", the totals kept."""
    await make_telegram(receiver.url, session).send_digest(make_digest(400))
    [request] = receiver.requests
    assert request.path.endswith(f"/bot{BOT_TOKEN}/sendMessage")
    document = json.loads(request.body)
    assert document["parse_mode"] == "HTML"
    assert len(document["text"]) <= 4096
    assert "<b>Total of 400 accounts: value 440,000.00 (+40,000.00, +10.00%)" in document["text"]
    assert "more accounts" in document["text"]
    assert "cash &lt;low&gt;" in document["text"]  # the alert keeps its line
    assert "PDT &lt;flag&gt; &amp; co" in document["text"]


async def test_log_sink_logs_the_digest() -> None:
    digest = make_digest()
    with capture_logs() as events:
        await LogSink("log").send_digest(digest)
    [event] = events
    assert (event["event"], event["digest"], event["change"]) == ("digest", "close", "200.00")
    assert event["text"] == digest_render.text(digest)


async def test_a_change_the_digest_cannot_tell_is_logged_as_null() -> None:
    """No earlier value to compare with: the log event's ``change`` is null (as the webhook's
    is), not the text's dash, which a log pipeline would read as a string."""
    digest = make_digest()
    digest = replace(digest, totals=replace(digest.totals, previous=None))
    with capture_logs() as events:
        await LogSink("log").send_digest(digest)
    [event] = events
    assert event["change"] is None
    assert event["account_value_total"] == "2200.00"


def test_the_alert_apis_carry_no_digest() -> None:
    """PagerDuty and Alertmanager are not DigestSinks (the config refuses them, too)."""
    from monitor.sinks.alertmanager import AlertmanagerSink
    from monitor.sinks.pagerduty import PagerDutySink

    assert not hasattr(AlertmanagerSink, "send_digest")
    assert not hasattr(PagerDutySink, "send_digest")
    assert isinstance(LogSink("log"), DigestSink)


@pytest.mark.parametrize("n", [1, 30])
def test_the_email_html_escapes_everything(n: int) -> None:
    page = digest_render.email_html(make_digest(n))
    assert "PDT &lt;flag&gt; &amp; co" in page
    assert page.count("<tr>") == n + 1


def test_the_email_table_marks_a_missing_change_like_any_missing_figure() -> None:
    """An account with no ``account_value_total`` has "—" for its value and its change."""
    from datetime import UTC, date, datetime

    from monitor.config import DigestConfig
    from monitor.digest import build
    from monitor.digest_data import DigestData, StoredAccount

    data = DigestData(accounts=(StoredAccount("default", "A1", {"cash": Decimal(5)}),))
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    config = DigestConfig(name="close", at="16:15", sinks=("x",))
    digest = build(config, data, ident="d", timezone="UTC", since=None, until=moment,
                   day=date(2026, 12, 1))  # fmt: skip
    page = digest_render.email_html(digest)
    assert "<td>A1</td><td>—</td><td>—</td><td>5.00</td>" in page


def test_the_teams_card_stays_within_teams_bytes_with_wide_characters() -> None:
    """Teams refuses a message over about 28 KB: a restriction reason in a script of three
    bytes a character must not take the card past the bytes a batch card keeps to."""
    from dataclasses import replace

    from monitor.sinks.msteams import BATCH_BYTES, card

    digest = make_digest(400)
    wide = tuple(replace(a, restriction_reason="取引制限" * 10) for a in digest.accounts)
    document = card(digest_render.teams_body(replace(digest, accounts=wide)))
    text = document["attachments"][0]["content"]["body"][3]["text"]
    assert "more accounts" in text
    assert len(encoding.dumps(document).encode()) <= BATCH_BYTES
