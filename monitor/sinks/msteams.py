"""``type = "msteams"``: post notifications to a Microsoft Teams Workflows webhook.

The workflow ("Post to a channel when a webhook request is received") takes a message with one
Adaptive Card (version 1.4). One notification is a card with a coloured, bold headline (red
``attention`` for critical, ``warning``, blue ``accent`` for info, green ``good`` once resolved),
the summary, the rule's description, and a FactSet: rule, severity, account, field, previous and
current values, source, observed time and labels. Several (``group_window``) are one card: a
``3 alerts: 2 firing, 1 resolved`` headline and a Container per notification, at most
:data:`BATCH_CONTAINERS` and :data:`BATCH_BYTES` of them (Teams refuses messages over about
28 KB), then ``…and N more``. Workflows answer ``202 Accepted``; any 2xx counts as delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from monitor import digest_render, encoding
from monitor.config import MsTeamsSinkConfig
from monitor.digest import Digest
from monitor.models import Alert, Severity, rfc3339
from monitor.sinks.base import ChatSink, create_url_sink
from monitor.sinks.text import (
    details,
    explanation_lines,
    facts,
    labels_text,
    more,
    pick,
    symbol,
    tally,
    title,
)
from monitor.text import clip

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
TEXT_LIMIT = 2000
FACT_LIMIT = 500
BATCH_CONTAINERS = 50
BATCH_TEXT_LIMIT = 300
#: A batch card stops adding containers at this many bytes of JSON.
BATCH_BYTES = 24_000
RESOLVED_COLOR = "good"
COLORS: Mapping[Severity, str] = {
    Severity.CRITICAL: "attention",
    Severity.WARNING: "warning",
    Severity.INFO: "accent",
}


class MsTeamsSink(ChatSink):
    """Delivers notifications to one Teams Workflows webhook URL."""

    #: Teams: at most four messages a second per webhook.
    MIN_INTERVAL: ClassVar[float] = 0.25

    def document(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        return message(alerts)

    def digest_document(self, digest: Digest) -> dict[str, Any]:
        return card(digest_render.teams_body(digest))


def message(alerts: Sequence[Alert]) -> dict[str, Any]:
    """The webhook JSON document for one or more alerts: a message with one Adaptive Card."""
    if len(alerts) == 1:
        return card(_single(alerts[0]))
    body: list[dict[str, Any]] = [_text(tally(alerts), weight="bolder", size="medium")]
    size = len(encoding.dumps(card(body)).encode()) + 200  # room for the "…and N more" line
    shown = 0
    for alert in alerts[:BATCH_CONTAINERS]:
        container = _container(alert)
        size += len(encoding.dumps(container).encode()) + 1
        if size > BATCH_BYTES:
            break
        body.append(container)
        shown += 1
    if shown < len(alerts):
        body.append(_text(more(alerts[shown:]), is_subtle=True, separator=True))
    return card(body)


def card(body: list[dict[str, Any]]) -> dict[str, Any]:
    """The message carrying one Adaptive Card with ``body``."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": {
                    "$schema": CARD_SCHEMA,
                    "type": "AdaptiveCard",
                    "version": CARD_VERSION,
                    "body": body,
                },
            }
        ],
    }


def _single(alert: Alert) -> list[dict[str, Any]]:
    rows = {
        "Rule": alert.rule,
        "Severity": alert.severity.value,
        **facts(alert),
        "Observed": rfc3339(alert.observed_at),
    }
    if alert.labels:
        rows["Labels"] = labels_text(alert.labels)
    body = [_headline(alert, size="medium"), _text(clip(alert.summary, TEXT_LIMIT))]
    if alert.description:
        body.append(_text(clip(alert.description, TEXT_LIMIT), is_subtle=True))
    if why := explanation_lines(alert):
        body.append(_text(clip("\n\n".join(why), TEXT_LIMIT)))
    body.append(
        {
            "type": "FactSet",
            "facts": [
                {"title": key, "value": clip(value, FACT_LIMIT)} for key, value in rows.items()
            ],
        }
    )
    return body


def _container(alert: Alert) -> dict[str, Any]:
    items = [_headline(alert), _text(clip(alert.summary, BATCH_TEXT_LIMIT), spacing="none")]
    if alert.description:
        description = clip(alert.description, BATCH_TEXT_LIMIT)
        items.append(_text(description, is_subtle=True, spacing="none"))
    if why := explanation_lines(alert):
        items.append(_text(clip("\n\n".join(why), BATCH_TEXT_LIMIT), spacing="none"))
    items.append(_text(clip(details(alert), BATCH_TEXT_LIMIT), is_subtle=True, spacing="none"))
    return {"type": "Container", "separator": True, "items": items}


def _headline(alert: Alert, **style: Any) -> dict[str, Any]:
    color = pick(alert, COLORS, RESOLVED_COLOR)
    return _text(f"{symbol(alert)} {title(alert)}", color=color, weight="bolder", **style)


def _text(text: str, *, is_subtle: bool = False, **style: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "TextBlock", "text": text, "wrap": True, **style}
    if is_subtle:
        block["isSubtle"] = True
    return block


def create(config: MsTeamsSinkConfig, *, index: int, session: aiohttp.ClientSession) -> MsTeamsSink:
    """Build the sink, resolving its URL now (``ConfigError`` names the key)."""
    return create_url_sink(MsTeamsSink, config, index=index, session=session)
