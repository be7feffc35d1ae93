"""Test helpers for the sinks: notifications to send, a real HTTP receiver on 127.0.0.1, and the
HTTP sinks of several test modules (webhook, Slack, Discord, Teams, Telegram) built for a URL.

The ``receiver`` fixture (``conftest.py``) serves at :data:`SECRET_PATH` ``?`` :data:`SECRET_QUERY`,
which error messages and reprs must never show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy
from yarl import URL

from monitor.config import (
    DigestConfig,
    DiscordSinkConfig,
    MsTeamsSinkConfig,
    SlackSinkConfig,
    TelegramSinkConfig,
    WebhookSinkConfig,
)
from monitor.digest import Digest, build
from monitor.digest_data import AlertLine, DigestData, SourcePolls, StoredAccount
from monitor.errors import SinkError
from monitor.models import Alert, JSONValue, Notification, Severity, Status
from monitor.sinks import discord, msteams, slack, telegram, webhook
from monitor.sinks.base import Sink

OBSERVED_AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SECRET_PATH = "/api/webhooks/1234/XyZpathSecretToken"
SECRET_QUERY = "sig=qs-secret-signature"
SIGNING_KEY = "hmac-signing-key"
BOT_TOKEN = "123456789:AAE-botTokenSecret_xyz"
CHAT_ID = "-1001234567890"
LABELS = {"team": "risk", "desk": "ny"}
DESCRIPTION = "Withdrawals may bounce; move cash before 16:00."


DIGEST_UNTIL = datetime(2026, 12, 1, 21, 15, tzinfo=UTC)
DIGEST_SINCE = DIGEST_UNTIL - timedelta(days=1)


def make_digest(accounts: int = 2) -> Digest:
    """A digest of ``accounts`` accounts up 10% (one restricted for a reason with markup in
    it), one alert fired and one failed poll."""
    record: dict[str, JSONValue] = {
        "account_value_total": Decimal("1100.00"),
        "cash": Decimal("100.00"),
        "cash_to_withdraw": Decimal("50.00"),
        "margin_buying_power": Decimal("200.00"),
        "restriction": "restricted",
        "restriction_reason": "PDT <flag> & co",
        "daytrades_count": 3,
    }
    data = DigestData(
        accounts=tuple(
            StoredAccount("default", f"{n:08d}", record, then=Decimal("1000.00"))
            for n in range(accounts)
        ),
        alerts=(
            AlertLine("firing", "low-cash", "default", "00000000", "cash <low>", DIGEST_UNTIL),
        ),
        polls=(SourcePolls("default", 10, 1, "HTTP 503"),),
    )
    config = DigestConfig(name="close", at="16:15", sinks=("x",))
    return build(
        config,
        data,
        ident="d-1",
        timezone="America/New_York",
        since=DIGEST_SINCE,
        until=DIGEST_UNTIL,
        day=date(2026, 12, 1),
    )


def make_notification(**changes: Any) -> Notification:
    """A firing critical threshold notification; ``changes`` replace fields of its alert."""
    alert = Alert(
        status=Status.FIRING,
        fingerprint="fp-0123456789abcdef",
        rule="low-cash",
        type="threshold",
        severity=Severity.CRITICAL,
        account_number="12345678",
        field="cash_to_withdraw",
        previous=Decimal("1500.00"),
        current=Decimal("512.25"),
        summary="cash_to_withdraw fell to 512.25 (< 1000)",
        observed_at=OBSERVED_AT,
        snapshot={"account_number": "12345678", "cash_to_withdraw": Decimal("512.25")},
    )
    return Notification(id="n-0001", alert=replace(alert, **changes))


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


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    peer: Any  # the client's (host, port): equal for requests on one connection


@dataclass
class Reply:
    """What the receiver answers; ``hang`` makes it wait until the test ends."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Receiver:
    """Records every request and answers with ``reply``."""

    url: str = ""
    reply: Reply = field(default_factory=Reply)
    requests: list[Received] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Received(request.path_qs, request.headers, await request.read(), peer))
        if self.reply.hang:
            await self.released.wait()
        return web.Response(
            status=self.reply.status, text=self.reply.body, headers=self.reply.headers
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app


@contextlib.asynccontextmanager
async def serving(
    path: str = "/", *, reply: Reply | None = None, scheme: str | None = None
) -> AsyncIterator[Receiver]:
    """A :class:`Receiver` served on 127.0.0.1 whose ``url`` ends in ``path`` (``scheme``
    replaces ``http``, e.g. Apprise's ``json``); released and closed afterwards."""
    receiver = Receiver(reply=reply) if reply is not None else Receiver()
    server = TestServer(receiver.app(), host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url(path))
    if scheme is not None:
        receiver.url = f"{scheme}://127.0.0.1:{server.port}{path}"
    try:
        yield receiver
    finally:
        receiver.released.set()
        await server.close()


def unused_url(path: str) -> str:
    """An http URL on a 127.0.0.1 port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --------------------------------------------------------------------------- HTTP sinks


def make_webhook(url: str, session: aiohttp.ClientSession, **settings: Any) -> webhook.WebhookSink:
    config = WebhookSinkConfig.model_validate(
        {"type": "webhook", "name": "ops", "url": url, **settings}
    )
    return webhook.create(config, index=0, session=session)


def make_slack(url: str, session: aiohttp.ClientSession) -> slack.SlackSink:
    config = SlackSinkConfig.model_validate({"type": "slack", "name": "chat", "url": url})
    return slack.create(config, index=0, session=session)


def make_discord(url: str, session: aiohttp.ClientSession) -> discord.DiscordSink:
    config = DiscordSinkConfig.model_validate({"type": "discord", "name": "dc", "url": url})
    return discord.create(config, index=0, session=session)


def make_msteams(url: str, session: aiohttp.ClientSession) -> msteams.MsTeamsSink:
    config = MsTeamsSinkConfig.model_validate({"type": "msteams", "name": "teams", "url": url})
    return msteams.create(config, index=0, session=session)


def make_telegram(
    url: str,
    session: aiohttp.ClientSession,
    *,
    chat_id: str = CHAT_ID,
    timeout: float = 10.0,
    commands: bool = False,
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
            "commands": commands,
        }
    )
    return telegram.create(config, index=0, session=session)


def posted(receiver: Receiver) -> dict[str, Any]:
    """The JSON document of the receiver's one request, sent with our headers."""
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("balance-monitor/")
    document: dict[str, Any] = json.loads(request.body)
    return document


async def send_failing(sink: Sink) -> SinkError:
    """The ``SinkError`` that sending a notification raises."""
    with pytest.raises(SinkError) as info:
        await sink.send(make_notification())
    return info.value
