"""Fetching the balances: one GET with a bearer token; failures are ``FetchError``.

The token is sent in a header and never appears in a message; a failed request says what failed
(status and the upstream's own ``{"code", "message"}``, a timeout, a refused connection).
aiohttp's exceptions are translated by :func:`monitor.http.fetch_errors`.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import SecretStr

from monitor import encoding, http
from monitor.auth import StaticToken, TokenProvider
from monitor.config import SourceBase, public_url
from monitor.errors import FetchError

log = structlog.get_logger("monitor.source")

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

    async def journal(self, account: str, *, start: date, end: date, limit: int) -> bytes:
        """The account's transactions journal, ``GET <url>/{account}/transactions`` with
        ``start_date``, ``end_date``, ``limit`` and ``skip=0``: the body of a 2xx answer, else
        ``FetchError`` (no token renewal here: a poll does that)."""
        token = await self.tokens.token()
        url = f"{self.config.url.rstrip('/')}/{quote(account, safe='')}/transactions"
        params = {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "limit": str(limit),
            "skip": "0",
        }
        headers = _headers(token)
        with http.fetch_errors(timeout=self.config.timeout.total_seconds()):
            async with self.session.get(
                url, params=params, headers=headers, timeout=self._timeout
            ) as response:
                body = await self._read(response)
                status = response.status
        if not 200 <= status < 300:
            raise FetchError(_status_message(status, body, secret=token.get_secret_value()))
        return body

    async def _get(self, token: SecretStr) -> bytes:
        headers = _headers(token)
        with http.fetch_errors(timeout=self.config.timeout.total_seconds()):
            async with self.session.get(
                self.config.url, headers=headers, timeout=self._timeout
            ) as response:
                body = await self._read(response)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        if not 200 <= status < 300:
            raise FetchError(
                _status_message(status, body, secret=token.get_secret_value()),
                status=status,
                retry_after=http.parse_retry_after(retry_after),
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


def _status_message(status: int, body: bytes, *, secret: str = "") -> str:
    """``HTTP 401 (api_error: token incorrect or revoked)``: with upstream's error, if any.

    An upstream that echoes the token back does not get it into the message: ``secret`` is cut
    out before the excerpt is taken.
    """
    message = f"HTTP {status}"
    detail = ""
    try:
        data = encoding.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
        data = None
    if isinstance(data, dict) and ("code" in data or "message" in data):
        parts = [str(data[k]) for k in ("code", "message") if data.get(k)]
        detail = ": ".join(parts)
    elif body:
        detail = body.decode("utf-8", errors="replace")
    detail = http.excerpt(detail, secrets=[secret], mask="<token>")
    if detail:
        message += f" ({detail})"
    elif status == 401:
        message += " (token incorrect or revoked)"
    return message


def _headers(token: SecretStr) -> dict[str, str]:
    """The headers of a GET to the API: the bearer token, JSON, our User-Agent."""
    return {
        "Authorization": f"Bearer {token.get_secret_value()}",
        "Accept": "application/json",
        "User-Agent": http.USER_AGENT,
    }
