"""``type = "apprise"``: any of the services Apprise knows, through one Apprise URL.

Needs the optional ``apprise`` extra (``pip install 'balance-monitor[apprise]'``); it is imported
when the sink is built, so the rest of balance-monitor works without it. Each notification is one
Apprise notification::

    title: [CRITICAL] FIRING low-cash
    body:  cash_to_withdraw fell to 512.25 (< 1000)

           <description>

           Account:     12345678
           ...

Apprise says only whether a delivery worked, not why it did not, so every failure is a retryable
``SinkError``. The URL holds the service's credentials: it never appears in errors, logs or
``repr``. Apprise's log (logger ``apprise``) and that of its HTTP client (``urllib3``) name URL
paths, tokens and payloads, so they are kept out of balance-monitor's output.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from monitor import digest_render
from monitor.config import AppriseSinkConfig, resolve_secret
from monitor.digest import Digest
from monitor.errors import ConfigError, SinkError
from monitor.models import Alert, Notification, Severity
from monitor.sinks.text import detail_rows, pick, title

if TYPE_CHECKING:
    import apprise

__all__ = [
    "NOTIFY_TYPES",
    "QUIET_LOGGERS",
    "RESOLVED_TYPE",
    "AppriseSink",
    "body",
    "create",
    "notify_type",
    "quiet_apprise_logs",
    "title",  # from monitor.sinks.text, as before
]

#: Apprise's notification types (which pick the icon or colour of many services).
NOTIFY_TYPES: Mapping[Severity, str] = {
    Severity.CRITICAL: "failure",
    Severity.WARNING: "warning",
    Severity.INFO: "info",
}
RESOLVED_TYPE = "success"
#: Loggers that print what an Apprise URL holds (paths, query tokens, headers, payloads):
#: Apprise's own, and urllib3's (under requests, Apprise's HTTP client; nothing else of ours
#: uses it), which logs every request line at debug level.
QUIET_LOGGERS = ("apprise", "urllib3")


class AppriseSink:
    """Delivers notifications through an ``apprise.Apprise`` holding one (secret) URL."""

    def __init__(self, name: str, *, notifier: apprise.Apprise, timeout: float = 10.0) -> None:
        self._name = name
        self._notifier = notifier
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AppriseSink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        alert = notification.alert
        await self._notify(body(alert), title(alert), notify_type(alert))

    async def send_digest(self, digest: Digest) -> None:
        """The plain text, headed by the digest's headline; ``info`` when all clear, else
        ``warning`` (an alert fired or still fires, or a source failed polls)."""
        kind = "info" if digest.all_clear else "warning"
        await self._notify(digest_render.text(digest), digest_render.headline(digest), kind)

    async def _notify(self, text: str, heading: str, kind: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                result: Any = await self._notifier.async_notify(
                    body=text,
                    title=heading,
                    notify_type=kind,
                    body_format="text",  # Apprise escapes it for HTML and Markdown services
                )
        except TimeoutError:
            raise SinkError(
                f"timeout after {self._timeout:g}s sending to sink '{self._name}'", retryable=True
            ) from None
        if not result:
            status = getattr(getattr(result, "status", None), "name", None)
            outcome = f" ({status.lower()})" if isinstance(status, str) else ""
            raise SinkError(
                f"Apprise could not deliver to sink '{self._name}'{outcome}; Apprise does not "
                "say why (run the apprise CLI with -vvv and the same URL to find out)",
                retryable=True,
            )

    async def aclose(self) -> None:
        """Nothing to release: Apprise opens a connection per notification."""


def body(alert: Alert) -> str:
    """The summary, the description, then the details (money with its exact digits)."""
    rows = [(key, value) for key, value in detail_rows(alert) if key not in ("Rule", "Severity")]
    width = max(len(key) for key, _ in rows) + 2
    parts = [alert.summary]
    if alert.description:
        parts.append(alert.description.strip())
    parts.append("\n".join(f"{key + ':':<{width}}{value}" for key, value in rows))
    return "\n\n".join(parts)


def notify_type(alert: Alert) -> str:
    return pick(alert, NOTIFY_TYPES, RESOLVED_TYPE)


def quiet_apprise_logs() -> None:
    """Keep Apprise's log (and urllib3's) out of ours: they name URL paths and payloads.

    Handlers on those loggers themselves (Apprise's own capture, where it has one) still get
    the records; only the root logger's handlers, which write balance-monitor's log, do not.
    """
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def create(config: AppriseSinkConfig, *, index: int, session: aiohttp.ClientSession) -> AppriseSink:
    """Build the sink: import Apprise, resolve the URL and check that Apprise understands it."""
    del session  # Apprise brings its own HTTP client
    quiet_apprise_logs()  # before the import (problems imports it): it logs as it loads
    if problems := config.problems(index):
        raise ConfigError(problems[0])
    import apprise

    ref = config.required_ref(index, "url")
    notifier = apprise.Apprise()
    if not notifier.add(resolve_secret(ref).get_secret_value()):
        raise ConfigError(f"{ref.key}: not a URL that Apprise understands (or its plugin is off)")
    return AppriseSink(config.name, notifier=notifier, timeout=config.timeout.total_seconds())
