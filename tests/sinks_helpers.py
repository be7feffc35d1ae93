"""Test helpers for the sinks: notifications to send and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from monitor.models import Alert, Notification, Severity, Status

OBSERVED_AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


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
