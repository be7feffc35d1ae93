"""``type = "slack"``: post each notification to a Slack incoming webhook.

The message has a plain ``text`` fallback (notifications, screen readers), a Block Kit section
with the same line, and a coloured attachment with the details::

    :warning: [WARNING] FIRING low-cash: 12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)
    :white_check_mark: RESOLVED [WARNING] low-cash: 12345678@vision: cash_to_withdraw back to 1500

User text is escaped (``&``, ``<``, ``>``) as Slack requires; money keeps its exact digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp
from pydantic import SecretStr

from monitor import encoding
from monitor.config import SlackSinkConfig, resolve_secret
from monitor.models import DEFAULT_SOURCE, Alert, JSONValue, Notification, Severity, Status, rfc3339
from monitor.sinks import http
from monitor.sinks.webhook import USER_AGENT

MISSING = "—"
SECTION_LIMIT = 3000  # Block Kit text object limits
FIELD_LIMIT = 2000
RESOLVED_COLOR = "good"
COLORS: Mapping[Severity, str] = {
    Severity.CRITICAL: "danger",
    Severity.WARNING: "warning",
    Severity.INFO: "#439FE0",
}
EMOJI: Mapping[Severity, str] = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")


class SlackSink:
    """Delivers notifications to one Slack incoming-webhook URL."""

    def __init__(
        self, name: str, *, session: aiohttp.ClientSession, url: SecretStr, timeout: float = 10.0
    ) -> None:
        self._name = name
        self._session = session
        self._url = url
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"SlackSink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        body = encoding.dumps(message(notification.alert)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        await http.post(
            self._session,
            self._url.get_secret_value(),
            body,
            headers=headers,
            timeout=self._timeout,
            sink=self._name,
        )

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""


def message(alert: Alert) -> dict[str, Any]:
    """The incoming-webhook JSON document for one alert."""
    headline = _clip(_headline(alert), SECTION_LIMIT)
    color = RESOLVED_COLOR if alert.status is Status.RESOLVED else COLORS[alert.severity]
    fields = {
        "Rule": alert.rule,
        "Severity": alert.severity.value,
        "Account": alert.account_number or MISSING,
        "Field": alert.field or MISSING,
        "Previous": render(alert.previous),
        "Current": render(alert.current),
    }
    context = f"observed {rfc3339(alert.observed_at)} · fingerprint `{escape(alert.fingerprint)}`"
    return {
        "text": headline,
        "blocks": [_section(headline)],
        "attachments": [
            {
                "color": color,
                "blocks": [
                    {
                        "type": "section",
                        "fields": [
                            _mrkdwn(_clip(f"*{key}*\n{escape(value)}", FIELD_LIMIT))
                            for key, value in fields.items()
                        ],
                    },
                    {"type": "context", "elements": [_mrkdwn(context)]},
                ],
            }
        ],
    }


def escape(text: str) -> str:
    """Slack's control characters as entities: ``&`` ``<`` ``>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(value: JSONValue) -> str:
    """A field value for people: exact decimal digits, ``—`` for none, JSON for records."""
    if value is None:
        return MISSING
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return encoding.dumps(value)
    return str(value)


def _headline(alert: Alert) -> str:
    """Status, rule and the summary (which already names the account or the source)."""
    rule = alert.rule if alert.source == DEFAULT_SOURCE else f"{alert.rule} ({alert.source})"
    severity = alert.severity.value.upper()
    if alert.status is Status.RESOLVED:
        prefix = f":white_check_mark: RESOLVED [{severity}]"
    else:
        prefix = f"{EMOJI[alert.severity]} [{severity}] FIRING"
    return f"{prefix} {escape(rule)}: {escape(alert.summary)}"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def create(config: SlackSinkConfig, *, index: int, session: aiohttp.ClientSession) -> SlackSink:
    """Build the sink, resolving its URL now (``ConfigError`` names the key)."""
    return SlackSink(
        config.name,
        session=session,
        url=resolve_secret(config.url_ref(index)),
        timeout=config.timeout.total_seconds(),
    )
