"""Lime's account stream: a WebSocket client that keeps itself connected. I/O.

``wss://api.lime.co/accounts`` with ``Authorization: Bearer <token>`` in the upgrade request;
the client sends ``{"action": "subscribeBalance", "account": "<number>"}`` once per account and
gets ``{"t": "b", "data": [...]}`` whenever a balance changes (:mod:`monitor.pushes` reads the
messages). Upstream's own SDK sends no pings, never reconnects and never renews its token;
:class:`AccountStream` does what a client that runs for months must:

- a WebSocket ping every :data:`HEARTBEAT` seconds (aiohttp's ``heartbeat``): a socket that
  does not answer with a pong within half of that is dead, closed, and connected again;
- it connects again after any end, with exponential backoff and jitter (:func:`backoff`:
  1 s, 2 s, 4 s ... up to 60 s; back to 1 s after a connection that lived), and subscribes
  again to every account after each connect;
- a connection refused with 401/403, or closed by the server right after it opened
  (:data:`SETTLE` seconds, the way Lime ends a socket whose token it denies), renews the token
  once and connects again at once; a second refusal backs off;
- every :data:`TOKEN_CHECK` seconds it asks the source's token provider for the token; when
  that is a new one (renewed before 03:00 ET, or after a poll's 401), it reconnects with it;
- accounts that a poll or a push brings up later are subscribed to as they appear
  (:meth:`AccountStream.wake`), those gone are unsubscribed;
- an error message (``{"t": "e", "code", "description"}``) is logged with its code; a
  message of an unknown type is ignored with one debug line; neither ends the stream.

aiohttp's WebSocket client is used (not the ``websockets`` library): aiohttp is already the
HTTP client, its session, TLS settings and error translation (:mod:`monitor.http`) are shared,
and its ``heartbeat`` does the pings and the dead-socket timeout.

The token never reaches a log line or a message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import aiohttp
import structlog
from pydantic import SecretStr

from monitor import encoding, http
from monitor.auth import TokenProvider
from monitor.config import public_url
from monitor.errors import MonitorError, ParseError, StreamError
from monitor.models import Account, ParseResult
from monitor.pushes import BALANCES, ERROR, read_message

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "HEARTBEAT",
    "SETTLE",
    "TOKEN_CHECK",
    "AccountStream",
    "PushTarget",
    "StreamState",
    "backoff",
]

log = structlog.get_logger("monitor.stream")

#: Seconds between WebSocket pings; a pong must come within half of this.
HEARTBEAT: Final = 30.0
#: Seconds between looks at the token provider (a renewed token means a new connection).
TOKEN_CHECK: Final = 30.0
#: A connection the server closes within this many seconds of opening, with nothing received,
#: was refused (Lime closes a socket whose token it denies at once).
SETTLE: Final = 2.0
#: The first wait before connecting again, and the longest.
BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 60.0
#: How long the WebSocket handshake may take.
CONNECT_TIMEOUT: Final = 10.0
#: How long closing the socket waits for the server's answer (a shutdown waits no longer).
CLOSE_TIMEOUT: Final = 2.0


def backoff(
    attempt: int, jitter: float, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP
) -> float:
    """The wait before connection attempt ``attempt + 1`` after ``attempt`` failed ones (0:
    the first wait): ``base * 2**attempt`` up to ``cap``, spread by ``jitter`` (a number in
    ``[0, 1)``) over 80 % to 120 % of that, and never above ``cap``. Pure."""
    delay: float = base * 2.0 ** min(attempt, 32)
    return min(cap, min(delay, cap) * (0.8 + 0.4 * jitter))


class PushTarget(Protocol):
    """Where pushed balances go (:class:`monitor.pipeline.SourcePipeline`)."""

    @property
    def accounts(self) -> Mapping[str, Account] | None: ...

    async def push(self, seen: ParseResult) -> int: ...


@dataclass
class StreamState:
    """What ``status`` and the metrics show of a stream."""

    connected: bool = False
    since: datetime | None = None  # connected since, or down since
    reconnects: int = 0
    last_error: str | None = None
    last_message_at: datetime | None = None
    subscribed: int = 0


class _EndedError(Exception):
    """One connection ended; ``refused``: it was refused (401/403, or closed at once)."""

    def __init__(
        self, reason: str, *, refused: bool = False, lived: bool = False, renewal: bool = False
    ) -> None:
        super().__init__(reason)
        self.refused = refused
        self.lived = lived
        self.renewal = renewal  # closed by us for a renewed token: connect again at once


class AccountStream:
    """One source's account stream, connected until :meth:`close`."""

    def __init__(
        self,
        source: str,
        url: str,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        target: PushTarget,
        *,
        clock: Callable[[], datetime],
        heartbeat: float = HEARTBEAT,
        token_check: float = TOKEN_CHECK,
        settle: float = SETTLE,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_message: Callable[[str], None] | None = None,
        on_change: Callable[[StreamState], None] | None = None,
    ) -> None:
        self.source = source
        self.url = url
        self.where = public_url(url.replace("ws", "http", 1)).replace("http", "ws", 1)
        self.session = session
        self.tokens = tokens
        self.target = target
        self.clock = clock
        self.heartbeat = heartbeat
        self.token_check = token_check
        self.settle = settle
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._jitter = jitter
        self._sleep = sleep
        self._on_message = on_message
        self._on_change = on_change
        self.state = StreamState()
        self.log = log.bind(source=source)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()
        self._renewed = False
        self._error_codes: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the stream in a task of its own (until :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"stream:{self.source}")

    async def close(self) -> None:
        """Stop the stream and close its socket."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._set(connected=False, error=self.state.last_error)

    def wake(self) -> None:
        """The accounts may have changed (after a poll): subscribe to the new ones."""
        self._wake.set()

    async def run(self) -> None:
        """Connect, read, and connect again, until cancelled."""
        attempt = 0
        renewed = False
        last: str | None = None
        while True:
            renewal = False
            try:
                await self._connection()
            except _EndedError as ended:
                reason, refused, lived = str(ended), ended.refused, ended.lived
                renewal = ended.renewal
            except MonitorError as exc:  # the token provider could not give a token
                reason, refused, lived = str(exc), False, False
            except Exception as exc:  # a bug: the one broad except of the stream, it goes on
                self.log.error("stream_crashed", error=str(exc), exc_info=True)
                reason, refused, lived = f"unexpected error: {type(exc).__name__}", False, False
            if lived:
                attempt, renewed = 0, False
            self.state.reconnects += 1
            self._set(connected=False, error=reason)
            if renewal:
                continue
            if refused and self.tokens.renewable and not renewed:
                renewed = True
                self.log.info("stream_token_refused", error=reason, action="renewing once")
                self.tokens.invalidate()
                continue
            wait = backoff(attempt, self._jitter(), base=self.backoff_base, cap=self.backoff_cap)
            attempt += 1
            # A warning when the stream goes down, or fails anew; the same failure again (an
            # outage that lasts) is a debug line per attempt, not a warning a minute.
            repeated = reason == last and not lived
            last = reason
            (self.log.debug if repeated else self.log.warning)(
                "stream_down", error=reason, retry_in=round(wait, 2), attempts=attempt
            )
            await self._sleep(wait)

    # ------------------------------------------------------------------ one connection

    async def _connection(self) -> None:
        """One connection, from the handshake to its end (always ``_EndedError``)."""
        token = await self.tokens.token()
        ws = await self._connect(token)
        opened = time.monotonic()
        received = False
        self._renewed = False
        self._subscribed = set()
        self._set(connected=True)
        self.log.info("stream_connected", url=self.where)
        watcher = asyncio.create_task(self._watch(ws, token), name=f"stream-watch:{self.source}")
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    received = True
                    await self._handle(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    received = True
                    self.log.debug("stream_message_ignored", type="binary")
                elif self._renewed:
                    raise _EndedError("token renewed", lived=True, renewal=True)
                else:  # CLOSE, CLOSING, CLOSED, ERROR: the socket is done
                    quick = time.monotonic() - opened < self.settle and not received
                    raise _EndedError(_close_reason(ws, msg), refused=quick, lived=not quick)
        finally:
            watcher.cancel()
            try:
                await asyncio.gather(watcher, return_exceptions=True)
            finally:  # even when a second cancel cuts the wait short: never leak the socket
                await ws.close()

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse, token: SecretStr) -> None:
        """Beside the reading: subscribe to the accounts as they appear, and close the socket
        when the token provider has a new token (the reading then connects again)."""
        self._wake.set()  # the accounts known now
        while not ws.closed:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
                # lands as the event is set, and the daemon's shutdown waited on this watcher.
                async with asyncio.timeout(self.token_check):
                    await self._wake.wait()
            except TimeoutError:
                try:
                    fresh = await self.tokens.token()
                except MonitorError:  # the token endpoint is down: the socket may live on
                    continue
                if fresh.get_secret_value() != token.get_secret_value():
                    self.log.info("stream_token_renewed", action="reconnecting")
                    self._renewed = True
                    await ws.close()
                    return
                continue
            self._wake.clear()
            try:
                await self._subscribe(ws)
            except (ConnectionError, aiohttp.ClientError):  # closing: the reading sees why
                return

    async def _connect(self, token: SecretStr) -> aiohttp.ClientWebSocketResponse:
        headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "User-Agent": http.USER_AGENT,
        }
        try:
            with http.stream_errors(timeout=CONNECT_TIMEOUT):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    return await self.session.ws_connect(
                        self.url,
                        headers=headers,
                        heartbeat=self.heartbeat,
                        timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                        autoping=True,
                        max_msg_size=0,
                    )
        except StreamError as exc:
            raise _EndedError(str(exc), refused=exc.status in (401, 403)) from None

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Subscribe to every known account not subscribed to yet on this connection;
        unsubscribe from those gone."""
        known = self.target.accounts or {}
        new = [n for n in known if n not in self._subscribed]
        gone = [n for n in self._subscribed if n not in known]
        for number in new:
            await ws.send_str(_action("subscribeBalance", number))
            self._subscribed.add(number)
        for number in gone:
            await ws.send_str(_action("unsubscribeBalance", number))
            self._subscribed.discard(number)
        if new or gone:
            self.state.subscribed = len(self._subscribed)
            self.log.debug("stream_subscribed", added=len(new), removed=len(gone))

    async def _handle(self, text: str) -> None:
        """One text message: balances to the pipeline, an error logged, others ignored."""
        self.state.last_message_at = self.clock()
        try:
            message = read_message(text, self.target.accounts)
        except ParseError as exc:
            self._count("invalid")
            self.log.warning("stream_message_unusable", error=str(exc))
            return
        self._count(message.type)
        if message.type == ERROR:
            fresh = message.code not in self._error_codes
            self._error_codes.add(str(message.code))
            (self.log.warning if fresh else self.log.info)(
                "stream_error_message", code=message.code, description=message.description
            )
        elif message.type == BALANCES and message.balances is not None:
            await self.target.push(message.balances)
            if any(n not in self._subscribed for n in message.balances.accounts):
                self._wake.set()
        else:
            self.log.debug("stream_message_ignored", type=message.type)

    # ------------------------------------------------------------------ observation

    def _count(self, kind: str) -> None:
        if self._on_message is not None:
            self._on_message(kind)

    def _set(self, *, connected: bool, error: str | None = None) -> None:
        state = self.state
        if state.connected != connected or state.since is None:
            state.since = self.clock()
        state.connected = connected
        state.last_error = None if connected else error
        if not connected:
            state.subscribed = 0
        if self._on_change is not None:
            self._on_change(state)


def _action(action: str, account: str) -> str:
    return encoding.dumps({"action": action, "account": account})


def _close_reason(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> str:
    if msg.type is aiohttp.WSMsgType.ERROR:
        exc = ws.exception() or msg.data
        if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
            return "no answer to ping (dead socket)"
        return f"stream failed: {http.reason(exc) if isinstance(exc, BaseException) else exc}"
    code = ws.close_code
    return f"closed by the server (code {code})" if code is not None else "closed"
