"""The webhook sink against a real HTTP receiver on 127.0.0.1: the body is the documented payload,
the headers, the HMAC signature, and connection reuse.

What every HTTP sink shares (status errors, timeouts, secrets kept out of messages) is tested
through the webhook in ``test_sinks_base.py``."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from e2e_helpers import PAYLOAD_FIELDS
from sinks_helpers import (
    SECRET_PATH,
    SECRET_QUERY,
    SIGNING_KEY,
    Receiver,
    Reply,
    make_notification,
    make_webhook,
)

from monitor import __version__, encoding


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
