"""BalancesSource against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from monitor import __version__, http
from monitor.config import ApiConfig
from monitor.errors import FetchError
from monitor.source import BalancesSource

TOKEN = "s3cr3t-T0KEN-value"
BODY = b'[{"account_number":"A","cash":2524.54}]'


@dataclass
class Upstream:
    """A balances API on 127.0.0.1: one route per behaviour, remembering request headers."""

    headers: list[dict[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/accounts", self.ok)
        app.router.add_get("/unauthorized", self.unauthorized)
        app.router.add_get("/broken", self.broken)
        app.router.add_get("/html-error", self.html_error)
        app.router.add_get("/busy", self.busy)
        app.router.add_get("/busy-forever", self.busy_forever)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/echo", self.echo)
        app.router.add_get("/big", self.big)
        app.router.add_get("/big-stream", self.big_stream)
        app.router.add_get("/deep", self.deep)
        return app

    def _seen(self, request: web.Request) -> None:
        self.headers.append(dict(request.headers))

    async def ok(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=BODY, content_type="application/json")

    async def unauthorized(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response(
            {"code": "api_error", "message": "token incorrect or revoked"}, status=401
        )

    async def broken(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"code": "api_error", "message": "internal server error"}, status=500
        )

    async def html_error(self, request: web.Request) -> web.Response:
        return web.Response(
            status=502,
            text="<html>\n  <body>Bad   Gateway</body>\n</html>",
            content_type="text/html",
        )

    async def busy(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"code": "rate_limited", "message": "slow down"},
            status=429,
            headers={"Retry-After": "120"},
        )

    async def busy_forever(self, request: web.Request) -> web.Response:
        """A Retry-After too large for a ``timedelta`` (or a float)."""
        return web.Response(status=429, headers={"Retry-After": "9" * 400})

    async def slow(self, request: web.Request) -> web.Response:
        await self.released.wait()
        return web.Response(body=BODY)

    async def echo(self, request: web.Request) -> web.Response:
        """An upstream that quotes the credentials it refused, in its error message."""
        given = request.headers.get("Authorization", "")
        return web.json_response(
            {"code": "validation_error", "message": f"bad credentials: {given}"}, status=400
        )

    async def deep(self, request: web.Request) -> web.Response:
        """An error body nested deeper than Python's JSON decoder can follow."""
        return web.Response(status=500, body=b"[" * 100_000, content_type="application/json")

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b" " * 5000 + b"]")

    async def big_stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to go by
        await response.prepare(request)
        for _ in range(10):
            await response.write(b" " * 1000)
        await response.write_eof()
        return response


@dataclass
class Api:
    """The running upstream and a client session to reach it."""

    upstream: Upstream
    server: TestServer
    session: aiohttp.ClientSession

    def source(self, path: str, *, timeout: str = "5s", **kwargs: Any) -> BalancesSource:
        return source(self.session, str(self.server.make_url(path)), timeout=timeout, **kwargs)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def api(session: aiohttp.ClientSession) -> AsyncIterator[Api]:
    upstream = Upstream()
    server = TestServer(upstream.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield Api(upstream, server, session)
    finally:
        upstream.released.set()
        await server.close()


def source(
    session: aiohttp.ClientSession, url: str, *, timeout: str = "5s", **kwargs: Any
) -> BalancesSource:
    config = ApiConfig.model_validate({"url": url, "token": TOKEN, "timeout": timeout})
    return BalancesSource("default", config, session, SecretStr(TOKEN), **kwargs)


async def fetch_error(src: BalancesSource) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await src.fetch()
    return caught.value


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_fetch_sends_the_bearer_token_and_returns_the_body(
    api: Api,
) -> None:
    """A 2xx answer's body comes back as bytes; the token travels in the Authorization header."""
    assert await api.source("/accounts").fetch() == BODY
    [headers] = api.upstream.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"balance-monitor/{__version__}"


async def test_where_is_the_url_without_credentials(session: aiohttp.ClientSession) -> None:
    """The loggable URL drops user info and query."""
    src = source(session, "http://user:pw@127.0.0.1:8080/accounts?key=k")
    assert src.where == "http://127.0.0.1:8080/accounts"


@pytest.mark.parametrize(
    ("path", "status", "message", "retry_after"),
    [
        pytest.param(
            "/unauthorized",
            401,
            "HTTP 401 (api_error: token incorrect or revoked)",
            None,
            id="401-upstream-error",
        ),
        pytest.param("/broken", 500, "HTTP 500 (api_error: internal server error)", None, id="500"),
        pytest.param(
            "/html-error",
            502,
            "HTTP 502 (<html> <body>Bad Gateway</body> </html>)",
            None,
            id="502-non-json-body",
        ),
        pytest.param(
            "/busy", 429, "HTTP 429 (rate_limited: slow down)", 120.0, id="429-retry-after"
        ),
        pytest.param(
            "/busy-forever",
            429,
            "HTTP 429",
            http.RETRY_AFTER_MAX,
            id="429-retry-after-past-any-float",
        ),
        pytest.param("/nowhere", 404, "HTTP 404 (404: Not Found)", None, id="404-plain-text"),
        pytest.param("/deep", 500, f"HTTP 500 ({'[' * 200})", None, id="500-nested-too-deep"),
    ],
)
async def test_a_non_2xx_status_is_a_fetch_error(
    api: Api,
    path: str,
    status: int,
    message: str,
    retry_after: float | None,
) -> None:
    """The message has the status and upstream's own ``code: message`` (or a body excerpt);
    ``status`` and ``retry_after`` are attributes."""
    error = await fetch_error(api.source(path))
    assert (str(error), error.status, error.retry_after) == (message, status, retry_after)


async def test_a_timeout_is_a_fetch_error(
    api: Api,
) -> None:
    """No answer within ``api.timeout``: FetchError says how long it waited."""
    error = await fetch_error(api.source("/slow", timeout="200ms"))
    assert str(error) == "timed out after 0.2s"
    assert error.status is None


async def test_a_refused_connection_is_a_fetch_error(
    session: aiohttp.ClientSession, closed_port: int
) -> None:
    """Nothing listening: FetchError names the host and port and the reason."""
    error = await fetch_error(source(session, f"http://127.0.0.1:{closed_port}/accounts"))
    assert str(error) == f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"
    assert error.__cause__ is None
    assert error.status is None


@pytest.mark.parametrize(
    ("path", "size"),
    [
        pytest.param("/big", "5002 bytes", id="content-length"),
        pytest.param("/big-stream", "over", id="chunked"),
    ],
)
async def test_a_body_over_the_limit_is_refused(api: Api, path: str, size: str) -> None:
    """A response larger than ``max_body`` is a FetchError, whether or not it declares its size."""
    error = await fetch_error(api.source(path, max_body=4096))
    assert str(error).startswith(f"response too large: {size}")
    assert await api.source(path, max_body=20_000).fetch()


async def test_the_token_never_appears_in_a_fetch_error(api: Api, closed_port: int) -> None:
    """Whatever fails, even an upstream echoing the credentials, the token stays out of
    the exception: its message, its args and its cause."""
    failures = [
        api.source(path) for path in ("/unauthorized", "/broken", "/busy", "/echo", "/nowhere")
    ]
    failures.append(api.source("/slow", timeout="100ms"))
    failures.append(source(api.session, f"http://127.0.0.1:{closed_port}/accounts"))
    for src in failures:
        error = await fetch_error(src)
        text = " ".join([str(error), repr(error.args), repr(error.__cause__)])
        assert TOKEN not in text
        assert TOKEN[:8] not in text
    echo = await fetch_error(api.source("/echo"))
    assert str(echo) == "HTTP 400 (validation_error: bad credentials: Bearer <token>)"
    assert json.dumps(echo.args).count("<token>") == 1


@pytest.mark.parametrize(
    ("server", "detail"),
    [
        pytest.param(
            "plain-http", "the server does not speak TLS (wrong port?)", id="https-to-plain"
        ),
        pytest.param(
            "untrusted",
            "certificate verify failed: unable to get local issuer certificate",
            id="untrusted-certificate",
        ),
    ],
)
async def test_a_tls_failure_is_a_failed_poll_saying_what_tls_said(
    api: Api, server: str, detail: str
) -> None:
    """An https:// URL on a plain-HTTP port, or a certificate nobody trusts, is a FetchError
    (a failed poll, which counts toward source_down like any other) naming the TLS failure,
    never an errno it is not (ssl's error code 1 read as EPERM)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    tls = TestServer(api.upstream.app(), host="127.0.0.1")
    await tls.start_server(ssl=context)
    port = api.server.port if server == "plain-http" else tls.port
    try:
        error = await fetch_error(source(api.session, f"https://127.0.0.1:{port}/accounts"))
    finally:
        await tls.close()

    assert str(error) == f"cannot connect to 127.0.0.1:{port}: TLS handshake failed: {detail}"
    assert error.status is None
    assert api.upstream.headers == []


async def test_a_redirect_to_another_origin_does_not_take_the_token_along(
    api: Api, session: aiohttp.ClientSession
) -> None:
    """A balances GET redirected to another origin (another port) is followed without the
    Authorization header: the other origin never sees the token."""
    other = Upstream()
    other_server = TestServer(other.app(), host="127.0.0.1")
    await other_server.start_server()
    target = str(other_server.make_url("/accounts"))

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(target)

    app = web.Application()
    app.router.add_get("/accounts", moved)
    first = TestServer(app, host="127.0.0.1")
    await first.start_server()
    try:
        body = await source(session, str(first.make_url("/accounts"))).fetch()
    finally:
        await first.close()
        await other_server.close()

    assert body == BODY
    [headers] = other.headers
    assert "Authorization" not in headers
    assert TOKEN not in repr(headers)
