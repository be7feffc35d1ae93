"""One HTTP POST for the webhook and Slack sinks, with aiohttp errors translated to ``SinkError``.

This is the only place sinks touch aiohttp exceptions. Messages name the sink, never the URL:
webhook URLs are secrets, and aiohttp's exception texts can contain the host or the whole URL,
so they are summarised by class name (and errno) and not chained.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp

from monitor.errors import SinkError

EXCERPT_CHARS = 200
RETRYABLE_STATUSES = frozenset({408, 429})


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - it is aiohttp's per-request ClientTimeout
    sink: str,
) -> None:
    """POST ``body``; return on 2xx, raise ``SinkError`` otherwise. Redirects are not followed."""
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                # Delivered: drain the body so the connection is reused; a failure here is no
                # reason to deliver twice.
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await response.read()
                return
            text = (await response.read()).decode("utf-8", errors="replace")
            status, retry_header = response.status, response.headers.get("Retry-After")
    except TimeoutError:
        raise SinkError(
            f"timeout after {timeout:g}s sending to sink '{sink}'", retryable=True
        ) from None
    except aiohttp.InvalidURL:
        raise SinkError(f"invalid URL for sink '{sink}'", retryable=False) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise SinkError(
            f"connection failed sending to sink '{sink}': {_describe(exc)}", retryable=True
        ) from None
    raise status_error(status, sink=sink, body=_redact(text, url), retry_after=retry_header)


def status_error(
    status: int, *, sink: str, body: str = "", retry_after: str | None = None
) -> SinkError:
    """The ``SinkError`` for a non-2xx answer: 408, 429 and 5xx are retryable, the rest are not."""
    message = f"HTTP {status} from sink '{sink}'"
    if 300 <= status < 400:
        message += " (redirects are not followed)"
    if 400 <= status < 500 and (excerpt := " ".join(body.split())[:EXCERPT_CHARS]):
        message += f": {excerpt}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        return SinkError(
            message, retryable=True, status=status, retry_after=parse_retry_after(retry_after)
        )
    return SinkError(message, retryable=False, status=status)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); ``None`` if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now if now is not None else datetime.now(tz=UTC)
    return max(0.0, (when - now).total_seconds())


def _describe(exc: BaseException) -> str:
    """``ClientConnectorError (ECONNREFUSED)``: the class and errno, never the exception's text."""
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code) if isinstance(code, int) else None
    return f"{type(exc).__name__} ({name})" if name else type(exc).__name__


def _redact(text: str, url: str) -> str:
    """The response body with the URL, its path and its query cut out (receivers may echo them)."""
    parts = urlsplit(url)
    for secret in (url, f"{parts.path}?{parts.query}", parts.path, parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "<url>")
    return text
