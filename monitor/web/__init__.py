"""The dashboard and its JSON API, served by the daemon's ``[http] listen`` server.

:func:`add_routes` adds ``/api/v1/...`` (always) and the pages with their static files (unless
``[http] ui = false``) to the aiohttp application :class:`monitor.health.HealthServer` builds;
its auth middleware guards them. Handlers only read: through the store
(:mod:`monitor.web.data` gathers what a page or an API answer needs) and the live config.
"""

from __future__ import annotations

from aiohttp import web

from monitor.web.context import WebContext

__all__ = ["WebContext", "add_routes"]


def add_routes(app: web.Application, ctx: WebContext, *, ui: bool) -> None:
    """The API under ``/api/v1/``, and with ``ui`` the pages (``/``, ``/accounts/...``,
    ``/alerts``) and ``/static/...``."""
    from monitor.web.api import add_routes as add_api
    from monitor.web.pages import add_routes as add_pages

    add_api(app, ctx)
    if ui:
        add_pages(app, ctx)
