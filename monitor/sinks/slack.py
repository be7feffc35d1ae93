"""``type = "slack"``: post notifications to a Slack incoming webhook.

One notification is a message with a plain ``text`` fallback (notifications, screen readers), a
Block Kit section with the same line, the rule's description below it, and a coloured attachment
with the details::

    :warning: [WARNING] FIRING low-cash: 12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)
    :white_check_mark: RESOLVED [WARNING] low-cash: 12345678@vision: cash_to_withdraw back to 1500

Several (``group_window``) are one message: a ``3 alerts: 2 firing, 1 resolved`` headline and a
section per notification, at most :data:`BATCH_SECTIONS` of them, then ``…and N more``.

User text is escaped (``&``, ``<``, ``>``) as Slack requires; money keeps its exact digits. The
plain-text helpers here (:func:`render`, :func:`title`, :func:`tally`, :func:`clip`,
:func:`join_lines`) are shared by the other chat sinks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import aiohttp

from monitor import encoding
from monitor.config import SlackSinkConfig, resolve_secret
from monitor.models import DEFAULT_SOURCE, Alert, JSONValue, Notification, Severity, Status, rfc3339
from monitor.sinks.http import HttpSink

MISSING = "—"
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
#: Unicode emoji for the chat sinks that do not know Slack's ``:codes:``.
SYMBOLS: Mapping[Severity, str] = {
    Severity.CRITICAL: "🚨",
    Severity.WARNING: "⚠️",
    Severity.INFO: "\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16}",
}
RESOLVED_SYMBOL = "✅"
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")


class SlackSink(HttpSink):
    """Delivers notifications to one Slack incoming-webhook URL."""

    async def send(self, notification: Notification) -> None:
        await self._post_json(message(notification.alert))

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        if notifications:
            await self._post_json(batch_message([n.alert for n in notifications]))


def message(alert: Alert) -> dict[str, Any]:
    """The incoming-webhook JSON document for one alert."""
    headline = clip(_headline(alert), SECTION_LIMIT)
    color = RESOLVED_COLOR if alert.status is Status.RESOLVED else COLORS[alert.severity]
    fields = {
        "Rule": alert.rule,
        "Severity": alert.severity.value,
        "Account": alert.account_number or MISSING,
        "Field": alert.field or MISSING,
        "Previous": render(alert.previous),
        "Current": render(alert.current),
    }
    if alert.labels:
        fields["Labels"] = labels_text(alert.labels)
    blocks = [_section(headline)]
    if alert.description:
        blocks.append(_section(clip(escape(alert.description), SECTION_LIMIT)))
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
    lines.append(escape(details(alert)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- shared text


def escape(text: str) -> str:
    """Slack's control characters as entities: ``&`` ``<`` ``>`` (also right for HTML text)."""
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


def title(alert: Alert) -> str:
    """``[CRITICAL] FIRING low-cash`` or ``RESOLVED [CRITICAL] low-cash (vision)``: plain text."""
    rule = alert.rule if alert.source == DEFAULT_SOURCE else f"{alert.rule} ({alert.source})"
    severity = alert.severity.value.upper()
    if alert.status is Status.RESOLVED:
        return f"RESOLVED [{severity}] {rule}"
    return f"[{severity}] FIRING {rule}"


def symbol(alert: Alert) -> str:
    """The alert's Unicode emoji: ✅ once resolved, else by severity."""
    return RESOLVED_SYMBOL if alert.status is Status.RESOLVED else SYMBOLS[alert.severity]


def details(alert: Alert) -> str:
    """``account 12345678 · cash_to_withdraw: 1500.00 → 512.25 · team=risk``: plain text."""
    parts = [f"account {alert.account_number}"] if alert.account_number else []
    if alert.field:
        parts.append(f"{alert.field}: {render(alert.previous)} → {render(alert.current)}")
    if alert.labels:
        parts.append(labels_text(alert.labels))
    return " · ".join(parts) or f"source {alert.source}"


def labels_text(labels: Mapping[str, str]) -> str:
    """``team=risk, desk=ny``, in the rule's order."""
    return ", ".join(f"{key}={value}" for key, value in labels.items())


def counts(alerts: Iterable[Alert]) -> str:
    """``2 firing, 1 resolved``."""
    statuses = [alert.status for alert in alerts]
    resolved = statuses.count(Status.RESOLVED)
    return f"{len(statuses) - resolved} firing, {resolved} resolved"


def tally(alerts: Sequence[Alert]) -> str:
    """``3 alerts: 2 firing, 1 resolved``: the headline of a batch."""
    noun = "alert" if len(alerts) == 1 else "alerts"
    return f"{len(alerts)} {noun}: {counts(alerts)}"


def more(alerts: Sequence[Alert]) -> str:
    """``…and 4 more: 3 firing, 1 resolved``: the alerts a batch message leaves out."""
    return f"…and {len(alerts)} more: {counts(alerts)}"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in ``…`` when cut, never inside an ``&…;`` entity."""
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


def join_lines(lines: Sequence[str], limit: int, *, rest: Callable[[int], str]) -> str:
    """The lines joined by newlines, within ``limit`` characters: whole lines only, and when
    some do not fit, the last ``n`` make way for the line ``rest(n)`` (``n`` ≥ 1)."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept, size = 0, 0  # size: the kept lines with a newline each
    for index, line in enumerate(lines[:-1]):
        if size + len(line) + 1 + len(rest(len(lines) - index - 1)) > limit:
            break
        kept, size = index + 1, size + len(line) + 1
    return clip("\n".join([*lines[:kept], rest(len(lines) - kept)]), limit)


def _headline(alert: Alert) -> str:
    """Emoji, status, severity, rule and the summary (which already names the account or the
    source)."""
    emoji = ":white_check_mark:" if alert.status is Status.RESOLVED else EMOJI[alert.severity]
    return f"{emoji} {escape(title(alert))}: {escape(alert.summary)}"


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
