"""``type = "telegram"``: a Telegram bot posts notifications to one chat (``sendMessage``).

The request is ``POST {api_url}/bot<token>/sendMessage`` with ``{"chat_id": ..., "text": ...,
"parse_mode": "HTML", "disable_web_page_preview": true}``. One notification is a bold headline
(emoji, severity, status, rule), the summary, the rule's description in italics, and a line per
detail: account, field, previous and current values, source, labels, observed time and
fingerprint. Several (``group_window``) are one message: a ``3 alerts: 2 firing, 1 resolved``
headline and one line each. User text is HTML-escaped (``&``, ``<``, ``>``) and the text is cut to
Telegram's 4096 characters at whole lines (``…and N more``). With ``commands = true`` the
message of one firing alert carries the inline buttons "Acknowledge" and "Silence 1h"
(an event: "Silence 1h" only; :func:`monitor.bot_commands.buttons`), which
:mod:`monitor.telegram_bot` answers.

The bot token sits in the URL path: it is redacted from error messages like the URL, and a
``429`` answer's ``{"parameters": {"retry_after": N}}`` becomes the error's ``retry_after``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from monitor import digest_render
from monitor.bot_commands import buttons
from monitor.config import TelegramSinkConfig, resolve_secret
from monitor.digest import Digest
from monitor.models import Alert, Notification, Status, rfc3339
from monitor.sinks.base import ChatSink, seconds_in_json
from monitor.sinks.text import (
    escape,
    explanation_lines,
    facts,
    join_lines,
    labels_text,
    more,
    symbol,
    tally,
    title,
)
from monitor.text import clip

DEFAULT_API_URL = "https://api.telegram.org"
TEXT_LIMIT = 4096
TITLE_LIMIT = 256
SUMMARY_LIMIT = 1000
DESCRIPTION_LIMIT = 1500
VALUE_LIMIT = 200
#: A batch line's summary is cut to this many characters.
LINE_SUMMARY_LIMIT = 300
_NUMERIC_CHAT = re.compile(r"-?\d+")


class TelegramSink(ChatSink):
    """Delivers notifications to one Telegram chat through one bot."""

    #: Telegram: one message a second per chat, 20 a minute in a group.
    MIN_INTERVAL: ClassVar[float] = 3.0

    def __init__(
        self,
        name: str,
        *,
        session: aiohttp.ClientSession,
        token: SecretStr,
        chat_id: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        buttons: bool = False,
    ) -> None:
        quoted = quote(token.get_secret_value(), safe=":")
        super().__init__(
            name,
            session=session,
            url=SecretStr(f"{api_url.rstrip('/')}/bot{quoted}/sendMessage"),
            timeout=timeout,
            redact=(token, SecretStr(quoted), SecretStr(quote(token.get_secret_value(), safe=""))),
        )
        self._chat_id: int | str = int(chat_id) if _NUMERIC_CHAT.fullmatch(chat_id) else chat_id
        #: ``commands = true``: a firing alert's message carries "Acknowledge" and "Silence 1h".
        self.buttons = buttons

    def document(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        return message(alerts, self._chat_id)

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        """As every chat sink; with :attr:`buttons`, a message of one firing alert carries
        the inline buttons (a grouped message has none: each alert would need its own pair)."""
        if not notifications:
            return
        document = self.document([n.alert for n in notifications])
        if self.buttons and len(notifications) == 1:
            markup = buttons_for(notifications[0])
            if markup is not None:
                document["reply_markup"] = markup
        await self._post_json(document)

    def digest_document(self, digest: Digest) -> dict[str, Any]:
        return digest_render.telegram_message(digest, self._chat_id)

    def _retry_after_in_body(self, body: str) -> float | None:
        return retry_after(body)


def message(alerts: Sequence[Alert], chat_id: int | str) -> dict[str, Any]:
    """The ``sendMessage`` JSON document for one or more alerts."""
    return {
        "chat_id": chat_id,
        "text": text(alerts),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def text(alerts: Sequence[Alert]) -> str:
    """The message text (Telegram HTML), at most 4096 characters, cut at whole lines."""
    if len(alerts) == 1:
        return join_lines(_single(alerts[0]), TEXT_LIMIT, rest=lambda n: "…")
    lines = [f"<b>{escape(tally(alerts))}</b>", *map(_line, alerts)]
    return join_lines(lines, TEXT_LIMIT, rest=lambda n: escape(more(alerts[-n:])))


def buttons_for(notification: Notification) -> dict[str, Any] | None:
    """The inline keyboard under a firing alert (its ``callback_data`` names the notification:
    :mod:`monitor.telegram_bot` acknowledges or silences its alert); none once resolved, and
    no "Acknowledge" under an event."""
    if notification.alert.status is not Status.FIRING:
        return None
    return buttons(notification.id, event=notification.alert.kind == "event")


def retry_after(body: str) -> float | None:
    """The seconds of ``{"ok": false, "parameters": {"retry_after": N}}``, if the body has them."""
    return seconds_in_json(body, "parameters", "retry_after")


def _single(alert: Alert) -> list[str]:
    """Whole HTML fragments, one per line, each with its tags closed."""
    lines = [
        f"{symbol(alert)} <b>{_html(title(alert), TITLE_LIMIT)}</b>",
        _html(alert.summary, SUMMARY_LIMIT),
    ]
    if alert.description:
        lines.append(f"<i>{_html(alert.description, DESCRIPTION_LIMIT)}</i>")
    lines.extend(_html(line, VALUE_LIMIT) for line in explanation_lines(alert))
    rows = facts(alert)
    if alert.labels:
        rows["Labels"] = labels_text(alert.labels)
    rows["Observed"] = rfc3339(alert.observed_at)
    lines.append("")
    lines.extend(f"<b>{key}:</b> {_html(value, VALUE_LIMIT)}" for key, value in rows.items())
    lines.append(f"<b>Fingerprint:</b> <code>{_html(alert.fingerprint, VALUE_LIMIT)}</code>")
    return lines


def _line(alert: Alert) -> str:
    account = f" · <code>{_html(alert.account_number, 64)}</code>" if alert.account_number else ""
    summary = _html(alert.summary, LINE_SUMMARY_LIMIT)
    return f"{symbol(alert)} <b>{_html(title(alert), TITLE_LIMIT)}</b>{account}: {summary}"


def _html(value: str, limit: int) -> str:
    """Escaped for Telegram HTML and cut to ``limit`` characters (not inside an entity)."""
    return clip(escape(value), limit)


def create(
    config: TelegramSinkConfig, *, index: int, session: aiohttp.ClientSession
) -> TelegramSink:
    """Build the sink, resolving its bot token now (``ConfigError`` names the key)."""
    return TelegramSink(
        config.name,
        session=session,
        token=resolve_secret(config.required_ref(index, "bot_token")),
        chat_id=config.chat_id,
        api_url=config.api_url,
        timeout=config.timeout.total_seconds(),
        buttons=config.commands,
    )
