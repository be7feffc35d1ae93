"""``type = "pagerduty"``: PagerDuty Events API v2, one event per notification.

A firing notification is a ``trigger`` event and a resolved one a ``resolve`` event (an
acknowledged firing one, queued by ``balance-monitor ack``, an ``acknowledge`` event); both carry
the alert's fingerprint as ``dedup_key``, so a retried or repeated trigger updates the same
incident and the resolve closes it::

    {"routing_key": "…", "event_action": "trigger", "dedup_key": "<fingerprint>",
     "payload": {"summary": "12345678: cash_to_withdraw fell to 512.25 (< 1000)",
                 "severity": "critical", "source": "balance-monitor/default/12345678",
                 "timestamp": "2024-05-01T12:00:00Z", "component": "12345678",
                 "group": "default", "class": "threshold",
                 "custom_details": {"rule": "low-cash", "field": "cash_to_withdraw",
                                    "previous": "1500.00", "current": "512.25", ...}},
     "client": "balance-monitor"}
    {"routing_key": "…", "event_action": "resolve", "dedup_key": "<fingerprint>"}

PagerDuty answers 202. 429 and 5xx are retryable, 400 (an invalid event) is not and its message
carries PagerDuty's error text. The routing key is a secret: it never appears in an error or repr.

An event (an alert of ``kind = "event"``: ``change``, ``restriction_change``, ``account_*``, a
``delta`` without window) has no resolved notification of its own, so its incident would stay
open (and escalate) for ever. The sink declares ``resolve_events_after`` (an
:class:`~monitor.sinks.base.EventResolvingSink`): the delivery loop queues a resolve (same
``dedup_key``) that long after each event's trigger was delivered, derived from the delivered
trigger in the state database, so a restart cannot lose it (see :mod:`monitor.delivery`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp
from pydantic import SecretStr

from monitor import encoding
from monitor.config import PagerDutySinkConfig, resolve_secret
from monitor.errors import SinkError
from monitor.models import Alert, JSONValue, Notification, Severity, Status, rfc3339
from monitor.sinks.base import JSON_HEADERS, post
from monitor.text import clip, value_text

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
CLIENT = "balance-monitor"
SUMMARY_LIMIT = 1024
#: Our severities to PagerDuty's (which also has ``error``, unused).
SEVERITIES: Mapping[Severity, str] = {
    Severity.CRITICAL: "critical",
    Severity.WARNING: "warning",
    Severity.INFO: "info",
}
_HIDDEN = "<routing_key>"


class PagerDutySink:
    """Sends trigger and resolve events to one PagerDuty service (its integration key)."""

    def __init__(
        self,
        name: str,
        *,
        session: aiohttp.ClientSession,
        routing_key: SecretStr,
        url: str = DEFAULT_URL,
        timeout: float = 10.0,
        resolve_events_after: float = 3600.0,
    ) -> None:
        self._name = name
        self._session = session
        self._routing_key = routing_key
        self._url = url
        self._timeout = timeout
        #: Seconds after an event's trigger was delivered when its incident is resolved.
        self.resolve_events_after = resolve_events_after

    def __repr__(self) -> str:
        return f"PagerDutySink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        key = self._routing_key.get_secret_value()
        body = encoding.dumps(event(notification, routing_key=key)).encode()
        try:
            await post(
                self._session,
                self._url,
                body,
                headers=JSON_HEADERS,
                timeout=self._timeout,
                sink=self._name,
            )
        except SinkError as exc:
            message = str(exc)
            if key not in message:
                raise
            # PagerDuty may quote the event back in its error text: cut the key out.
            raise SinkError(
                message.replace(key, _HIDDEN),
                retryable=exc.retryable,
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""


def event(notification: Notification, *, routing_key: str) -> dict[str, Any]:
    """The Events API v2 document for one notification."""
    alert = notification.alert
    if alert.status is Status.RESOLVED:
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.fingerprint,
        }
    if alert.acknowledged_at is not None:  # a firing one said acknowledged: `balance-monitor ack`
        return {
            "routing_key": routing_key,
            "event_action": "acknowledge",
            "dedup_key": alert.fingerprint,
        }
    payload: dict[str, Any] = {
        "summary": clip(alert.summary or alert.rule, SUMMARY_LIMIT),
        "severity": SEVERITIES[alert.severity],
        "source": source(alert),
        "timestamp": rfc3339(alert.observed_at),
    }
    if alert.account_number:
        payload["component"] = alert.account_number
    payload |= {
        "group": alert.source,
        "class": alert.type,
        "custom_details": {
            "rule": alert.rule,
            "field": alert.field,
            "previous": exact(alert.previous),
            "current": exact(alert.current),
            "labels": dict(alert.labels),
            "description": alert.description,
            "id": notification.id,
            "snapshot": exact(dict(alert.snapshot)) if alert.snapshot is not None else None,
        },
    }
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": payload,
        "client": CLIENT,
    }


def source(alert: Alert) -> str:
    """``balance-monitor/<source>/<account>`` (without the account for a source's own alerts)."""
    parts = [CLIENT, alert.source]
    if alert.account_number:
        parts.append(alert.account_number)
    return "/".join(parts)


def exact(value: JSONValue) -> JSONValue:
    """Money as strings of its exact digits, at any depth (PagerDuty would read floats)."""
    if isinstance(value, Decimal):
        return value_text(value)
    if isinstance(value, Mapping):
        return {key: exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exact(item) for item in value]
    return value


def create(
    config: PagerDutySinkConfig, *, index: int, session: aiohttp.ClientSession
) -> PagerDutySink:
    """Build the sink, resolving its routing key now (``ConfigError`` names the key)."""
    return PagerDutySink(
        config.name,
        session=session,
        routing_key=resolve_secret(config.required_ref(index, "routing_key")),
        url=config.url,
        timeout=config.timeout.total_seconds(),
        resolve_events_after=config.resolve_events_after.total_seconds(),
    )
