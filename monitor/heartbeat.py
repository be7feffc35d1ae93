"""``[heartbeat]``: ping a URL while the monitor does its job, so that silence means trouble.

Healthchecks.io, Cronitor and Uptime Kuma push monitors expect a request every so often and
alert when it stops coming: when this process dies, wedges, cannot reach the API, or cannot
deliver. Every ``every`` the daemon asks :func:`unhealthy` (every source's last poll
succeeded, the outbox is not stuck); when all is well it pings, else it skips the beat. A failed
ping is logged (never with the URL: it holds the check's key) and the next beat tries again;
pinging runs in its own job, never in a poll's path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import aiohttp
import structlog
from pydantic import SecretStr

from monitor import http
from monitor.config import HeartbeatConfig
from monitor.errors import MonitorError, SinkError
from monitor.pipeline import SourcePipeline
from monitor.store import Store

__all__ = ["STUCK_AFTER", "Heartbeat", "unhealthy"]

log = structlog.get_logger("monitor.heartbeat")

#: The outbox is stuck when a notification has waited longer than this (seconds).
STUCK_AFTER = 15 * 60.0


def unhealthy(
    last_polls: Iterable[tuple[str, bool | None]],
    oldest_pending: float | None,
    now: float,
) -> str | None:
    """Why no beat is due (``None``: beat). ``last_polls`` is each source's name and whether
    its last poll succeeded (``None``: not polled yet); ``oldest_pending`` is when the oldest
    notification still pending was queued."""
    for source, ok in last_polls:
        if ok is None:
            return f"source {source} has not been polled yet"
        if not ok:
            return f"the last poll of source {source} failed"
    if oldest_pending is not None and now - oldest_pending > STUCK_AFTER:
        minutes = int((now - oldest_pending) // 60)
        return f"the outbox is stuck: a notification has waited {minutes} minutes"
    return None


class Heartbeat:
    """Pings the configured URL (GET or POST, an empty body) with a timeout."""

    def __init__(
        self,
        config: HeartbeatConfig,
        url: SecretStr,
        session: aiohttp.ClientSession,
        *,
        on_result: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._url = url
        self._session = session
        #: Told ``ok``, ``failed`` or ``skipped`` after each beat (the metrics).
        self.on_result = on_result
        self.clock = clock
        #: Why the last beat was skipped (logged when the reason changes).
        self._skipped: str | None = None

    async def beat(
        self, pipelines: Mapping[str, SourcePipeline], store: Store, *, shared: bool = False
    ) -> str:
        """One beat: ping if the monitor is healthy; ``ok``, ``failed`` or ``skipped``.
        Never raises a :class:`MonitorError` (a failure is logged; the next beat retries).

        ``shared``: replicas share the sources, each polling those it holds, so this process's
        pipelines know only some of them (and, for a source handed over, an old outcome):
        every source is judged by the last poll the state database recorded, whichever
        replica made it."""
        try:
            summary = await store.outbox_summary()
            oldest = min((q.oldest_created_at for q in summary.queues), default=None)
            if shared:
                rows = {r.source: r.last_result for r in await store.sources()}
                last: Iterable[tuple[str, bool | None]] = [
                    (n, None if rows.get(n) is None else rows[n] == "ok") for n in pipelines
                ]
            else:
                last = [
                    (n, p.last.ok if p.last is not None else None) for n, p in pipelines.items()
                ]
            why = unhealthy(last, oldest, self.clock())
            if why is not None:
                if why != self._skipped:
                    log.warning("heartbeat_skipped", reason=why)
                self._skipped = why
                return self._result("skipped")
            self._skipped = None
            await self.ping()
        except MonitorError as exc:
            log.warning("heartbeat_failed", error=str(exc))
            return self._result("failed")
        log.debug("heartbeat_sent")
        return self._result("ok")

    def _result(self, result: str) -> str:
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def ping(self) -> None:
        """One ping; ``SinkError`` (without the URL) when it fails or is not answered 2xx."""
        timeout = self.config.timeout.total_seconds()
        with http.sink_errors("heartbeat", timeout=timeout):
            async with self._session.request(
                self.config.method,
                self._url.get_secret_value(),
                headers={"User-Agent": http.USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise SinkError(
                        f"the heartbeat URL answered HTTP {response.status}",
                        retryable=True,
                        status=response.status,
                    )
