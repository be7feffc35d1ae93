"""``type = "log"``: write each notification as one structlog event (no network, never fails)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import aiohttp
import structlog

from monitor import digest_render
from monitor.config import LogSinkConfig
from monitor.digest import Digest
from monitor.models import JSONValue, Notification, Status, rfc3339
from monitor.text import value_text

EVENT = "notification"
DIGEST_EVENT = "digest"
Level = Literal["info", "warning", "error"]

_log = structlog.get_logger("monitor.sinks.log")


class LogSink:
    """Logs firing notifications at ``level`` and resolved ones at ``info``."""

    def __init__(self, name: str, *, level: Level = "warning") -> None:
        self._name = name
        self._level = level

    def __repr__(self) -> str:
        return f"LogSink(name={self._name!r}, level={self._level!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        alert = notification.alert
        level = self._level if alert.status is Status.FIRING else "info"
        getattr(_log, level)(
            EVENT,
            sink=self._name,
            id=notification.id,
            fingerprint=alert.fingerprint,
            status=alert.status.value,
            rule=alert.rule,
            type=alert.type,
            severity=alert.severity.value,
            source=alert.source,
            account_number=alert.account_number,
            field=alert.field,
            previous=_loggable(alert.previous),
            current=_loggable(alert.current),
            summary=alert.summary,
            observed_at=rfc3339(alert.observed_at),
            **({"description": alert.description} if alert.description else {}),
            **({"labels": dict(alert.labels)} if alert.labels else {}),
        )

    async def send_digest(self, digest: Digest) -> None:
        """One ``digest`` event at ``info`` with the figures and the plain text."""
        _log.info(DIGEST_EVENT, sink=self._name, **digest_render.loggable(digest))

    async def aclose(self) -> None:
        """Nothing to release."""


def _loggable(value: JSONValue) -> Any:
    """Money as its exact digits (a string), records as JSON text; any renderer can print these.
    Other values stay as they are (``None``, ``true``, ``3`` keep their JSON types)."""
    return value_text(value) if isinstance(value, Decimal | Mapping | list) else value


def create(config: LogSinkConfig, *, index: int, session: aiohttp.ClientSession) -> LogSink:
    """Build the sink; ``index`` and ``session`` are unused (every factory takes them)."""
    return LogSink(config.name, level=config.level)
