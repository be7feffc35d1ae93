"""``type = "alertmanager"``: hand alerts to a Prometheus Alertmanager (``POST /api/v2/alerts``).

Each notification becomes one alert in a JSON array::

    [{"labels": {"alertname": "low-cash", "severity": "critical", "source": "default",
                 "account_number": "12345678", "team": "treasury"},
      "annotations": {"summary": "…", "description": "…", "field": "cash_to_withdraw",
                      "previous": "1500.00", "current": "512.25"},
      "startsAt": "2024-05-01T12:00:00Z", "generatorURL": "https://…"}]

A resolved notification carries ``endsAt`` (its ``observed_at``). Labels are the alert's identity
in Alertmanager: the rule's own ``labels`` join ours (which win), and empty values are left out
because Alertmanager refuses them.

**Re-sending.** Alertmanager resolves an alert it has not heard about for ``resolve_timeout``
(5m by default), so the sink keeps the firing alerts it delivered, by fingerprint, and POSTs them
all again (one request) every ``resend_interval`` from a background task. The task starts with
the first :meth:`~AlertmanagerSink.send` or :meth:`~AlertmanagerSink.restore` and stops in
:meth:`~AlertmanagerSink.aclose`. A resolved notification drops its alert from the set. A failed
re-send is logged (``alertmanager_resend_failed``) and tried again an interval later, never raised.
Alerts of event rules (``alert.kind == "event"``: ``change``, ``account_added``, a ``delta``
without ``window``, ...) are sent once and not kept: they never resolve, so Alertmanager lets
them expire after its ``resolve_timeout``.

Every POST (a delivery or a re-send) holds one lock, so a re-send that read the set before an
alert resolved can never reach Alertmanager after the resolve and fire the alert again.

**Restarts.** The set lives in memory. At start-up the daemon hands over the last delivered
firing notification of each alert still firing through :meth:`~AlertmanagerSink.restore`; the
background task POSTs them right away (not inside ``restore``, which does no I/O and never
raises) and every interval after.

**Replicas** (a PostgreSQL state): any replica delivers, so one replica's set misses what the
others delivered and resolved. The daemon then calls :meth:`~AlertmanagerSink.sync` every
``resend_interval`` on every replica: on the one doing the singleton work (``resend=True``) the
set becomes the state database's view (the last delivered firing notification of each alert
still firing, whoever delivered it), and an alert that left the set since the last sync is
POSTed once more as resolved (``endsAt`` now), so a re-send that raced with another replica's
resolve is ended within an interval; the other replicas do not re-send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from multidict import CIMultiDict

from monitor import encoding
from monitor.config import AlertmanagerSinkConfig
from monitor.errors import ConfigError, SinkError
from monitor.models import Alert, Notification, Status, rfc3339
from monitor.sinks.base import JSON_HEADERS, post
from monitor.text import value_text

API_PATH = "/api/v2/alerts"

_log = structlog.get_logger("monitor.sinks.alertmanager")


class AlertmanagerSink:
    """Posts alerts to one Alertmanager and keeps the firing ones alive there."""

    def __init__(
        self,
        name: str,
        *,
        session: aiohttp.ClientSession,
        url: str,
        resend_interval: float | timedelta = 60.0,
        generator_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._name = name
        self._session = session
        self._endpoint = endpoint(url)
        if isinstance(resend_interval, timedelta):
            resend_interval = resend_interval.total_seconds()
        if resend_interval <= 0:
            raise ValueError("resend_interval must be positive")
        self._interval = resend_interval
        self._generator_url = generator_url
        self._headers = dict(headers or {})
        self._timeout = timeout
        #: The firing alerts delivered (or restored), by fingerprint, as they are posted.
        self._firing: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Whether this process re-sends (with replicas, only the one doing singleton work).
        self._resending = True

    def __repr__(self) -> str:
        return f"AlertmanagerSink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def firing(self) -> frozenset[str]:
        """The fingerprints re-sent every interval."""
        return frozenset(self._firing)

    async def send(self, notification: Notification) -> None:
        """POST this alert; a delivered firing one is re-sent until its resolved one is sent."""
        self._start()
        alert = notification.alert
        document = self.document(alert)
        async with self._lock:
            if alert.status is Status.RESOLVED:
                # Forget it first: even if this POST fails (and is retried by the delivery
                # loop), no re-send may revive the alert.
                self._firing.pop(alert.fingerprint, None)
            await self._post([document])
            if alert.status is Status.FIRING and alert.kind == "condition":
                self._firing[alert.fingerprint] = document

    async def restore(self, firing: Sequence[Notification]) -> None:
        """Take over alerts delivered before a restart: the last delivered firing notification
        of each alert still firing. They are POSTed by the background task right away and
        every interval after; this method does no I/O itself and never raises ``SinkError``.
        Resolved notifications and events are ignored; an alert already known (sent since
        start-up) keeps its newer document."""
        for notification in firing:
            alert = notification.alert
            if alert.status is Status.FIRING and alert.kind == "condition":
                self._firing.setdefault(alert.fingerprint, self.document(alert))
        self._start()
        self._due.set()

    @property
    def resend_interval(self) -> float:
        return self._interval

    async def sync(self, firing: Sequence[Notification], *, resend: bool) -> None:
        """With replicas: whether this replica re-sends, and if it does, what: ``firing`` (the
        state database's last delivered firing notification of each alert still firing)
        replaces the set, and each alert that left it is POSTed as resolved now (a failure is
        logged, never raised)."""
        async with self._lock:
            self._resending = resend
            if not resend:
                return
            kept = {
                n.alert.fingerprint: self.document(n.alert)
                for n in firing
                if n.alert.status is Status.FIRING and n.alert.kind == "condition"
            }
            gone = [doc for fp, doc in self._firing.items() if fp not in kept]
            self._firing = kept
            if gone:
                ended = rfc3339(datetime.now(tz=UTC))
                try:
                    await self._post([{**doc, "endsAt": ended} for doc in gone])
                except SinkError as exc:
                    _log.warning(
                        "alertmanager_resend_failed", sink=self._name, alerts=len(gone),
                        error=str(exc), retryable=exc.retryable,
                    )  # fmt: skip
        self._start()

    async def aclose(self) -> None:
        """Stop re-sending (the session belongs to the caller)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def document(self, alert: Alert) -> dict[str, Any]:
        """The Alertmanager API v2 object for one alert."""
        labels = {
            "alertname": alert.rule,
            "severity": alert.severity.value,
            "source": alert.source,
            "account_number": alert.account_number or "",
        }
        for key, value in alert.labels.items():
            labels.setdefault(key, value)
        annotations = {
            "summary": alert.summary,
            "description": alert.description or "",
            "field": alert.field or "",
            "previous": value_text(alert.previous, none=""),
            "current": value_text(alert.current, none=""),
        }
        document: dict[str, Any] = {
            "labels": {key: value for key, value in labels.items() if value},
            "annotations": {key: value for key, value in annotations.items() if value},
            "startsAt": rfc3339(alert.started_at or alert.observed_at),
        }
        if alert.status is Status.RESOLVED:
            document["endsAt"] = rfc3339(alert.observed_at)
        if self._generator_url is not None:
            document["generatorURL"] = self._generator_url
        return document

    def _start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._resend_loop(), name=f"alertmanager-{self._name}")

    async def _resend_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for (which on Python 3.11 may swallow a cancel).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._due.wait()
            self._due.clear()
            await self.resend()

    async def resend(self) -> None:
        """POST every firing alert now (one request); log a failure, never raise."""
        async with self._lock:
            if not self._firing or not self._resending:
                return
            documents = list(self._firing.values())
            try:
                await self._post(documents)
            except SinkError as exc:
                _log.warning(
                    "alertmanager_resend_failed",
                    sink=self._name,
                    alerts=len(documents),
                    error=str(exc),
                    retryable=exc.retryable,
                )
            except Exception as exc:  # a scheduled job: log it, try again next interval
                _log.error(
                    "alertmanager_resend_failed",
                    sink=self._name,
                    alerts=len(documents),
                    error=type(exc).__name__,
                )

    async def _post(self, documents: list[dict[str, Any]]) -> None:
        body = encoding.dumps(documents).encode()
        headers = CIMultiDict(JSON_HEADERS)
        headers.update(self._headers)
        await post(
            self._session,
            self._endpoint,
            body,
            headers=headers,
            timeout=self._timeout,
            sink=self._name,
        )


def endpoint(url: str) -> str:
    """``{url}/api/v2/alerts``, keeping a path prefix (``http://host/alertmanager/``)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + API_PATH))


def create(
    config: AlertmanagerSinkConfig, *, index: int, session: aiohttp.ClientSession
) -> AlertmanagerSink:
    """Build the sink; nothing starts until the first ``send`` or ``restore``.

    ``ConfigError`` when its config has a problem (:meth:`AlertmanagerSinkConfig.problems`).
    """
    if problems := config.problems(index):
        raise ConfigError(problems[0])
    return AlertmanagerSink(
        config.name,
        session=session,
        url=config.url,
        resend_interval=config.resend_interval,
        generator_url=config.generator_url,
        headers={key: value.get_secret_value() for key, value in config.headers.items()},
        timeout=config.timeout.total_seconds(),
    )
