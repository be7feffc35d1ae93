"""Access tokens: a static bearer token, or the OAuth2 password grant with timely renewal.

Lime's tokens expire when ``expires_in`` runs out and, by the documentation, at 03:00
America/New_York whatever ``expires_in`` says. :func:`renew_at` (pure) picks the earlier of the
two, less a margin; :class:`OAuthTokens` renews then, and once more on demand after a 401.
The token lives in memory only; it is never logged, written to the state or put in a message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

import aiohttp
import structlog
from pydantic import SecretStr

from monitor import encoding, http
from monitor.config import OAuthConfig, SecretRef, resolve_secret
from monitor.errors import AuthError, ConfigError

log = structlog.get_logger("monitor.auth")

EASTERN = ZoneInfo("America/New_York")
DAILY_EXPIRY = time(3, 0)
#: Without ``expires_in`` in the answer, assume this lifetime.
DEFAULT_LIFETIME = timedelta(hours=8)
#: A longer ``expires_in`` changes nothing (the 03:00 expiry comes first) and is capped to this.
MAX_LIFETIME = timedelta(days=2)
#: A shorter positive ``expires_in`` (a microsecond) counts as this, so renewal stays after now.
MIN_LIFETIME = timedelta(seconds=1)
_MAX_SECONDS = int(MAX_LIFETIME.total_seconds())


class TokenProvider(Protocol):
    """Where a source's bearer token comes from."""

    @property
    def renewable(self) -> bool:
        """Whether :meth:`invalidate` can lead to a different token."""
        ...

    async def token(self) -> SecretStr: ...

    def invalidate(self) -> None:
        """Forget the current token (after a 401); the next :meth:`token` fetches a new one."""
        ...


class StaticToken:
    """A token from the config (``token``, ``token_env``, ``token_file``)."""

    renewable = False

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def token(self) -> SecretStr:
        return self._token

    def invalidate(self) -> None:
        return None


def next_daily_expiry(moment: datetime) -> datetime:
    """The first 03:00 America/New_York strictly after ``moment`` (DST-aware), in UTC's tz."""
    local = moment.astimezone(EASTERN)
    candidate = datetime.combine(local.date(), DAILY_EXPIRY, tzinfo=EASTERN)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), DAILY_EXPIRY, tzinfo=EASTERN)
    return candidate.astimezone(moment.tzinfo)


def renew_at(issued_at: datetime, expires_in: float | None, margin: timedelta) -> datetime:
    """When to renew a token issued at ``issued_at``: before either expiry, less ``margin``.

    Never sooner than a tenth of the token's life after issue, so a tiny ``expires_in`` or a
    large margin cannot make the monitor ask for a token on every poll. ``expires_in`` is
    capped to :data:`MAX_LIFETIME`; ``None``, zero, a negative or a NaN mean
    :data:`DEFAULT_LIFETIME`.
    """
    if expires_in and expires_in > 0:
        seconds = min(expires_in, MAX_LIFETIME.total_seconds())
        lifetime = max(timedelta(seconds=seconds), MIN_LIFETIME)
    else:
        lifetime = DEFAULT_LIFETIME
    expiry = min(issued_at + lifetime, next_daily_expiry(issued_at))
    floor = issued_at + min(lifetime, expiry - issued_at) / 10
    return expiry - min(margin, expiry - floor)  # never expiry - margin: it may underflow


class OAuthTokens:
    """OAuth2 password grant against ``token_url``; renews before expiry and after a 401."""

    renewable = True

    def __init__(
        self,
        config: OAuthConfig,
        refs: dict[str, SecretRef],
        session: aiohttp.ClientSession,
        *,
        source: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self._refs = refs
        self.session = session
        self.source = source
        self.clock = clock
        self._token: SecretStr | None = None
        self._renew_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.issued = 0  # how many tokens were issued (for tests and status)

    @property
    def renew_time(self) -> datetime | None:
        return self._renew_at

    def invalidate(self) -> None:
        self._token = None

    async def token(self) -> SecretStr:
        async with self._lock:
            now = self.clock()
            if self._token is None or self._renew_at is None or now >= self._renew_at:
                self._token, self._renew_at = await self._request(now)
            return self._token

    async def _request(self, now: datetime) -> tuple[SecretStr, datetime]:
        try:
            secrets = {n: resolve_secret(ref).get_secret_value() for n, ref in self._refs.items()}
        except ConfigError as exc:  # a secret's file or variable went away since startup
            raise AuthError(f"token request not sent: {exc}") from None
        form = {"grant_type": "password", **secrets}
        limit = self.config.timeout.total_seconds()
        with http.token_errors(timeout=limit):
            # Never follow a redirect: a 307 or 308 would re-send the form, secrets and all,
            # to wherever the Location points.
            async with self.session.post(
                self.config.token_url,
                data=form,
                headers={"Accept": "application/json", "User-Agent": http.USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
            ) as response:
                body = await response.read()
                status = response.status
                location = response.headers.get("Location")
        if 300 <= status < 400:
            where = http.origin_of(location, base=self.config.token_url) or "an unnamed place"
            raise AuthError(
                f"token request redirected: HTTP {status} to {where}; "
                "not followed (credentials are never re-sent)",
                status=status,
            )
        if status != 200:
            raise AuthError(_refusal(status, body, list(secrets.values())), status=status)
        token, seconds = read_token_answer(body)
        renew = renew_at(now, seconds, self.config.renew_before)
        self.issued += 1
        log.info(
            "token_issued",
            source=self.source,
            expires_in=seconds,
            renew_at=renew.isoformat(),
        )
        return token, renew


def token_answer(data: object) -> tuple[SecretStr, float | None]:
    """The access token and its ``expires_in`` (seconds; ``None`` when unknown) from a token
    endpoint's decoded JSON answer. ``AuthError`` says what is wrong with an unusable one.

    The token must be something an ``Authorization`` header can carry: visible ASCII, no
    spaces or control characters (RFC 6750's token characters are a subset).
    """
    if not isinstance(data, dict):
        raise AuthError(f"{UNUSABLE}: the answer is not a JSON object")
    if "access_token" not in data:
        raise AuthError(f"{UNUSABLE}: the answer has no access_token")
    token = data["access_token"]
    if not isinstance(token, str) or not token:
        raise AuthError(f"{UNUSABLE}: access_token is not a non-empty string")
    if not _TOKEN_CHARS.fullmatch(token):
        raise AuthError(
            f"{UNUSABLE}: access_token has spaces, control or non-ASCII characters, "
            "which a header cannot carry"
        )
    return SecretStr(token), expires_in_seconds(data.get("expires_in"))


UNUSABLE = "token endpoint answered without a usable access_token"
_TOKEN_CHARS = re.compile(r"[!-~]+")


def read_token_answer(body: bytes) -> tuple[SecretStr, float | None]:
    """:func:`token_answer` of a token endpoint's 200 answer as it came (bytes)."""
    data = _decoded(body)
    if data is None:
        raise AuthError(f"{UNUSABLE}: the body is not JSON")
    return token_answer(data)


def expires_in_seconds(value: object) -> float | None:
    """A token answer's ``expires_in`` (any JSON value) as seconds for :func:`renew_at`: a
    number or a string of ASCII digits, cut to ``[0, MAX_LIFETIME]`` before it becomes a float
    (``10**400`` is no float); anything else is unknown (``None``)."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):  # "²".isdigit(), yet no number
            return None
        value = Decimal(text)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    if isinstance(value, Decimal) and value.is_nan():
        return None
    return float(min(max(value, 0), _MAX_SECONDS))


def _decoded(body: bytes) -> object | None:
    """The JSON value of ``body``; ``None`` if it is not JSON (or nests too deep to read)."""
    try:
        return encoding.loads(body) if body else None
    except (ValueError, RecursionError):
        return None


def _refusal(status: int, body: bytes, secrets: list[str]) -> str:
    """``token request refused: HTTP 400 invalid_grant (...)``, with any echoed secret cut out."""
    detail = ""
    data = _decoded(body)
    if isinstance(data, dict):
        # Text and numbers only: the repr of a list or object could hold a secret in an
        # escaped form that the cut below would not find.
        parts = [
            str(value)
            for key in ("error", "error_description", "message")
            if isinstance(value := data.get(key), str | int | Decimal) and value != ""
        ]
        detail = ": ".join(parts)
    elif body:
        detail = body.decode("utf-8", errors="replace")
    # A secret of one or two characters would garble the text where it is cut out.
    detail = http.excerpt(detail, secrets=[s for s in secrets if len(s) > 2], mask="<redacted>")
    message = f"token request refused: HTTP {status}"
    return f"{message} ({detail})" if detail else message
