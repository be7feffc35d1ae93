"""Who may use the ``[http]`` server: ``[http] auth_token`` as a bearer token or basic auth.

With a token configured, every route but ``/healthz`` asks for it: ``Authorization: Bearer
<token>`` for tools, or HTTP basic auth with the token as the password (any user name) so that a
browser prompts for it. Without one, reading is open (bind ``listen`` to 127.0.0.1) and every
route that changes something answers 403: a write API is never open by accident. Tokens are
compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict
from pydantic import SecretStr

from monitor import encoding

#: Routes anyone may read: a liveness probe carries no data.
OPEN_PATHS = frozenset({"/healthz"})
#: Methods that change nothing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_token(authorization: str | None) -> str | None:
    """The token an ``Authorization`` header carries (bearer, or basic auth's password)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def token_matches(authorization: str | None, token: SecretStr) -> bool:
    presented = presented_token(authorization)
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), token.get_secret_value().encode())


def auth_middleware(token: SecretStr | None) -> Middleware:
    """The middleware that enforces the module's rules for ``token`` (``None``: none set)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if token is None:
            if request.method not in SAFE_METHODS:
                return _error(
                    403, "this route changes state: set [http] auth_token_env or auth_token_file"
                )
            return await handler(request)
        if not token_matches(request.headers.get("Authorization"), token):
            return _error(
                401,
                "a token is required: Authorization: Bearer <token>",
                CIMultiDict(
                    [
                        ("WWW-Authenticate", 'Bearer realm="balance-monitor"'),
                        ("WWW-Authenticate", 'Basic realm="balance-monitor", charset="UTF-8"'),
                    ]
                ),
            )
        return await handler(request)

    return middleware


def _error(status: int, message: str, headers: CIMultiDict[str] | None = None) -> web.Response:
    return web.Response(
        text=encoding.dumps({"error": message}),
        status=status,
        content_type="application/json",
        headers=headers,
    )
