"""The simulated account stream: ``GET /accounts`` upgraded to a WebSocket, as Lime's.

A client connects with ``Authorization: Bearer <token>`` (a token the simulator would accept
for ``GET /accounts``; any other is closed at once, code 1008, as upstream closes a denied
token's socket), sends ``{"action": "subscribeBalance", "account": "<number>"}`` per account
and gets ``{"t": "b", "data": [...]}`` with every subscribed account whenever any of them
changes (at most once per ``throttle`` seconds), and once right after each subscription.
Other ``subscribe...`` / ``unsubscribe...`` actions are accepted and ignored (``unsubscribeBalance``
drops the account). Pings are answered and counted.

Control endpoints (beside the simulator's, no token)::

    POST /_sim/stream/drop      close every stream connection (code 1001)
    POST /_sim/stream/refuse    {"count": n, "status": 401}  refuse the next n connections: with
                                that status at the handshake, or (status 0, the default) by
                                closing them at once after it
    POST /_sim/stream/error     {"code": "...", "description": "..."}  send t=e to every client
    POST /_sim/stream/throttle  {"seconds": s}  at most one balances message per s seconds
    POST /_sim/stream/push      send every client its balances now
    GET  /_sim/stream/stats     {"connections", "connects", "refused", "subscribes", "pings",
                                 "messages"}
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from monitor.encoding import dumps, loads

__all__ = ["StreamHub", "add_routes", "handle"]


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    accounts: set[str] = field(default_factory=set)
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    forced: bool = True  # send even if unchanged (a new subscription, a push asked for)
    last: list[dict[str, Any]] | None = None


class StreamHub:
    """The stream's connections, and what the control endpoints set."""

    def __init__(self, records: Callable[[], list[dict[str, Any]]]) -> None:
        self.records = records
        self.clients: set[_Client] = set()
        self.throttle = 0.0
        self.refuse_count = 0
        self.refuse_status = 0
        self.connects = 0
        self.refused = 0
        self.subscribes = 0
        self.pings = 0
        self.messages = 0
        #: Every text message the clients sent, as sent (tests read the subscriptions).
        self.received: list[str] = []
        #: Answer pings (off: the socket looks dead to a client that pings).
        self.answer_pings = True

    def changed(self, *, force: bool = False) -> None:
        """The accounts may have changed: every client gets its balances if they did (or if
        ``force``), after its throttle."""
        for client in self.clients:
            client.forced = client.forced or force
            client.dirty.set()

    def take_refusal(self) -> int | None:
        """The status to refuse this connection with (0: close at once), if one is queued."""
        if self.refuse_count <= 0:
            return None
        self.refuse_count -= 1
        self.refused += 1
        return self.refuse_status

    async def drop(self) -> int:
        clients = list(self.clients)
        for client in clients:
            await client.ws.close(code=1001, message=b"dropped by the simulator")
        return len(clients)

    async def broadcast(self, message: dict[str, Any]) -> None:
        text = dumps(message)
        for client in list(self.clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.ws.send_str(text)

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.clients),
            "connects": self.connects,
            "refused": self.refused,
            "subscribes": self.subscribes,
            "pings": self.pings,
            "messages": self.messages,
        }

    async def _pusher(self, client: _Client) -> None:
        """Send ``client`` its balances whenever they may have changed, throttled; an unchanged
        set is sent again only when asked (a new subscription, ``/_sim/stream/push``)."""
        while True:
            await client.dirty.wait()
            client.dirty.clear()
            data = [r for r in self.records() if r.get("account_number") in client.accounts]
            forced, client.forced = client.forced, False
            if data and (forced or data != client.last):
                client.last = data
                self.messages += 1
                await client.ws.send_str(dumps({"t": "b", "data": data}))
            if self.throttle > 0:
                await asyncio.sleep(self.throttle)


async def handle(request: web.Request, hub: StreamHub, authorized: bool) -> web.StreamResponse:
    """One stream connection, until either side closes it."""
    refusal = hub.take_refusal()
    if refusal:
        return web.Response(status=refusal, text="refused by the simulator")
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    hub.connects += 1
    if refusal == 0 or not authorized:
        await ws.close(code=1008, message=b"token incorrect or revoked")
        return ws
    client = _Client(ws)
    hub.clients.add(client)
    pusher = asyncio.create_task(hub._pusher(client))
    try:
        async for msg in ws:
            if msg.type is WSMsgType.PING:
                hub.pings += 1
                if hub.answer_pings:
                    await ws.pong(msg.data)
            elif msg.type is WSMsgType.TEXT:
                hub.received.append(msg.data)
                _action(hub, client, msg.data)
    finally:
        hub.clients.discard(client)
        pusher.cancel()
        await asyncio.gather(pusher, return_exceptions=True)
    return ws


def _action(hub: StreamHub, client: _Client, text: str) -> None:
    try:
        message = loads(text)
    except ValueError:
        return
    if not isinstance(message, dict) or not isinstance(message.get("account"), str):
        return
    if message.get("action") == "subscribeBalance":
        hub.subscribes += 1
        client.accounts.add(message["account"])
        client.forced = True
        client.dirty.set()
    elif message.get("action") == "unsubscribeBalance":
        client.accounts.discard(message["account"])


HUB = web.AppKey("stream_hub", StreamHub)


async def _object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    text = await request.text()
    try:
        value = loads(text) if text.strip() else {}
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(value, dict) or set(value) - allowed:
        raise web.HTTPBadRequest(text=f"body must be a JSON object with some of {sorted(allowed)}")
    return value


async def _drop(request: web.Request) -> web.Response:
    return web.json_response({"dropped": await request.app[HUB].drop()})


async def _refuse(request: web.Request) -> web.Response:
    spec = await _object(request, {"count", "status"})
    hub = request.app[HUB]
    count, status = spec.get("count", 1), spec.get("status", 0)
    if not isinstance(count, int) or count < 0:
        raise web.HTTPBadRequest(text="count must be a non-negative integer")
    if not isinstance(status, int) or not (status == 0 or 400 <= status <= 599):
        raise web.HTTPBadRequest(text="status must be 0 (close at once) or from 400 to 599")
    hub.refuse_count, hub.refuse_status = count, status
    return web.json_response(hub.stats())


async def _error(request: web.Request) -> web.Response:
    spec = await _object(request, {"code", "description"})
    await request.app[HUB].broadcast(
        {"t": "e", "code": spec.get("code", "error"), "description": spec.get("description", "")}
    )
    return web.Response(status=204)


async def _throttle(request: web.Request) -> web.Response:
    spec = await _object(request, {"seconds"})
    seconds = spec.get("seconds", 0)
    if isinstance(seconds, bool) or (
        not isinstance(seconds, int | float) and not hasattr(seconds, "as_integer_ratio")
    ):
        raise web.HTTPBadRequest(text="seconds must be a number")
    if float(seconds) < 0:
        raise web.HTTPBadRequest(text="seconds must not be negative")
    request.app[HUB].throttle = float(seconds)
    return web.Response(status=204)


async def _push(request: web.Request) -> web.Response:
    request.app[HUB].changed(force=True)
    return web.Response(status=204)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].stats())


def add_routes(app: web.Application, hub: StreamHub) -> None:
    """The stream's control endpoints on the simulator's ``app``."""
    app[HUB] = hub
    app.router.add_post("/_sim/stream/drop", _drop)
    app.router.add_post("/_sim/stream/refuse", _refuse)
    app.router.add_post("/_sim/stream/error", _error)
    app.router.add_post("/_sim/stream/throttle", _throttle)
    app.router.add_post("/_sim/stream/push", _push)
    app.router.add_get("/_sim/stream/stats", _stats, allow_head=False)
