"""The Telegram Bot API calls of the bot: ``POST {api_url}/bot<token>/<method>`` with JSON.

Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``; the second, a connection failure or a timeout is a
:class:`~monitor.errors.BotError` that names the bot and the method, never the URL (the bot
token is in its path, and is cut out of quoted descriptions too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from monitor import encoding, http
from monitor.errors import BotError
from monitor.text import clip

__all__ = ["CALL_TIMEOUT", "CLIENT_MARGIN", "TOAST_LIMIT", "BotApi"]

#: Seconds the HTTP client waits for an answer beyond the long poll's own wait.
CLIENT_MARGIN = 10.0
#: Seconds one ``getMe``, ``sendMessage`` or ``answerCallbackQuery`` may take.
CALL_TIMEOUT = 10.0
#: The longest text of ``answerCallbackQuery`` (Telegram shows 200 characters).
TOAST_LIMIT = 200


class BotApi:
    """The Bot API calls of one bot: ``POST {api_url}/bot<token>/<method>`` with JSON."""

    def __init__(
        self, name: str, *, session: aiohttp.ClientSession, token: SecretStr, api_url: str
    ) -> None:
        self.name = name
        self._session = session
        secret = token.get_secret_value()
        self._base = f"{api_url.rstrip('/')}/bot{quote(secret, safe=':')}"
        self._secrets = (secret, quote(secret, safe=":"), quote(secret, safe=""))

    async def call(self, method: str, payload: Mapping[str, Any], *, timeout: float) -> Any:  # noqa: ASYNC109 - aiohttp's per-request ClientTimeout
        """The ``result`` of an ``{"ok": true}`` answer; :class:`BotError` otherwise."""
        with http.bot_errors(self.name, timeout=timeout):
            async with self._session.post(
                f"{self._base}/{method}",
                data=encoding.dumps(payload),
                headers={"Content-Type": "application/json", "User-Agent": http.USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await response.read()
        try:
            answer = encoding.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        code = status
        description = ""
        retry_after: float | None = None
        if isinstance(answer, dict):
            if isinstance(answer.get("error_code"), int):
                code = answer["error_code"]
            description = str(answer.get("description") or "")
            parameters = answer.get("parameters")
            if isinstance(parameters, dict) and isinstance(
                parameters.get("retry_after"), int | float
            ):
                retry_after = float(parameters["retry_after"])
        else:
            description = body.decode("utf-8", errors="replace")
        if retry_after is None and code == 429:
            retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
        excerpt = http.excerpt(description, secrets=self._secrets)
        why = f": {excerpt}" if excerpt else ""
        raise BotError(
            f"bot '{self.name}': {method} answered {code}{why}",
            status=code,
            retry_after=retry_after,
        )

    async def get_me(self) -> str | None:
        """The bot's ``@username`` (without the ``@``), for ``/command@ThisBot``."""
        result = await self.call("getMe", {}, timeout=CALL_TIMEOUT)
        name = result.get("username") if isinstance(result, dict) else None
        return name if isinstance(name, str) else None

    async def get_updates(self, offset: int | None, *, wait: float) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {
            "timeout": int(wait),
            "allowed_updates": ["message", "callback_query"],
        }
        if offset is not None:
            payload["offset"] = offset
        result = await self.call("getUpdates", payload, timeout=wait + CLIENT_MARGIN)
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    async def send_message(
        self, chat_id: str, text: str, *, reply_markup: Mapping[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {
            "chat_id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id,
            "text": text,
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        if reply_markup is not None:
            payload["reply_markup"] = reply_markup
        await self.call("sendMessage", payload, timeout=CALL_TIMEOUT)

    async def answer_callback(self, callback_id: str, text: str, *, alert: bool = False) -> None:
        """The toast of a button press; with ``alert``, a box the presser must close (a
        refusal is not missed)."""
        payload: dict[str, Any] = {
            "callback_query_id": callback_id,
            "text": clip(text, TOAST_LIMIT),
        }
        if alert:
            payload["show_alert"] = True
        await self.call("answerCallbackQuery", payload, timeout=CALL_TIMEOUT)
