"""The one boundary where aiohttp's exceptions become ours, and what our HTTP clients share.

A request runs inside one of three context managers, one per caller; there the first row of
its table that matches turns aiohttp's exception (or the socket's ``OSError``, ``ssl.SSLError``
or a ``TimeoutError``) into ours, in the model of httpx's ``map_exceptions``::

    raised in the block          fetch_errors: FetchError     token_errors: AuthError
    ---------------------------  ---------------------------  --------------------------------
    TimeoutError (also aiohttp's timed out after 10s          token request timed out after 10s
      ServerTimeoutError)
    ClientConnectorError (also   cannot connect to h:p:       token request failed: cannot
      its DNS and TLS kinds)       <reason>                     connect to h:p: <reason>
    other ClientError, OSError   request failed: <reason>     token request failed: <reason>

    raised in the block          sink_errors: SinkError
    ---------------------------  ----------------------------------------------------------------
    TimeoutError                 timeout after 10s sending to sink 'x'                   retryable
    InvalidURL                   invalid URL for sink 'x'                                permanent
    NonHttpUrlClientError        invalid URL for sink 'x': not an http or https URL      permanent
    ssl.SSLError, ClientSSLError connection failed sending to sink 'x': <TLS failure>    permanent
    other ClientError, OSError   connection failed sending to sink 'x': <class> (<errno>) retryable

A TLS failure (:func:`tls_failure`) is a configuration problem that no retry fixes: a
certificate that is not trusted, has expired or names another host, or an ``https://`` URL on a
port that does not speak TLS. It is described by what TLS said (``TLS handshake failed:
certificate verify failed: self-signed certificate``), never by an errno: ``ssl.SSLError``'s
``errno`` is ssl's own error code (1 is not ``EPERM``).

The translated error is raised ``from None``, unlike httpx's ``from exc``: aiohttp's texts can
hold the URL, which is a secret for most sinks (and may carry credentials for a source), so the
original exception must not travel on as the cause or context. Messages name the class and
errno (:func:`describe`), the socket's reason (:func:`reason`) or the TLS failure instead.

Beside the translation: the ``User-Agent`` we send, ``Retry-After`` parsing
(:func:`parse_retry_after`), the one-line excerpt of an error body or a server's reply
(:func:`excerpt`) and the TLS failure's description (:func:`tls_detail`), which the SMTP sink
uses as well, and the origin a redirect points to (:func:`origin_of`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from monitor import __version__
from monitor.errors import AuthError, BotError, FetchError, MonitorError, SinkError, StreamError
from monitor.text import one_line

USER_AGENT = f"balance-monitor/{__version__}"
#: The most of an error body (or a server's reply) a message quotes.
EXCERPT_CHARS = 200

_E = TypeVar("_E", bound=BaseException)


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class Translation:
    """One row of a table: an exception of one of ``kinds`` becomes ``make(exc)``."""

    kinds: tuple[type[BaseException], ...]
    make: Callable[[Any], MonitorError]


def when(*kinds: type[_E], then: Callable[[_E], MonitorError]) -> Translation:
    """The row that turns ``kinds`` into ``then(exc)`` (typed against ``kinds``)."""
    return Translation(kinds, then)


@contextlib.contextmanager
def map_exceptions(table: Sequence[Translation]) -> Iterator[None]:
    """Inside the block, the first row of ``table`` that matches an exception raises its
    translation ``from None``; anything no row names passes through unchanged."""
    caught = tuple(kind for row in table for kind in row.kinds)
    try:
        yield
    except caught as exc:
        make = next(row.make for row in table if isinstance(exc, row.kinds))
        raise make(exc) from None


def _request_failures(
    error: Callable[[str], MonitorError], *, timeout: float, failed: str
) -> list[Translation]:
    """A request's timeout, refused connection and other transport failure as ``error``:
    ``timed out after 10s``, ``cannot connect to host:port: ECONNREFUSED``, ``{failed}: ...``."""
    return [
        when(TimeoutError, then=lambda _: error(f"timed out after {timeout:g}s")),
        when(
            aiohttp.ClientConnectorError,
            then=lambda exc: error(f"cannot connect to {exc.host}:{exc.port}: {reason(exc)}"),
        ),
        when(aiohttp.ClientError, OSError, then=lambda exc: error(f"{failed}: {reason(exc)}")),
    ]


def fetch_errors(*, timeout: float) -> AbstractContextManager[None]:
    """The balances GET's failures as ``FetchError``; ``timeout`` (seconds) for the message."""
    return map_exceptions(_request_failures(FetchError, timeout=timeout, failed="request failed"))


def stream_errors(*, timeout: float) -> AbstractContextManager[None]:
    """The account stream's WebSocket handshake failures as ``StreamError``: a refused
    upgrade carries its status (401: the token), others name the cause as :func:`fetch_errors`
    does."""
    return map_exceptions(
        [
            when(
                aiohttp.WSServerHandshakeError,
                then=lambda exc: StreamError(
                    f"stream handshake refused: HTTP {exc.status}", status=exc.status
                ),
            ),
            *_request_failures(StreamError, timeout=timeout, failed="stream failed"),
        ]
    )


def token_errors(*, timeout: float) -> AbstractContextManager[None]:
    """The OAuth2 token request's failures as ``AuthError``, naming the cause as
    :func:`fetch_errors` does."""
    return map_exceptions(
        [
            when(
                TimeoutError,
                then=lambda _: AuthError(f"token request timed out after {timeout:g}s"),
            ),
            when(
                aiohttp.ClientConnectorError,
                then=lambda exc: AuthError(
                    f"token request failed: cannot connect to {exc.host}:{exc.port}: {reason(exc)}"
                ),
            ),
            when(
                aiohttp.ClientError,
                OSError,
                then=lambda exc: AuthError(f"token request failed: {reason(exc)}"),
            ),
        ]
    )


def sink_errors(sink: str, *, timeout: float) -> AbstractContextManager[None]:
    """A sink's POST failures as ``SinkError``: timeouts and connection errors are retryable;
    an invalid or non-HTTP URL and a TLS failure are not. The message names the sink, never the
    URL."""
    return map_exceptions(
        [
            when(
                TimeoutError,
                then=lambda _: SinkError(
                    f"timeout after {timeout:g}s sending to sink '{sink}'", retryable=True
                ),
            ),
            when(
                aiohttp.InvalidURL,
                then=lambda _: SinkError(f"invalid URL for sink '{sink}'", retryable=False),
            ),
            when(
                aiohttp.NonHttpUrlClientError,
                then=lambda _: SinkError(
                    f"invalid URL for sink '{sink}': not an http or https URL", retryable=False
                ),
            ),
            when(
                ssl.SSLError,
                aiohttp.ClientSSLError,
                then=lambda exc: SinkError(
                    f"connection failed sending to sink '{sink}': {tls_failure(exc)}",
                    retryable=False,
                ),
            ),
            when(
                aiohttp.ClientError,
                OSError,
                then=lambda exc: SinkError(
                    f"connection failed sending to sink '{sink}': {describe(exc)}",
                    retryable=True,
                ),
            ),
        ]
    )


def bot_errors(bot: str, *, timeout: float) -> AbstractContextManager[None]:
    """A Telegram bot call's failures as ``BotError``, naming the sink, never the URL (it holds
    the bot token)."""
    return map_exceptions(
        [
            when(
                TimeoutError,
                then=lambda _: BotError(f"bot '{bot}': timed out after {timeout:g}s"),
            ),
            when(
                ssl.SSLError,
                aiohttp.ClientSSLError,
                then=lambda exc: BotError(f"bot '{bot}': {tls_failure(exc)}"),
            ),
            when(
                aiohttp.ClientError,
                OSError,
                then=lambda exc: BotError(f"bot '{bot}': connection failed: {describe(exc)}"),
            ),
        ]
    )


# --------------------------------------------------------------------------- naming a failure


def errno_name(exc: BaseException) -> str | None:
    """``ECONNREFUSED``: the symbolic name of ``exc.errno``, if it has one we know. An
    ``ssl.SSLError`` has none: its ``errno`` is ssl's error code (1 is not ``EPERM``)."""
    if isinstance(exc, ssl.SSLError):
        return None
    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code) if isinstance(code, int) else None


def describe(exc: BaseException) -> str:
    """``ClientConnectorError (ECONNREFUSED)``: the class and errno, never the exception's text
    (which can hold a URL)."""
    name = errno_name(exc)
    return f"{type(exc).__name__} ({name})" if name else type(exc).__name__


def reason(exc: BaseException) -> str:
    """Why a connection failed, for people: ``Connection refused``.

    aiohttp keeps the socket's error as ``os_error``; asyncio's own text for it is ``Connect
    call failed (addr)`` whatever the cause, so the errno's ``strerror`` says which. Without an
    errno, the socket error's ``strerror``, else ``exc``'s errno name, else its class.
    """
    if tls_error(exc) is not None:
        return tls_failure(exc)
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError):
        if os_error.errno is not None and errno_name(os_error) is not None:
            return os.strerror(os_error.errno)
        if os_error.strerror:
            return os_error.strerror
    return errno_name(exc) or type(exc).__name__


# --------------------------------------------------------------------------- TLS

#: ssl's reasons (and their texts) when the peer answered the client's hello with something
#: that is not TLS: plain HTTP or SMTP on the port (OpenSSL 3.2 and later say "record layer
#: failure" where earlier ones said "wrong version number").
NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
    }
)
_SSL_TEXT = re.compile(r"^\[(?:SSL|[A-Z0-9_]+): ([A-Z0-9_]+)\] (.*?)(?: \(_ssl\.c:\d+\))?$")
_NOT_VALID_FOR = re.compile(r"certificate is not valid for '[^']*'\.?")


def tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` that ``exc`` is or wraps (aiohttp keeps it as ``certificate_error``
    or ``os_error``), if any."""
    for candidate in (
        getattr(exc, "certificate_error", None),
        getattr(exc, "os_error", None),
        exc,
    ):
        if isinstance(candidate, ssl.SSLError):
            return candidate
    return None


def tls_failure(exc: BaseException) -> str:
    """``TLS handshake failed: certificate verify failed: self-signed certificate``.

    aiohttp raises its ``ClientSSLError`` kinds while connecting, that is in the handshake; a
    bare ``ssl.SSLError`` is a ``TLS error``.
    """
    stage = "TLS handshake failed" if isinstance(exc, aiohttp.ClientSSLError) else "TLS error"
    return f"{stage}: {tls_detail(tls_error(exc) or exc)}"


def tls_detail(exc: BaseException) -> str:
    """What TLS said, for people, without the host or an errno: ``certificate verify failed:
    certificate has expired``, ``the server does not speak TLS (wrong port?)``, ``the server
    closed the connection``, else ssl's own words (``tlsv1 alert protocol version``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = getattr(exc, "verify_message", None) or "the certificate is not trusted"
        # "Hostname mismatch, certificate is not valid for 'h'.": the host may be secret.
        message = _NOT_VALID_FOR.sub("certificate is not valid for this host", message)
        return f"certificate verify failed: {one_line(message)}"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "the server closed the connection"
    reason, text = _ssl_words(exc)
    if reason in NOT_TLS_REASONS:
        return "the server does not speak TLS (wrong port?)"
    return one_line(text) or reason.lower().replace("_", " ") or type(exc).__name__


def not_tls(exc: BaseException) -> bool:
    """Whether ``exc`` (an ``ssl.SSLError``) says the peer does not speak TLS at all."""
    return _ssl_words(exc)[0] in NOT_TLS_REASONS


def _ssl_words(exc: BaseException) -> tuple[str, str]:
    """``("WRONG_VERSION_NUMBER", "wrong version number")`` from ``[SSL: WRONG_VERSION_NUMBER]
    wrong version number (_ssl.c:1006)``; an error made without ssl's prefix gives its text as
    the reason too (``"record layer failure"`` -> ``RECORD_LAYER_FAILURE``)."""
    text = str(exc.args[-1]) if exc.args else ""
    reason = getattr(exc, "reason", None)
    if (match := _SSL_TEXT.match(text)) is not None:
        reason, text = reason or match.group(1), match.group(2)
    if not isinstance(reason, str):
        reason = text.strip().upper().replace(" ", "_")
    return reason, text


# --------------------------------------------------------------------------- redirects


def origin_of(location: str | None, *, base: str) -> str | None:
    """``https://other.example:8443``: the origin a redirect's ``Location`` (relative to
    ``base``) points to, without credentials, path or query; ``None`` if there is none."""
    if not location:
        return None
    try:
        target = URL(base).join(URL(location))
        if not target.absolute or not target.host:
            return None
        return one_line(str(target.origin()))
    except (ValueError, TypeError):
        return None


def excerpt(text: str, *, secrets: Iterable[str] = (), mask: str = "***") -> str:
    """``text`` on one line, each of ``secrets`` (as given and as it reads on one line) replaced
    by ``mask``, then cut to :data:`EXCERPT_CHARS`. Secrets go before the cut, so no prefix
    of one is left at the end."""
    text = one_line(text)
    for secret in secrets:
        for value in sorted({secret, one_line(secret)}, key=len, reverse=True):
            if value:
                text = text.replace(value, mask)
    return text[:EXCERPT_CHARS]


# --------------------------------------------------------------------------- Retry-After


#: The longest wait :func:`parse_retry_after` returns: a longer one (up to a number too large for
#: a ``timedelta`` or a float) is read as this. Callers cut it further to what they honour.
RETRY_AFTER_MAX = 10 * 365 * 86400.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); ``None`` if unusable.

    A date in the past is ``0``; a date without a zone is taken as UTC. The wait is at most
    :data:`RETRY_AFTER_MAX`, whatever the header asked.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), RETRY_AFTER_MAX)  # float() of a long digit string is inf
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = now if now is not None else datetime.now(tz=UTC)
    return min(max(0.0, (moment - now).total_seconds()), RETRY_AFTER_MAX)
