"""``[http] listen``: /metrics, /healthz and /readyz, served on the daemon's own event loop.

``/metrics`` is prometheus-client's own aiohttp exposition: it answers the format the scraper's
``Accept`` asks for (OpenMetrics, or the classic text format) and compresses when its
``Accept-Encoding`` allows (Prometheus sends ``gzip``).

``/healthz`` answers 200 while the process and its loop are alive (a wedged loop cannot answer).
``/readyz`` answers 200 when every source's last successful poll is younger than three poll
intervals, else 503 with a JSON body that says which source is stale and why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import SecretStr

from monitor import __version__, encoding
from monitor.metrics import Metrics
from monitor.serving import serve_app
from monitor.web import WebContext, add_routes
from monitor.webauth import auth_middleware


@dataclass
class Readiness:
    """Whether the monitor is doing its job; ``reasons`` explains a ``False``."""

    ready: bool
    reasons: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


class HealthServer:
    """The small HTTP server; ``start`` binds, ``close`` stops it."""

    def __init__(
        self,
        metrics: Metrics,
        readiness: Callable[[], Readiness],
        refresh: Callable[[], Awaitable[None]] | None = None,
        *,
        auth_token: SecretStr | None = None,
        routes: Sequence[Callable[[web.Application], None]] = (),
        dashboard: WebContext | None = None,
        ui: bool = True,
    ) -> None:
        self.metrics = metrics
        self.routes = tuple(routes)  # more routes (the /api/v1 ones), each adds its own
        self.dashboard = dashboard  # the dashboard's API (and with ``ui`` its pages): monitor.web
        self.ui = ui
        self.auth_token = auth_token  # [http] auth_token: asked of every route but /healthz
        self.readiness = readiness
        self.refresh = refresh  # brings gauges read from the store up to date before a scrape
        self._expose = make_aiohttp_handler(metrics.registry)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[auth_middleware(self.auth_token)])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for add in self.routes:
            add(app)
        if self.dashboard is not None:
            add_routes(app, self.dashboard, ui=self.ui)
        return app

    async def start(self, host: str, port: int) -> str:
        self._runner, self.url = await serve_app(self.app(), host, port)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if self.refresh is not None:
            await self.refresh()
        return await self._expose(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "version": __version__}, 200)

    async def _readyz(self, request: web.Request) -> web.Response:
        state = self.readiness()
        body = {
            "status": "ready" if state.ready else "not ready",
            "reasons": state.reasons,
            **state.detail,
        }
        return _json(body, 200 if state.ready else 503)


def _json(body: Any, status: int) -> web.Response:
    return web.Response(text=encoding.dumps(body), status=status, content_type="application/json")
