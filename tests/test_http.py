"""monitor.http: aiohttp's (and the socket's) exceptions become ours, Retry-After, excerpts.

The translation tables are checked twice: with failures that real requests meet against servers
on 127.0.0.1 (refused, silent, cut off, TLS the client does not trust, ...), and with exceptions
raised directly for the kinds a loopback server cannot provoke reliably.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from monitor import __version__, http
from monitor.errors import AuthError, FetchError, MonitorError, SinkError

TIMEOUT = 0.3

Family = Callable[[], AbstractContextManager[None]]
FAMILIES: dict[str, Family] = {
    "fetch": lambda: http.fetch_errors(timeout=TIMEOUT),
    "token": lambda: http.token_errors(timeout=TIMEOUT),
    "sink": lambda: http.sink_errors("ops", timeout=TIMEOUT),
}

# --------------------------------------------------------------------------- real failures


@dataclass
class Failures:
    """Servers on 127.0.0.1 that fail a request in one way each, by URL; ``trusted``: a client
    TLS context that trusts the CA of the servers whose certificates are wrong otherwise."""

    urls: dict[str, str]
    released: asyncio.Event
    trusted: ssl.SSLContext


def _app(released: asyncio.Event) -> web.Application:
    async def slow(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response()

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def short(request: web.Request) -> web.StreamResponse:
        """Promises 100 bytes, sends 3 and hangs up."""
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"abc")
        assert request.transport is not None
        request.transport.close()
        return response

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    for path, handler in (("/slow", slow), ("/loop", loop), ("/short", short), ("/ok", ok)):
        app.router.add_route("*", path, handler)
    return app


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _server_tls(
    *, cert: trustme.LeafCert | None = None, ca: trustme.CA | None = None
) -> ssl.SSLContext:
    """A server context with ``cert``, or with ``ca``'s own (self-signed) certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert is not None:
        cert.configure_cert(context)
    elif ca is not None:
        with ca.cert_pem.tempfile() as cert_file, ca.private_key_pem.tempfile() as key_file:
            context.load_cert_chain(cert_file, key_file)
    return context


#: A TLS alert record: close_notify, sent in answer to the client's hello.
CLOSE_NOTIFY = b"\x15\x03\x03\x00\x02\x01\x00"


@pytest.fixture
async def failures() -> AsyncIterator[Failures]:
    released = asyncio.Event()
    plain = TestServer(_app(released), host="127.0.0.1")
    await plain.start_server()
    trusted_ca = trustme.CA()
    trusted = ssl.create_default_context()
    trusted_ca.configure_trust(trusted)
    expired = trusted_ca.issue_cert(
        "127.0.0.1",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    tls_servers = {
        "untrusted-tls": _server_tls(cert=trustme.CA().issue_cert("127.0.0.1")),
        "self-signed-tls": _server_tls(ca=trustme.CA()),
        "wrong-host-tls": _server_tls(cert=trusted_ca.issue_cert("example.org")),
        "expired-tls": _server_tls(cert=expired),
    }
    started: list[TestServer] = []
    urls: dict[str, str] = {}
    for case, server_tls in tls_servers.items():
        server = TestServer(_app(released), host="127.0.0.1")
        await server.start_server(ssl=server_tls)
        started.append(server)
        urls[case] = f"https://127.0.0.1:{server.port}/ok"

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.close()

    async def close_notify(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(CLOSE_NOTIFY)
        await writer.drain()
        writer.close()

    rude = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    rude_port = rude.sockets[0].getsockname()[1]
    closing = await asyncio.start_server(close_notify, "127.0.0.1", 0)
    closing_port = closing.sockets[0].getsockname()[1]
    try:
        yield Failures(
            {
                "refused": f"http://127.0.0.1:{_closed_port()}/",
                "silent": str(plain.make_url("/slow")),
                "hang-up": f"http://127.0.0.1:{rude_port}/",
                "cut-short": str(plain.make_url("/short")),
                "redirect-loop": str(plain.make_url("/loop")),
                "tls-to-plain": f"https://127.0.0.1:{plain.port}/ok",
                "tls-closed": f"https://127.0.0.1:{closing_port}/ok",
                **urls,
                "invalid-url": "http://[::1/",
                "not-http": "ftp://127.0.0.1/",
            },
            released,
            trusted,
        )
    finally:
        released.set()
        for raw in (rude, closing):
            raw.close()
            await raw.wait_closed()
        for tls_server in started:
            await tls_server.close()
        await plain.close()


#: What each TLS failure is, truthfully: never an errno (ssl's error code 1 is not EPERM).
TLS_FAILURES = {
    "untrusted-tls": "certificate verify failed: unable to get local issuer certificate",
    "self-signed-tls": "certificate verify failed: self-signed certificate",
    "wrong-host-tls": (
        "certificate verify failed: IP address mismatch, certificate is not valid for this host"
    ),
    "expired-tls": "certificate verify failed: certificate has expired",
    "tls-to-plain": "the server does not speak TLS (wrong port?)",
    "tls-closed": "the server closed the connection",
}


def _tls_rows(detail: str) -> dict[str, tuple[type[MonitorError], str, bool | None]]:
    """A TLS failure is a failed request naming it, and permanent for a sink (a retry cannot
    fix a certificate or a port)."""
    failure = f"cannot connect to 127.0.0.1:{{port}}: TLS handshake failed: {detail}"
    return {
        "fetch": (FetchError, failure, None),
        "token": (AuthError, f"token request failed: {failure}", None),
        "sink": (
            SinkError,
            f"connection failed sending to sink 'ops': TLS handshake failed: {detail}",
            False,
        ),
    }


#: case -> family -> (our class, message ({port}: the URL's), retryable for SinkError).
REAL: dict[str, dict[str, tuple[type[MonitorError], str, bool | None]]] = {
    "refused": {
        "fetch": (FetchError, "cannot connect to 127.0.0.1:{port}: Connection refused", None),
        "token": (
            AuthError,
            "token request failed: cannot connect to 127.0.0.1:{port}: Connection refused",
            None,
        ),
        "sink": (
            SinkError,
            "connection failed sending to sink 'ops': ClientConnectorError (ECONNREFUSED)",
            True,
        ),
    },
    "silent": {
        "fetch": (FetchError, "timed out after 0.3s", None),
        "token": (AuthError, "token request timed out after 0.3s", None),
        "sink": (SinkError, "timeout after 0.3s sending to sink 'ops'", True),
    },
    "hang-up": {
        "fetch": (FetchError, "request failed: ServerDisconnectedError", None),
        "token": (AuthError, "token request failed: ServerDisconnectedError", None),
        "sink": (
            SinkError,
            "connection failed sending to sink 'ops': ServerDisconnectedError",
            True,
        ),
    },
    "cut-short": {
        "fetch": (FetchError, "request failed: ClientPayloadError", None),
        "token": (AuthError, "token request failed: ClientPayloadError", None),
        "sink": (SinkError, "connection failed sending to sink 'ops': ClientPayloadError", True),
    },
    "redirect-loop": {
        "fetch": (FetchError, "request failed: TooManyRedirects", None),
        "token": (AuthError, "token request failed: TooManyRedirects", None),
        "sink": (SinkError, "connection failed sending to sink 'ops': TooManyRedirects", True),
    },
    **{case: _tls_rows(detail) for case, detail in TLS_FAILURES.items()},
    "invalid-url": {
        "fetch": (FetchError, "request failed: InvalidUrlClientError", None),
        "token": (AuthError, "token request failed: InvalidUrlClientError", None),
        "sink": (SinkError, "invalid URL for sink 'ops'", False),
    },
    "not-http": {
        "fetch": (FetchError, "request failed: NonHttpUrlClientError", None),
        "token": (AuthError, "token request failed: NonHttpUrlClientError", None),
        "sink": (SinkError, "invalid URL for sink 'ops': not an http or https URL", False),
    },
}


@pytest.mark.parametrize(
    ("case", "family"), [(case, family) for case, rows in REAL.items() for family in rows]
)
async def test_real_failures_become_ours(failures: Failures, case: str, family: str) -> None:
    """Each way a real request fails becomes the caller's error class, with the message (and
    for a sink the retryable flag) of the table; never chained to aiohttp's exception, whose
    text can hold the URL."""
    kind, message, retryable = REAL[case][family]
    url = failures.urls[case]
    if "{port}" in message:
        message = message.format(port=URL(url).port)

    with pytest.raises(MonitorError) as caught, FAMILIES[family]():
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                max_redirects=3,
                ssl=failures.trusted,
            ) as response,
        ):
            await response.read()

    error = caught.value
    assert type(error) is kind
    assert str(error) == message
    assert error.__cause__ is None
    assert error.__suppress_context__
    if isinstance(error, SinkError):
        assert (error.retryable, error.status) == (retryable, None)


# --------------------------------------------------------------------------- raised directly


def _connector_error(os_error: OSError) -> aiohttp.ClientConnectorError:
    """What aiohttp raises when the connection to 127.0.0.1:8443 fails with ``os_error``."""
    key = ConnectionKey("127.0.0.1", 8443, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, os_error)


NOT_TLS = "the server does not speak TLS (wrong port?)"
PROTOCOL = "tlsv1 alert protocol version"
CLOSED = "the server closed the connection"

#: exception -> family -> (our class, message, retryable for SinkError).
DIRECT: list[tuple[str, BaseException, dict[str, tuple[type[MonitorError], str, bool | None]]]] = [
    (
        "aiohttp-timeout",
        aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
        {
            "fetch": (FetchError, "timed out after 0.3s", None),
            "token": (AuthError, "token request timed out after 0.3s", None),
            "sink": (SinkError, "timeout after 0.3s sending to sink 'ops'", True),
        },
    ),
    (
        "unreachable",
        _connector_error(OSError(errno.EHOSTUNREACH, "Connect call failed")),
        {
            "fetch": (FetchError, "cannot connect to 127.0.0.1:8443: No route to host", None),
            "token": (
                AuthError,
                "token request failed: cannot connect to 127.0.0.1:8443: No route to host",
                None,
            ),
            "sink": (
                SinkError,
                "connection failed sending to sink 'ops': ClientConnectorError (EHOSTUNREACH)",
                True,
            ),
        },
    ),
    (
        "connector-without-errno",
        _connector_error(OSError("Multiple exceptions")),
        {
            "fetch": (FetchError, "cannot connect to 127.0.0.1:8443: ClientConnectorError", None),
            "token": (
                AuthError,
                "token request failed: cannot connect to 127.0.0.1:8443: ClientConnectorError",
                None,
            ),
            "sink": (
                SinkError,
                "connection failed sending to sink 'ops': ClientConnectorError",
                True,
            ),
        },
    ),
    (
        "client-os-error",
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
        {
            "fetch": (FetchError, "request failed: ECONNRESET", None),
            "token": (AuthError, "token request failed: ECONNRESET", None),
            "sink": (
                SinkError,
                "connection failed sending to sink 'ops': ClientOSError (ECONNRESET)",
                True,
            ),
        },
    ),
    (
        "socket-error",
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        {
            "fetch": (FetchError, "request failed: ECONNRESET", None),
            "token": (AuthError, "token request failed: ECONNRESET", None),
            "sink": (
                SinkError,
                "connection failed sending to sink 'ops': ConnectionResetError (ECONNRESET)",
                True,
            ),
        },
    ),
    (
        "ssl-error",
        ssl.SSLError("record layer failure"),
        {
            "fetch": (FetchError, f"request failed: TLS error: {NOT_TLS}", None),
            "token": (AuthError, f"token request failed: TLS error: {NOT_TLS}", None),
            "sink": (
                SinkError,
                f"connection failed sending to sink 'ops': TLS error: {NOT_TLS}",
                False,
            ),
        },
    ),
    (
        "ssl-eof",
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:1006)"),
        {
            "fetch": (FetchError, f"request failed: TLS error: {CLOSED}", None),
            "token": (AuthError, f"token request failed: TLS error: {CLOSED}", None),
            "sink": (
                SinkError,
                f"connection failed sending to sink 'ops': TLS error: {CLOSED}",
                False,
            ),
        },
    ),
    (
        "tls-alert",
        aiohttp.ClientConnectorSSLError(
            ConnectionKey("127.0.0.1", 8443, True, True, None, None, None),
            ssl.SSLError(1, f"[SSL: TLSV1_ALERT_PROTOCOL_VERSION] {PROTOCOL} (_ssl.c:1006)"),
        ),
        {
            "fetch": (
                FetchError,
                f"cannot connect to 127.0.0.1:8443: TLS handshake failed: {PROTOCOL}",
                None,
            ),
            "token": (
                AuthError,
                f"token request failed: cannot connect to 127.0.0.1:8443: "
                f"TLS handshake failed: {PROTOCOL}",
                None,
            ),
            "sink": (
                SinkError,
                f"connection failed sending to sink 'ops': TLS handshake failed: {PROTOCOL}",
                False,
            ),
        },
    ),
    (
        "invalid-url",
        aiohttp.InvalidURL("http://[::1/"),
        {
            "fetch": (FetchError, "request failed: InvalidURL", None),
            "token": (AuthError, "token request failed: InvalidURL", None),
            "sink": (SinkError, "invalid URL for sink 'ops'", False),
        },
    ),
    (
        "not-http",
        aiohttp.NonHttpUrlClientError("ftp://127.0.0.1/"),
        {
            "fetch": (FetchError, "request failed: NonHttpUrlClientError", None),
            "token": (AuthError, "token request failed: NonHttpUrlClientError", None),
            "sink": (SinkError, "invalid URL for sink 'ops': not an http or https URL", False),
        },
    ),
]


@pytest.mark.parametrize(
    ("exc", "family", "expected"),
    [
        pytest.param(exc, family, expected, id=f"{name}-{family}")
        for name, exc, rows in DIRECT
        for family, expected in rows.items()
    ],
)
def test_exceptions_become_ours(
    exc: BaseException, family: str, expected: tuple[type[MonitorError], str, bool | None]
) -> None:
    """Exceptions raised in the block map to the most specific row of the caller's table."""
    kind, message, retryable = expected

    with pytest.raises(MonitorError) as caught, FAMILIES[family]():
        raise exc

    assert type(caught.value) is kind
    assert str(caught.value) == message
    assert caught.value.__cause__ is None
    if isinstance(caught.value, SinkError):
        assert caught.value.retryable is retryable


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "exc",
    [
        ValueError("not ours to translate"),
        FetchError("response too large: over 10 bytes"),
        SinkError("already ours", retryable=False),
        asyncio.CancelledError(),
    ],
    ids=["value-error", "fetch-error", "sink-error", "cancelled"],
)
def test_other_exceptions_pass_through(family: str, exc: BaseException) -> None:
    """What no row names (our own errors, cancellation, bugs) leaves the block unchanged."""
    with pytest.raises(type(exc)) as caught, FAMILIES[family]():
        raise exc

    assert caught.value is exc


def test_the_first_matching_row_wins() -> None:
    """Rows are tried in order: a TimeoutError that is also a ClientError is a timeout."""
    table = [
        http.when(TimeoutError, then=lambda exc: SinkError("timeout", retryable=True)),
        http.when(aiohttp.ClientError, then=lambda exc: SinkError("client", retryable=False)),
    ]

    with pytest.raises(SinkError, match=r"^timeout$"), http.map_exceptions(table):
        raise aiohttp.ServerTimeoutError

    with pytest.raises(SinkError, match=r"^client$"), http.map_exceptions(table):
        raise aiohttp.ClientPayloadError


# --------------------------------------------------------------------------- naming a failure


@pytest.mark.parametrize(
    ("exc", "name", "described"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "x"),
            "ECONNREFUSED",
            "ConnectionRefusedError (ECONNREFUSED)",
        ),
        (OSError(errno.EHOSTUNREACH, "x"), "EHOSTUNREACH", "OSError (EHOSTUNREACH)"),
        (OSError(99999, "x"), None, "OSError"),
        (OSError("no errno"), None, "OSError"),
        (ssl.SSLError(1, "[SSL: X] x"), None, "SSLError"),  # ssl's error code is no errno
        (aiohttp.ServerDisconnectedError(), None, "ServerDisconnectedError"),
        (TimeoutError(), None, "TimeoutError"),
    ],
)
def test_errno_name_and_describe(exc: BaseException, name: str | None, described: str) -> None:
    """One errno table: the symbolic name when the errno is known, the class always."""
    assert http.errno_name(exc) == name
    assert http.describe(exc) == described


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            _connector_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")),
            "Connection refused",
        ),
        (_connector_error(OSError(None, "Domain name not found")), "Domain name not found"),
        (aiohttp.ClientOSError(errno.EPIPE, "x"), "EPIPE"),
        (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError"),
    ],
)
def test_reason(exc: BaseException, reason: str) -> None:
    """The socket error's strerror when aiohttp kept it, else the errno name, else the class."""
    assert http.reason(exc) == reason


# --------------------------------------------------------------------------- excerpts


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("  invalid_payload:\n  field\tmissing ", (), "invalid_payload: field missing"),
        ("bell\x07here", (), "bell here"),
        ("x" * 500, (), "x" * 200),
        ("token s3cr3t refused", ("s3cr3t",), "token *** refused"),
        ("pass: a b c", ("a\nb c",), "pass: ***"),  # a secret as it reads on one line
        ("nothing to hide", ("",), "nothing to hide"),
        ("k" * 150 + " " + "S" * 100, ("S" * 100,), "k" * 150 + " ***"),  # masked before the cut
        ("S" * 300, ("S" * 300,), "***"),
    ],
)
def test_excerpt(text: str, secrets: tuple[str, ...], expected: str) -> None:
    """One line, the secrets masked, at most EXCERPT_CHARS characters."""
    assert http.excerpt(text, secrets=secrets) == expected
    assert len(http.excerpt(text, secrets=secrets)) <= http.EXCERPT_CHARS


def test_excerpt_mask() -> None:
    """Each caller picks the mask its messages use."""
    assert http.excerpt("Bearer abc123", secrets=["abc123"], mask="<token>") == "Bearer <token>"


# --------------------------------------------------------------------------- Retry-After


NOW = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("7", 7.0),
        (" 30 ", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1680.0),
        ("Wed, 21 Oct 2015 06:00:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 1680.0),
        ("Wed, 21 Oct 2015 09:28:00 +0200", 1680.0),
        ("21 Oct 2015 07:28:00", 1680.0),  # no zone: taken as UTC
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("²", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delta-seconds or HTTP-date; a past date is 0, anything else is None."""
    assert http.parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_reads_the_clock_without_now() -> None:
    """Without ``now``, a date is measured from the current time."""
    waited = http.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")
    assert waited == 0.0  # long past


def test_user_agent() -> None:
    """One User-Agent for every request balance-monitor makes over HTTP."""
    assert f"balance-monitor/{__version__}" == http.USER_AGENT


#: HTTP-dates with every field free: years and days past the calendar, zones, junk.
HTTP_DATES = st.builds(
    "{}, {} {} {} {}:{}:{} {}".format,
    st.sampled_from(["Mon", "Wed", "Xyz", ""]),
    st.integers(-5, 99),
    st.sampled_from(["Jan", "Oct", "Dec", "Foo"]),
    st.integers(-10, 10**6).map(str),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["GMT", "-0000", "+0200", "+9999", "-2400", "EST", "", "UTC+99"]),
)
RETRY_AFTER_VALUES = st.one_of(
    st.text(),
    st.text(alphabet="0123456789", min_size=1, max_size=5000),
    st.integers(min_value=0).map(str),
    HTTP_DATES,
)


@settings(max_examples=300, deadline=None)
@given(value=RETRY_AFTER_VALUES)
def test_any_retry_after_is_a_usable_wait_or_none(value: str) -> None:
    """Whatever the header says, parse_retry_after returns None or a finite wait of at most
    ``RETRY_AFTER_MAX`` seconds that a ``timedelta`` and a date can hold."""
    seconds = http.parse_retry_after(value, now=NOW)
    if seconds is None:
        return
    assert 0.0 <= seconds <= http.RETRY_AFTER_MAX
    assert NOW + timedelta(seconds=seconds) >= NOW


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("9" * 20, http.RETRY_AFTER_MAX, id="past-timedelta"),
        pytest.param("9" * 5000, http.RETRY_AFTER_MAX, id="past-a-float"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", http.RETRY_AFTER_MAX, id="year-9999"),
    ],
)
def test_a_retry_after_past_the_maximum_is_read_as_the_maximum(value: str, expected: float) -> None:
    """A wait longer than any caller honours is read as ``RETRY_AFTER_MAX`` (each caller cuts
    it further), never as a number too large for a ``timedelta``."""
    assert http.parse_retry_after(value, now=NOW) == expected
