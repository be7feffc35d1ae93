"""The one boundary where aiohttp's exceptions become ours, and what our HTTP clients share.

A request runs inside one of three context managers, one per caller; there the first row of
its table that matches turns aiohttp's exception (or the socket's ``OSError``, ``ssl.SSLError``
or a ``TimeoutError``) into ours, in the model of httpx's ``map_exceptions``::

    raised in the block          fetch_errors: FetchError     token_errors: AuthError
    ---------------------------  ---------------------------  --------------------------------
    TimeoutError (also aiohttp's timed out after 10s          token request timed out after 10s
      ServerTimeoutError)
    ClientConnectorError (also   cannot connect to h:p:       token request failed: <class>
      its DNS and TLS kinds)       <strerror>
    other ClientError, OSError   request failed: <reason>     token request failed: <class>

    raised in the block          sink_errors: SinkError
    ---------------------------  ----------------------------------------------------------------
    TimeoutError                 timeout after 10s sending to sink 'x'                   retryable
    InvalidURL                   invalid URL for sink 'x'                                permanent
    other ClientError, OSError   connection failed sending to sink 'x': <class> (<errno>) retryable

The translated error is raised ``from None``, unlike httpx's ``from exc``: aiohttp's texts can
hold the URL, which is a secret for most sinks (and may carry credentials for a source), so the
original exception must not travel on as the cause or context. Messages name the class and
errno (:func:`describe`) or the socket's reason (:func:`reason`) instead.

Beside the translation: the ``User-Agent`` we send, ``Retry-After`` parsing
(:func:`parse_retry_after`), and the one-line excerpt of an error body or a server's reply
(:func:`excerpt`), which the SMTP sink uses as well.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp

from monitor import __version__
from monitor.errors import AuthError, FetchError, MonitorError, SinkError
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


def fetch_errors(*, timeout: float) -> AbstractContextManager[None]:
    """The balances GET's failures as ``FetchError``; ``timeout`` (seconds) for the message."""
    return map_exceptions(
        [
            when(TimeoutError, then=lambda _: FetchError(f"timed out after {timeout:g}s")),
            when(
                aiohttp.ClientConnectorError,
                then=lambda exc: FetchError(
                    f"cannot connect to {exc.host}:{exc.port}: {reason(exc)}"
                ),
            ),
            when(
                aiohttp.ClientError,
                OSError,
                then=lambda exc: FetchError(f"request failed: {reason(exc)}"),
            ),
        ]
    )


def token_errors(*, timeout: float) -> AbstractContextManager[None]:
    """The OAuth2 token request's failures as ``AuthError``, naming only the class."""
    return map_exceptions(
        [
            when(
                TimeoutError,
                then=lambda _: AuthError(f"token request timed out after {timeout:g}s"),
            ),
            when(
                aiohttp.ClientError,
                OSError,
                then=lambda exc: AuthError(f"token request failed: {type(exc).__name__}"),
            ),
        ]
    )


def sink_errors(sink: str, *, timeout: float) -> AbstractContextManager[None]:
    """A sink's POST failures as ``SinkError``: timeouts and connection errors are retryable,
    an invalid URL is not. The message names the sink, never the URL."""
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
                aiohttp.ClientError,
                OSError,
                then=lambda exc: SinkError(
                    f"connection failed sending to sink '{sink}': {describe(exc)}",
                    retryable=True,
                ),
            ),
        ]
    )


# --------------------------------------------------------------------------- naming a failure


def errno_name(exc: BaseException) -> str | None:
    """``ECONNREFUSED``: the symbolic name of ``exc.errno``, if it has one we know."""
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
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError):
        if os_error.errno is not None and errno_name(os_error) is not None:
            return os.strerror(os_error.errno)
        if os_error.strerror:
            return os_error.strerror
    return errno_name(exc) or type(exc).__name__


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
