"""A simulated Lime Trader balances API, for ``balance-monitor demo``, ``fake-api`` and tests.

``GET /accounts`` answers like upstream (bearer token, JSON array, ``{"code", "message"}`` errors)
from a scenario that advances one step per successful answer and cycles every :data:`CYCLE` steps.
Scenario ``"demo"`` walks ``12345678@vision`` through every event a default configuration alerts
on; ``"static"`` serves step 0 of the same accounts forever.

With ``oauth`` (an :class:`OAuthClient`, or a mapping of its fields) it also plays the token
endpoint: ``POST /connect/token`` (form-encoded password grant) issues random access tokens that
live ``expires_in`` seconds by the simulator's clock, and ``GET /accounts`` then accepts only a
token that is live (issued, not expired, not revoked) instead of the static ``token``. Wrong
credentials get ``400 {"error": "invalid_grant", "error_description": ...}``.

Control endpoints for tests live under ``/_sim/`` and need no token::

    PUT    /_sim/accounts  any JSON value      serve exactly this from now on (step still counts)
    DELETE /_sim/accounts                      back to the scenario
    POST   /_sim/fail      {"status", "body", "count", "retry_after", "delay", "content_type"}
    POST   /_sim/raw       {"body", "count", "delay", "content_type"}   status 200
    DELETE /_sim/fail                          drop every queued failure and raw answer
    GET    /_sim/stats     {"requests": GET /accounts seen, "step": step the next answer serves,
                            "tokens_issued": access tokens issued, "refused": 401s answered}
    POST   /_sim/step      {"step": n}
    POST   /_sim/revoke                        revoke every access token issued so far
    PUT    /_sim/journal   {"account", "entries", "delay", "status"}   what
                           GET /accounts/{account}/transactions answers (entries: a list)

``GET /accounts`` with ``Upgrade: websocket`` is the account stream
(:mod:`monitor.simulator_stream`, with its own control endpoints under ``/_sim/stream/``).
With ``tick`` the scenario advances every ``tick`` seconds by itself instead of once per
answer, and the stream pushes each step.

Failures and raw answers queue up in the order they were posted; ``count: -1`` repeats until
cleared. A failure with status 200 and no body answers normally, after its ``delay``.
"""

from __future__ import annotations

import asyncio
import http
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from monitor.encoding import dumps, loads
from monitor.serving import serve_app
from monitor.simulator_stream import StreamHub, add_routes, handle

__all__ = [
    "CYCLE",
    "DEMO_TOKEN",
    "PDT_REASON",
    "SCENARIOS",
    "OAuthClient",
    "Reply",
    "Simulator",
    "build_app",
    "serve_forever",
    "start",
]

CYCLE: Final = 12
SCENARIOS: Final = ("demo", "static")
DEMO_TOKEN: Final = "demo-token"  # noqa: S105 - a well-known value for the local demo only
PDT_REASON: Final = "Pattern day trader: equity below $25,000"

_JSON: Final = "application/json"
_CENTS: Final = Decimal("0.01")
_ZERO: Final = Decimal("0.00")

# 12345678@vision, one row per step: daytrades_count, cash, position_market_value, restricted.
# Everything else follows: account_value_total = cash + position, cash_to_withdraw = cash,
# margin_buying_power = 2 x non_margin_buying_power (marginx2).
_VISION: Final[tuple[tuple[int, str, str, bool], ...]] = (
    (0, "2524.54", "37885.74", False),  # 0  the documented example; day trades reset
    (0, "2524.54", "37885.74", False),  # 1
    (1, "2524.54", "37885.74", False),  # 2
    (2, "2524.54", "37885.74", False),  # 3
    (3, "512.25", "39898.03", False),  # 4  third day trade; buys 2012.29 of stock
    (4, "512.25", "39898.03", False),  # 5  fourth day trade
    (4, "512.25", "23987.75", True),  # 6  positions fall, equity 24500.00: restricted
    (4, "512.25", "23987.75", True),  # 7
    (4, "2524.54", "21975.46", True),  # 8  sells 2012.29 of stock
    (4, "2524.54", "21975.46", True),  # 9
    (4, "2524.54", "37885.74", False),  # 10 positions recover, equity 40410.28: lifted
    (4, "2524.54", "37885.74", False),  # 11
)

# 11111111@cor, one row per step: cash, position_market_value, unsettled_cash.
# A sale at step 3 settles at step 5 (T+1 on the next poll but one); a buy-back at step 9.
_COR: Final[tuple[tuple[str, str, str], ...]] = (
    ("1500.00", "3250.75", "0.00"),  # 0
    ("1500.00", "3250.75", "0.00"),  # 1
    ("1500.00", "3250.75", "0.00"),  # 2
    ("1620.50", "3130.25", "120.50"),  # 3  sells 120.50 of stock
    ("1620.50", "3130.25", "120.50"),  # 4
    ("1620.50", "3130.25", "0.00"),  # 5  settled
    ("1620.50", "3130.25", "0.00"),  # 6
    ("1620.50", "3130.25", "0.00"),  # 7
    ("1620.50", "3130.25", "0.00"),  # 8
    ("1500.00", "3250.75", "0.00"),  # 9  buys it back
    ("1500.00", "3250.75", "0.00"),  # 10
    ("1500.00", "3250.75", "0.00"),  # 11
)


def _money(value: str | Decimal) -> Decimal:
    return Decimal(value).quantize(_CENTS)


def _vision(step: int) -> dict[str, Any]:
    daytrades, cash_text, position_text, restricted = _VISION[step]
    cash, position = _money(cash_text), _money(position_text)
    buying_power = max(cash, _ZERO)
    account: dict[str, Any] = {
        "account_number": "12345678@vision",
        "trade_platform": "ETNA",
        "margin_type": "marginx2",
        "restriction": "restricted" if restricted else "none",
    }
    if restricted:
        account["restriction_reason"] = PDT_REASON
    account |= {
        "daytrades_count": daytrades,
        "account_value_total": _money(cash + position),
        "cash": cash,
        "day_trading_buying_power": _ZERO if restricted else _money(4 * buying_power),
        "margin_buying_power": _money(2 * buying_power),
        "non_margin_buying_power": buying_power,
        "position_market_value": position,
        "unsettled_cash": _ZERO,
        "cash_to_withdraw": cash,
    }
    return account


def _cor(step: int) -> dict[str, Any]:
    cash_text, position_text, unsettled_text = _COR[step]
    cash, position, unsettled = _money(cash_text), _money(position_text), _money(unsettled_text)
    return {
        "account_number": "11111111@cor",
        "trade_platform": "transaq",
        "margin_type": "cash",
        "restriction": "none",
        "daytrades_count": 0,
        "account_value_total": _money(cash + position),
        "cash": cash,
        "day_trading_buying_power": _ZERO,
        "margin_buying_power": cash,
        "non_margin_buying_power": cash,
        "position_market_value": position,
        "unsettled_cash": unsettled,
        "cash_to_withdraw": _money(cash - unsettled),
    }


@dataclass
class Reply:
    """One queued answer to ``GET /accounts`` instead of the scenario."""

    status: int
    body: str | None
    content_type: str
    retry_after: str | None
    delay: float
    remaining: int  # -1: until cleared


@dataclass(frozen=True)
class OAuthClient:
    """The one set of credentials the simulated token endpoint accepts, and its tokens' life."""

    client_id: str
    client_secret: str
    username: str
    password: str
    expires_in: float = 3600.0

    def accepts(self, form: Mapping[str, str]) -> bool:
        """Whether a token request's form carries exactly these credentials."""
        return all(
            secrets.compare_digest(form.get(key, ""), getattr(self, key))
            for key in ("client_id", "client_secret", "username", "password")
        )


class Simulator:
    """The state behind the simulated API: scenario step, request count, queued failures, and
    (with ``oauth``) the access tokens it issued, timed by ``clock`` (seconds)."""

    def __init__(
        self,
        token: str = DEMO_TOKEN,
        scenario: str = "demo",
        *,
        oauth: OAuthClient | Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: float | None = None,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}, expected one of {SCENARIOS}")
        self.token = token
        self.scenario = scenario
        self.oauth = OAuthClient(**oauth) if isinstance(oauth, Mapping) else oauth
        self.clock = clock
        self.step = 0
        self.requests = 0
        self.refused = 0
        #: Every access token issued, in order (tests check that none of them leaks).
        self.issued: list[str] = []
        self._live: dict[str, float] = {}  # access token -> expiry by ``clock``
        self._override: str | None = None
        self._override_records: list[dict[str, Any]] | None = None
        self._replies: deque[Reply] = deque()
        #: With ``tick``, the scenario advances every ``tick`` seconds by itself (and a poll
        #: no longer advances it): the account stream pushes each step as it happens.
        self.tick = tick
        self.stream = StreamHub(self.current_records)
        #: The transactions journal: entries by account, how long an answer waits, its status,
        #: and every request seen (account, query).
        self.journal: dict[str, list[Any]] = {}
        self.journal_delay = 0.0
        self.journal_status = 200
        self.journal_requests: list[tuple[str, dict[str, str]]] = []

    def current_records(self) -> list[dict[str, Any]]:
        """The records the stream pushes: the override's objects, or the scenario's step."""
        if self._override is None:
            return self.accounts()
        if self._override_records is None:  # decoded once per override, not once per push
            value = loads(self._override)
            records = value if isinstance(value, list) else []
            self._override_records = [r for r in records if isinstance(r, dict)]
        return self._override_records

    @property
    def tokens_issued(self) -> int:
        return len(self.issued)

    def issue_token(self) -> str:
        """A new access token, live for ``oauth.expires_in`` seconds from now."""
        if self.oauth is None:
            raise RuntimeError("the simulator was not given oauth credentials")
        token = secrets.token_urlsafe(24)
        self.issued.append(token)
        self._live[token] = self.clock() + self.oauth.expires_in
        return token

    def revoke_tokens(self) -> int:
        """Revoke every access token issued so far; how many were still live."""
        now = self.clock()
        live = sum(expiry > now for expiry in self._live.values())
        self._live.clear()
        return live

    def authorizes(self, token: str) -> bool:
        """Whether ``token`` may read the accounts: the static token, or (with ``oauth``) a
        live access token."""
        if self.oauth is None:
            return secrets.compare_digest(token, self.token)
        expiry = self._live.get(token)
        if expiry is None:
            return False
        if expiry <= self.clock():
            del self._live[token]
            return False
        return True

    def accounts(self) -> list[dict[str, Any]]:
        """The scenario's accounts at the current step, money as ``Decimal``; does not advance."""
        step = self.step if self.scenario == "demo" else 0
        return [_vision(step), _cor(step)]

    def serve(self) -> str:
        """The JSON body for the current step (or the override), then advance one step."""
        body = self._override if self._override is not None else dumps(self.accounts())
        if self.tick is None:
            self.set_step(self.step + 1)
        return body

    def set_step(self, step: int) -> None:
        """Make the next answer serve ``step`` (taken modulo :data:`CYCLE`)."""
        self.step = step % CYCLE
        self.stream.changed()

    def set_accounts(self, value: Any) -> None:
        """Serve exactly this JSON value from now on, whatever it holds."""
        self._override = dumps(value)
        self._override_records = None
        self.stream.changed()

    def clear_accounts(self) -> None:
        """Serve the scenario again."""
        self._override = None
        self.stream.changed()

    def queue(self, reply: Reply) -> None:
        """Answer the next ``reply.remaining`` requests (or all, if -1) with ``reply``."""
        self._replies.append(reply)

    def clear_replies(self) -> None:
        """Drop every queued failure and raw answer."""
        self._replies.clear()

    def take_reply(self) -> Reply | None:
        """The queued answer for this request, if any, counting it down."""
        if not self._replies:
            return None
        reply = self._replies[0]
        if reply.remaining > 0:
            reply.remaining -= 1
            if reply.remaining == 0:
                self._replies.popleft()
        return reply


SIMULATOR: Final = web.AppKey("simulator", Simulator)


class _ControlError(Exception):
    """A control request the simulator cannot follow; the message says why."""


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status, text=dumps({"code": code, "message": message}), content_type=_JSON
    )


def _default_error_body(status: int) -> str:
    code = {400: "validation_error", 404: "not_found"}.get(status, "api_error")
    if status == 401:
        message = "token incorrect or revoked"
    else:
        try:
            message = http.HTTPStatus(status).phrase.lower()
        except ValueError:
            message = "simulated failure"
    return dumps({"code": code, "message": message})


def _authorized(request: web.Request, sim: Simulator) -> bool:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and sim.authorizes(credentials)


async def _get_accounts(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    if request.headers.get("Upgrade", "").lower() == "websocket":  # the account stream
        return await handle(request, sim.stream, _authorized(request, sim))
    sim.requests += 1
    if not _authorized(request, sim):
        sim.refused += 1
        return _error(401, "api_error", "token incorrect or revoked")
    reply = sim.take_reply()
    if reply is None:
        return web.Response(text=sim.serve(), content_type=_JSON)
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    if reply.body is not None:
        body = reply.body
    elif reply.status == 200:
        body = sim.serve()
    else:
        body = _default_error_body(reply.status)
    headers = {} if reply.retry_after is None else {"Retry-After": reply.retry_after}
    return web.Response(
        status=reply.status, text=body, content_type=reply.content_type, headers=headers
    )


async def _read_json(request: web.Request) -> Any:
    try:
        return loads(await request.read())
    except ValueError as exc:  # JSONDecodeError, NaN, not UTF-8
        raise _ControlError(f"body is not JSON: {exc}") from exc


async def _read_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    value = await _read_json(request)
    if not isinstance(value, dict):
        raise _ControlError("body must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _ControlError(f"unknown keys {unknown}, expected some of {sorted(allowed)}")
    return value


def _int(spec: dict[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _ControlError(f"{key} must be an integer")
    return value


def _reply(spec: dict[str, Any], *, status: int) -> Reply:
    status = _int(spec, "status", status)
    if not 200 <= status <= 599:
        raise _ControlError("status must be between 200 and 599")
    count = _int(spec, "count", 1)
    if count < 1 and count != -1:
        raise _ControlError("count must be positive, or -1 for until cleared")
    body, content_type = spec.get("body"), spec.get("content_type", _JSON)
    if body is not None and not isinstance(body, str):
        raise _ControlError("body must be a string")
    if not isinstance(content_type, str):
        raise _ControlError("content_type must be a string")
    retry_after = spec.get("retry_after")
    if retry_after is not None and not isinstance(retry_after, int | Decimal | str):
        raise _ControlError("retry_after must be a number of seconds or a string")
    delay = spec.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | Decimal) or delay < 0:
        raise _ControlError("delay must be a non-negative number of seconds")
    return Reply(
        status=status,
        body=body,
        content_type=content_type,
        retry_after=None if retry_after is None else str(retry_after),
        delay=float(delay),
        remaining=count,
    )


@web.middleware
async def _bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _ControlError as exc:
        return _error(400, "validation_error", str(exc))


async def _put_accounts(request: web.Request) -> web.Response:
    request.app[SIMULATOR].set_accounts(await _read_json(request))
    return web.Response(status=204)


async def _delete_accounts(request: web.Request) -> web.Response:
    request.app[SIMULATOR].clear_accounts()
    return web.Response(status=204)


async def _post_fail(request: web.Request) -> web.Response:
    keys = {"status", "body", "count", "retry_after", "delay", "content_type"}
    spec = await _read_object(request, keys)
    request.app[SIMULATOR].queue(_reply(spec, status=500))
    return web.Response(status=204)


async def _post_raw(request: web.Request) -> web.Response:
    spec = await _read_object(request, {"body", "count", "delay", "content_type"})
    if not isinstance(spec.get("body"), str):
        raise _ControlError("body must be a string")
    request.app[SIMULATOR].queue(_reply(spec, status=200))
    return web.Response(status=204)


async def _delete_fail(request: web.Request) -> web.Response:
    request.app[SIMULATOR].clear_replies()
    return web.Response(status=204)


def _stats(sim: Simulator) -> web.Response:
    stats = {
        "requests": sim.requests,
        "step": sim.step,
        "tokens_issued": sim.tokens_issued,
        "refused": sim.refused,
    }
    return web.Response(text=dumps(stats), content_type=_JSON)


async def _get_stats(request: web.Request) -> web.Response:
    return _stats(request.app[SIMULATOR])


async def _post_step(request: web.Request) -> web.Response:
    spec = await _read_object(request, {"step"})
    if "step" not in spec:
        raise _ControlError("step is required")
    sim = request.app[SIMULATOR]
    sim.set_step(_int(spec, "step", 0))
    return _stats(sim)


async def _post_revoke(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.revoke_tokens()
    return _stats(sim)


def _oauth_error(error: str, description: str) -> web.Response:
    body = {"error": error, "error_description": description}
    return web.Response(status=400, text=dumps(body), content_type=_JSON)


async def _post_token(request: web.Request) -> web.Response:
    """The password grant, as upstream's ``POST /connect/token``."""
    sim = request.app[SIMULATOR]
    if sim.oauth is None:
        return _error(404, "not_found", "this simulator issues no tokens")
    form = {key: str(value) for key, value in (await request.post()).items()}
    if form.get("grant_type") != "password":
        return _oauth_error("unsupported_grant_type", "only grant_type=password is supported")
    if not sim.oauth.accepts(form):
        return _oauth_error("invalid_grant", "invalid client, username or password")
    expires_in = sim.oauth.expires_in
    body = {
        "access_token": sim.issue_token(),
        "token_type": "Bearer",
        "expires_in": int(expires_in) if expires_in == int(expires_in) else expires_in,
        "scope": "openid",
    }
    return web.Response(text=dumps(body), content_type=_JSON)


async def _get_journal(request: web.Request) -> web.Response:
    """``GET /accounts/{account}/transactions``: the entries ``PUT /_sim/journal`` set."""
    sim = request.app[SIMULATOR]
    account = request.match_info["account"]
    sim.journal_requests.append((account, dict(request.query)))
    if not _authorized(request, sim):
        return _error(401, "api_error", "token incorrect or revoked")
    if sim.journal_delay > 0:
        await asyncio.sleep(sim.journal_delay)
    if sim.journal_status != 200:
        return _error(sim.journal_status, "api_error", "simulated failure")
    return web.Response(text=dumps(sim.journal.get(account, [])), content_type=_JSON)


async def _put_journal(request: web.Request) -> web.Response:
    spec = await _read_object(request, {"account", "entries", "delay", "status"})
    sim = request.app[SIMULATOR]
    account, entries = spec.get("account"), spec.get("entries", [])
    if account is not None:
        if not isinstance(account, str) or not isinstance(entries, list):
            raise _ControlError("account must be a string and entries a list")
        sim.journal[account] = entries
    delay = spec.get("delay", sim.journal_delay)
    if isinstance(delay, bool) or not isinstance(delay, int | Decimal) or delay < 0:
        raise _ControlError("delay must be a non-negative number of seconds")
    sim.journal_delay = float(delay)
    sim.journal_status = _int(spec, "status", sim.journal_status)
    return web.Response(status=204)


def build_app(sim: Simulator) -> web.Application:
    """The simulated API as an aiohttp application serving ``sim``."""
    app = web.Application(middlewares=[_bad_requests])
    app[SIMULATOR] = sim
    app.router.add_get("/accounts", _get_accounts, allow_head=False)
    app.router.add_put("/_sim/accounts", _put_accounts)
    app.router.add_delete("/_sim/accounts", _delete_accounts)
    app.router.add_post("/_sim/fail", _post_fail)
    app.router.add_delete("/_sim/fail", _delete_fail)
    app.router.add_post("/_sim/raw", _post_raw)
    app.router.add_get("/_sim/stats", _get_stats, allow_head=False)
    app.router.add_post("/_sim/step", _post_step)
    app.router.add_post("/_sim/revoke", _post_revoke)
    app.router.add_post("/connect/token", _post_token)
    app.router.add_get("/accounts/{account}/transactions", _get_journal, allow_head=False)
    app.router.add_put("/_sim/journal", _put_journal)
    add_routes(app, sim.stream)
    if sim.tick is not None:
        app.cleanup_ctx.append(_ticking)
    return app


async def _ticking(app: web.Application) -> AsyncIterator[None]:
    """Advance the scenario one step every ``tick`` seconds while the app runs."""
    sim = app[SIMULATOR]

    async def tick(every: float) -> None:
        while True:
            await asyncio.sleep(every)
            sim.set_step(sim.step + 1)

    task = asyncio.create_task(tick(sim.tick or 1.0))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def start(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve ``sim`` on ``host:port`` (0: any free port); the runner and the accounts URL bound.

    The caller owns the runner and must ``await runner.cleanup()``. A client that hangs up
    cancels its delayed answer, and cleanup waits at most a second for answers in flight.
    """
    runner, base = await serve_app(build_app(sim), host, port, handler_cancellation=True)
    return runner, f"{base}/accounts"


async def serve_forever(
    sim: Simulator,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``sim`` until ``stop`` is set; ``on_ready`` gets the accounts URL once bound."""
    runner, url = await start(sim, host, port)
    try:
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
    finally:
        await runner.cleanup()
