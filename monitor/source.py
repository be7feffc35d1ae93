"""Fetching the balances: one GET with a bearer token, aiohttp errors translated to FetchError.

The token is sent in a header and never appears in a message; a failed request says what failed
(status and the upstream's own ``{"code", "message"}``, a timeout, a refused connection).
"""

from __future__ import annotations

import errno
import os

import aiohttp
import structlog
from pydantic import SecretStr

from monitor import __version__, encoding
from monitor.auth import StaticToken, TokenProvider
from monitor.config import SourceBase, public_url
from monitor.errors import FetchError
from monitor.sinks.http import parse_retry_after

log = structlog.get_logger("monitor.source")

#: The most of an error body we quote in a message.
EXCERPT_CHARS = 200
#: A balances response larger than this is refused (100,000 accounts are about 50 MiB).
MAX_BODY_BYTES = 512 * 1024 * 1024


class BalancesSource:
    """``GET <url>`` with ``Authorization: Bearer <token>`` on a shared session.

    With a renewable token (OAuth2), a 401 renews the token once and repeats the request at
    once; a second 401 is a failed poll.
    """

    def __init__(
        self,
        name: str,
        config: SourceBase,
        session: aiohttp.ClientSession,
        token: SecretStr | TokenProvider,
        *,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.name = name
        self.config = config
        self.session = session
        self.tokens: TokenProvider = StaticToken(token) if isinstance(token, SecretStr) else token
        self.max_body = max_body
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())
        self.where = public_url(config.url)

    async def fetch(self) -> bytes:
        token = await self.tokens.token()
        try:
            return await self._get(token)
        except FetchError as exc:
            if exc.status != 401 or not self.tokens.renewable:
                raise
        log.info("token_refused", source=self.name, action="renewing once")
        self.tokens.invalidate()
        return await self._get(await self.tokens.token())

    async def _get(self, token: SecretStr) -> bytes:
        headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": f"balance-monitor/{__version__}",
        }
        try:
            async with self.session.get(
                self.config.url, headers=headers, timeout=self._timeout
            ) as response:
                body = await self._read(response)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            seconds = self.config.timeout.total_seconds()
            raise FetchError(f"timed out after {seconds:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError(f"cannot connect to {exc.host}:{exc.port}: {_reason(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(f"request failed: {_reason(exc)}") from None
        if not 200 <= status < 300:
            raise FetchError(
                _status_message(status, body, secret=token.get_secret_value()),
                status=status,
                retry_after=parse_retry_after(retry_after),
            )
        return body

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused (``FetchError``) once it grows past ``max_body`` bytes."""
        declared = response.content_length
        if declared is not None and declared > self.max_body:
            raise FetchError(f"response too large: {declared} bytes (limit {self.max_body})")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                raise FetchError(f"response too large: over {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    code = os_error.errno if isinstance(os_error, OSError) else None
    if code is not None and code in errno.errorcode:
        # asyncio's strerror is "Connect call failed (addr)" whatever the cause: say which.
        return os.strerror(code)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return errno.errorcode[code]
    return type(exc).__name__


def _status_message(status: int, body: bytes, *, secret: str = "") -> str:
    """``HTTP 401 (api_error: token incorrect or revoked)``: with upstream's error, if any.

    An upstream that echoes the token back does not get it into the message: ``secret`` is cut
    out before the excerpt is taken.
    """
    message = f"HTTP {status}"
    detail = ""
    try:
        data = encoding.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and ("code" in data or "message" in data):
        parts = [str(data[k]) for k in ("code", "message") if data.get(k)]
        detail = ": ".join(parts)
    elif body:
        detail = " ".join(body.decode("utf-8", errors="replace").split())
    if secret:
        detail = detail.replace(secret, "<token>")
    if detail:
        message += f" ({detail[:EXCERPT_CHARS]})"
    elif status == 401:
        message += " (token incorrect or revoked)"
    return message
