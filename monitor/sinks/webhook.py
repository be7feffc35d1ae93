"""``type = "webhook"``: POST each notification's JSON document, optionally HMAC-signed.

The body is exactly :meth:`Notification.payload` as compact JSON (money as exact numbers); a
digest's is :func:`monitor.digest_render.webhook_document` (``"type": "digest"``). With a
secret, ``X-Balance-Monitor-Signature: sha256=<hex>`` is the HMAC-SHA256 of the raw body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDict
from pydantic import SecretStr

from monitor import digest_render, encoding
from monitor.config import WebhookSinkConfig, resolve_secret
from monitor.digest import Digest
from monitor.models import Notification
from monitor.sinks.base import ID_HEADER, JSON_HEADERS, HttpSink

SIGNATURE_HEADER = "X-Balance-Monitor-Signature"


class WebhookSink(HttpSink):
    """Delivers notifications as signed JSON POSTs to one URL."""

    def __init__(
        self,
        name: str,
        *,
        session: aiohttp.ClientSession,
        url: SecretStr,
        secret: SecretStr | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, session=session, url=url, timeout=timeout)
        self._secret = secret
        self._headers = dict(headers or {})

    async def send(self, notification: Notification) -> None:
        await self._send_document(notification.payload(), notification.id)

    async def send_digest(self, digest: Digest) -> None:
        """The digest's own document (``"type": "digest"``), signed like a notification."""
        await self._send_document(digest_render.webhook_document(digest), digest.id)

    async def _send_document(self, document: object, ident: str) -> None:
        body = encoding.dumps(document).encode()
        headers = CIMultiDict(JSON_HEADERS)
        headers.update(self._headers)
        headers[ID_HEADER] = ident
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret.get_secret_value())
        await self._post(body, headers)


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body>``, the signature header's value."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def create(config: WebhookSinkConfig, *, index: int, session: aiohttp.ClientSession) -> WebhookSink:
    """Build the sink, resolving its URL and secret now (``ConfigError`` names the key)."""
    secret_ref = config.secret_ref(index)
    return WebhookSink(
        config.name,
        session=session,
        url=resolve_secret(config.url_ref(index)),
        secret=resolve_secret(secret_ref) if secret_ref is not None else None,
        headers={key: value.get_secret_value() for key, value in config.headers.items()},
        timeout=config.timeout.total_seconds(),
    )
