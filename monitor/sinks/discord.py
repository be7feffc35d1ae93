"""``type = "discord"``: post notifications to a Discord channel webhook, one embed each.

The body is Discord's "execute webhook" document: a one-line ``content`` fallback, the embeds,
and ``allowed_mentions`` that parse nothing, so no summary can ping ``@everyone`` or a role::

    {"content": "🚨 [CRITICAL] FIRING low-cash: cash_to_withdraw fell to 512.25 (< 1000)",
     "embeds": [{"title": "🚨 [CRITICAL] FIRING low-cash", "description": "...",
                 "color": 14687834, "fields": [...], "timestamp": "...", "footer": {...}}],
     "allowed_mentions": {"parse": []}}

An embed's colour says the severity (green once resolved); its fields are the account, field,
previous and current values, source and labels; the footer holds the fingerprint. Discord takes
at most 10 embeds and 6000 characters of embed text a message: a batch shows up to 9 (all when
10 or fewer), shares the characters among them, and sums up the rest in a last embed
(``…and N more: X firing, Y resolved`` and one line each). Text is not escaped: Discord markdown
in account data renders, and mentions are disabled by ``allowed_mentions``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from monitor import digest_render
from monitor.config import DiscordSinkConfig
from monitor.digest import Digest
from monitor.models import Alert, Severity, Status, rfc3339
from monitor.sinks.base import ChatSink, create_url_sink, seconds_in_json
from monitor.sinks.text import (
    counts,
    explanation_lines,
    facts,
    join_lines,
    labels_text,
    more,
    pick,
    symbol,
    tally,
    title,
)
from monitor.text import MISSING, clip

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
EMBEDS_LIMIT = 10
TOTAL_LIMIT = 6000  # characters of all titles, descriptions, fields and footers of a message
#: Characters kept for the "…and N more" embed of a batch with more than 10 notifications.
OVERFLOW_CHARS = 1000
OVERFLOW_LINE_LIMIT = 200
#: An embed keeps its description at least this long (or whole) before dropping field text.
MIN_DESCRIPTION = 100
RESOLVED_COLOR = 0x2EB67D
COLORS: Mapping[Severity, int] = {
    Severity.CRITICAL: 0xE01E5A,
    Severity.WARNING: 0xECB22E,
    Severity.INFO: 0x439FE0,
}
_SEVERITY_ORDER = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)


class DiscordSink(ChatSink):
    """Delivers notifications to one Discord webhook URL."""

    #: Discord: 30 messages a minute per channel (webhooks also 5 per 2 s).
    MIN_INTERVAL: ClassVar[float] = 2.0

    def document(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        return message(alerts)

    def digest_document(self, digest: Digest) -> dict[str, Any]:
        return digest_render.discord_message(digest)

    def _retry_after_in_body(self, body: str) -> float | None:
        return retry_after(body)


def message(alerts: Sequence[Alert]) -> dict[str, Any]:
    """The execute-webhook JSON document for one or more alerts, within Discord's limits."""
    if len(alerts) <= EMBEDS_LIMIT:
        shown, rest = alerts, alerts[len(alerts) :]
    else:
        shown, rest = alerts[: EMBEDS_LIMIT - 1], alerts[EMBEDS_LIMIT - 1 :]
    budget = TOTAL_LIMIT - (OVERFLOW_CHARS if rest else 0)
    embeds: list[dict[str, Any]] = []
    for index, alert in enumerate(shown):
        # An even share of what is left, so a short embed leaves more room to the next ones.
        share = (budget - sum(map(embed_chars, embeds))) // (len(shown) - index)
        embeds.append(embed(alert, share))
    if rest:
        embeds.append(_overflow(rest, TOTAL_LIMIT - sum(map(embed_chars, embeds))))
    content = _line(alerts[0]) if len(alerts) == 1 else tally(alerts)
    return {
        "content": clip(content, CONTENT_LIMIT),
        "embeds": embeds,
        "allowed_mentions": {"parse": []},
    }


def embed(alert: Alert, budget: int = TOTAL_LIMIT) -> dict[str, Any]:
    """One alert's embed in at most ``budget`` characters: field values are shortened (in the
    end dropped) so that the description fits whole (up to 4096), or else keeps at least
    :data:`MIN_DESCRIPTION` characters."""
    heading = clip(f"{symbol(alert)} {title(alert)}", TITLE_LIMIT)
    footer = clip(f"fingerprint {alert.fingerprint}", FOOTER_LIMIT)
    text = f"{alert.summary}\n\n{alert.description}" if alert.description else alert.summary
    if why := explanation_lines(alert):
        text += "\n\n" + "\n".join(why)
    document: dict[str, Any] = {
        "title": heading,
        "color": _color(alert),
        "timestamp": rfc3339(alert.observed_at),
    }
    for wanted in (min(len(text), DESCRIPTION_LIMIT), min(len(text), MIN_DESCRIPTION)):
        for value_limit in (FIELD_VALUE_LIMIT, 256, 64, 0):
            fields = _fields(alert, value_limit) if value_limit else []
            room = budget - len(heading) - len(footer) - _fields_chars(fields)
            if room >= wanted:
                if text:
                    document["description"] = clip(text, min(room, DESCRIPTION_LIMIT))
                if fields:
                    document["fields"] = fields
                document["footer"] = {"text": footer}
                return document
    document["title"] = clip(heading, max(budget, 1))
    return document


def embed_chars(document: Mapping[str, Any]) -> int:
    """The characters of an embed that count towards Discord's 6000 a message."""
    fields = document.get("fields", [])
    return (
        len(document.get("title", ""))
        + len(document.get("description", ""))
        + _fields_chars(fields)
        + len(document.get("footer", {}).get("text", ""))
        + len(document.get("author", {}).get("name", ""))
    )


def retry_after(body: str) -> float | None:
    """The seconds of a rate-limit answer's ``{"retry_after": 1.5, ...}``, if it has them."""
    return seconds_in_json(body, "retry_after")


def _fields(alert: Alert, value_limit: int) -> list[dict[str, Any]]:
    fields = [
        {"name": name, "value": clip(value or MISSING, value_limit), "inline": True}
        for name, value in facts(alert).items()
    ]
    if alert.labels:
        value = clip(labels_text(alert.labels), value_limit)
        fields.append({"name": "Labels", "value": value, "inline": False})
    return fields


def _fields_chars(fields: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(field["name"]) + len(field["value"]) for field in fields)


def _overflow(alerts: Sequence[Alert], budget: int) -> dict[str, Any]:
    """The last embed of a long batch: how many more, and one clipped line each."""
    heading = clip(more(alerts), TITLE_LIMIT)
    lines = [clip(_line(alert), OVERFLOW_LINE_LIMIT) for alert in alerts]
    room = min(DESCRIPTION_LIMIT, budget - len(heading))
    firing = {a.severity for a in alerts if a.status is Status.FIRING}
    worst = next((s for s in _SEVERITY_ORDER if s in firing), None)
    return {
        "title": heading,
        "description": join_lines(
            lines, room, rest=lambda n: f"…and {n} more: {counts(alerts[-n:])}"
        ),
        "color": COLORS[worst] if worst is not None else RESOLVED_COLOR,
    }


def _line(alert: Alert) -> str:
    return f"{symbol(alert)} {title(alert)}: {alert.summary}"


def _color(alert: Alert) -> int:
    return pick(alert, COLORS, RESOLVED_COLOR)


def create(config: DiscordSinkConfig, *, index: int, session: aiohttp.ClientSession) -> DiscordSink:
    """Build the sink, resolving its URL now (``ConfigError`` names the key)."""
    return create_url_sink(DiscordSink, config, index=index, session=session)
