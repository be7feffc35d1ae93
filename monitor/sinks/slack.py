"""``type = "slack"``: post notifications to a Slack incoming webhook.

One notification is a message with a plain ``text`` fallback (notifications, screen readers), a
Block Kit section with the same line, the rule's description below it, and a coloured attachment
with the details::

    :warning: [WARNING] FIRING low-cash: 12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)
    :white_check_mark: RESOLVED [WARNING] low-cash: 12345678@vision: cash_to_withdraw back to 1500

Several (``group_window``) are one message: a ``3 alerts: 2 firing, 1 resolved`` headline and a
section per notification, at most :data:`BATCH_SECTIONS` of them, then ``…and N more``.

User text is escaped (``&``, ``<``, ``>``) as Slack requires; money keeps its exact digits. The
plain-text helpers (:func:`~monitor.sinks.text.escape`, :func:`~monitor.text.value_text`, ...)
live in :mod:`monitor.sinks.text` and :mod:`monitor.text`, shared with the other sinks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from monitor import digest_render
from monitor.config import SlackSinkConfig
from monitor.digest import Digest
from monitor.models import Alert, Severity, rfc3339
from monitor.sinks.base import ChatSink, create_url_sink
from monitor.sinks.text import (
    SYMBOLS,
    details,
    escape,
    explanation_lines,
    labels_text,
    more,
    pick,
    tally,
    title,
)
from monitor.text import MISSING, clip, value_text

__all__ = [
    "BATCH_SECTIONS",
    "BATCH_SECTION_LIMIT",
    "COLORS",
    "EMOJI",
    "FIELD_LIMIT",
    "RESOLVED_COLOR",
    "RESOLVED_EMOJI",
    "SECTION_LIMIT",
    "SYMBOLS",  # from monitor.sinks.text, as before
    "SlackSink",
    "batch_message",
    "create",
    "escape",  # from monitor.sinks.text, as before
    "message",
]

SECTION_LIMIT = 3000  # Block Kit text object limits
FIELD_LIMIT = 2000
#: Slack allows 50 blocks a message: a headline, this many notifications, and "…and N more".
BATCH_SECTIONS = 45
BATCH_SECTION_LIMIT = 1000
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
RESOLVED_EMOJI = ":white_check_mark:"


class SlackSink(ChatSink):
    """Delivers notifications to one Slack incoming-webhook URL."""

    #: Slack: one message per second per incoming webhook.
    MIN_INTERVAL: ClassVar[float] = 1.0

    def document(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        return batch_message(alerts)

    def digest_document(self, digest: Digest) -> dict[str, Any]:
        return digest_render.slack_message(digest)


def message(alert: Alert) -> dict[str, Any]:
    """The incoming-webhook JSON document for one alert."""
    headline = clip(_headline(alert), SECTION_LIMIT)
    color = pick(alert, COLORS, RESOLVED_COLOR)
    fields = {
        "Rule": alert.rule,
        "Severity": alert.severity.value,
        "Account": alert.account_number or MISSING,
        "Field": alert.field or MISSING,
        "Previous": value_text(alert.previous),
        "Current": value_text(alert.current),
    }
    if alert.labels:
        fields["Labels"] = labels_text(alert.labels)
    blocks = [_section(headline)]
    if alert.description:
        blocks.append(_section(clip(escape(alert.description), SECTION_LIMIT)))
    if why := explanation_lines(alert):
        blocks.append(_section(clip(escape("\n".join(why)), SECTION_LIMIT)))
    context = f"observed {rfc3339(alert.observed_at)} · fingerprint `{escape(alert.fingerprint)}`"
    return {
        "text": headline,
        "blocks": blocks,
        "attachments": [
            {
                "color": color,
                "blocks": [
                    {
                        "type": "section",
                        "fields": [
                            _mrkdwn(clip(f"*{key}*\n{escape(value)}", FIELD_LIMIT))
                            for key, value in fields.items()
                        ],
                    },
                    {"type": "context", "elements": [_mrkdwn(context)]},
                ],
            }
        ],
    }


def batch_message(alerts: Sequence[Alert]) -> dict[str, Any]:
    """One document for several alerts (one alert: :func:`message`); at most 50 blocks."""
    if len(alerts) == 1:
        return message(alerts[0])
    headline = tally(alerts)
    shown = alerts if len(alerts) <= BATCH_SECTIONS else alerts[:BATCH_SECTIONS]
    blocks = [_section(f"*{headline}*")]
    blocks.extend(_section(clip(_batch_entry(alert), BATCH_SECTION_LIMIT)) for alert in shown)
    if len(shown) < len(alerts):
        blocks.append({"type": "context", "elements": [_mrkdwn(more(alerts[len(shown) :]))]})
    return {"text": headline, "blocks": blocks}


def _batch_entry(alert: Alert) -> str:
    lines = [_headline(alert)]
    if alert.description:
        lines.append(clip(escape(alert.description), BATCH_SECTION_LIMIT // 2))
    lines.extend(escape(line) for line in explanation_lines(alert))
    lines.append(escape(details(alert)))
    return "\n".join(lines)


def _headline(alert: Alert) -> str:
    """Emoji, status, severity, rule and the summary (which already names the account or the
    source)."""
    return f"{pick(alert, EMOJI, RESOLVED_EMOJI)} {escape(title(alert))}: {escape(alert.summary)}"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def create(config: SlackSinkConfig, *, index: int, session: aiohttp.ClientSession) -> SlackSink:
    """Build the sink, resolving its URL now (``ConfigError`` names the key)."""
    return create_url_sink(SlackSink, config, index=index, session=session)
