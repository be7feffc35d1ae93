"""The JSON API under ``/api/v1/``: what the dashboard shows, for other tools too.

Read-only and versioned: fields are added, never renamed. Money is a JSON number with the
API's own digits; times are epoch seconds (``*_at``, ``since``, ``until``). A bad parameter is
``400 {"error": ...}`` naming it; an unknown account ``404``. The routes:

``GET /api/v1/sources``            each source's health, poll count and its last 90 polls;
                                   ``control_version``, bumped by each silence or ack written
``GET /api/v1/overview``           what the overview page shows (accounts, 24 h changes, totals)
``GET /api/v1/accounts``           every account's last record and its alerts
``GET /api/v1/accounts/{number}``  one account (``?source=`` when several sources have it)
``GET /api/v1/accounts/{number}/history?field=cash&field=...&since=7d&until=...&points=1000``
``GET /api/v1/alerts``             firing (with ack and escalation), pending, held (by a mute
                                   window or a silence); last notifications; mute windows;
                                   silences (in force, to start, ended in the last 24 h)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from monitor import encoding
from monitor.downsample import MAX_POINTS
from monitor.history import history_json, parse_moment
from monitor.models import SERIES_FIELDS
from monitor.web import data
from monitor.web.alerts import alerts_page
from monitor.web.context import WebContext

__all__ = ["add_routes"]

PREFIX = "/api/v1"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=encoding.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def add_routes(app: web.Application, ctx: WebContext) -> None:
    async def sources(request: web.Request) -> web.Response:
        next_polls = ctx.next_polls()
        rows = {r.source: r for r in await ctx.store.sources()}
        names = [s.name for s in ctx.config().all_sources()]
        names += sorted(n for n in rows if n not in names)
        out = []
        for name in names:
            r = rows.get(name)
            polls = await ctx.store.recent_polls(name, limit=data.UPTIME_POLLS)
            out.append(
                {
                    "name": name,
                    "polls": r.polls if r else 0,
                    "last_poll_at": data.ts(r.last_poll_at if r else None),
                    "last_result": r.last_result if r else None,
                    "last_error": r.last_error if r else None,
                    "last_success_at": data.ts(r.last_success_at if r else None),
                    "failures": r.failures if r else 0,
                    "account_count": r.account_count if r else None,
                    "next_poll_at": next_polls.get(name),
                    "recent": [{"at": p.at, "ok": p.ok, "error": p.error} for p in polls],
                }
            )
        # Bumped by every silence or acknowledgement written (the CLI's too): the page
        # refreshes on it as on a poll.
        return _json({"sources": out, "control_version": await ctx.store.control_version()})

    async def overview(request: web.Request) -> web.Response:
        return _json(await data.overview(ctx))

    async def accounts(request: web.Request) -> web.Response:
        return _json({"accounts": await data.accounts(ctx)})

    async def account(request: web.Request) -> web.Response:
        number = request.match_info["number"]
        try:
            row = await data.find_account(ctx, number, request.query.get("source"))
        except data.UnknownAccountError as exc:
            return _error(404, str(exc))
        alerts = [
            a
            for a in await data.accounts(ctx)
            if a["source"] == row.source and a["account_number"] == row.account_number
        ]
        return _json(alerts[0] if alerts else {})

    async def history(request: web.Request) -> web.Response:
        number = request.match_info["number"]
        query = request.query
        fields = query.getall("field", []) or list(SERIES_FIELDS)
        unknown = [f for f in fields if f not in SERIES_FIELDS]
        if unknown:
            return _error(
                400, f"field: unknown {', '.join(unknown)} (one of {', '.join(SERIES_FIELDS)})"
            )
        now = ctx.now()
        try:
            since = parse_moment(query.get("since", "1d"), now).timestamp()
            until = (
                parse_moment(query["until"], now).timestamp()
                if "until" in query
                else now.timestamp()
            )
        except ValueError as exc:
            return _error(400, f"since/until: {exc}")
        if since >= until:
            return _error(400, "since must be before until")
        try:
            points = int(query.get("points", MAX_POINTS))
        except ValueError:
            return _error(400, "points: not a whole number")
        if not 4 <= points <= 10_000:
            return _error(400, "points: must be between 4 and 10000")
        try:
            row = await data.find_account(ctx, number, query.get("source"))
        except data.UnknownAccountError as exc:
            return _error(404, str(exc))
        series = await data.history(ctx, row, fields, since=since, until=until, limit=points)
        return _json(history_json(row, since, until, series))

    async def alerts(request: web.Request) -> web.Response:
        return _json(await alerts_page(ctx))

    app.router.add_get(f"{PREFIX}/sources", sources)
    app.router.add_get(f"{PREFIX}/overview", overview)
    app.router.add_get(f"{PREFIX}/accounts", accounts)
    app.router.add_get(f"{PREFIX}/accounts/{{number}}", account)
    app.router.add_get(f"{PREFIX}/accounts/{{number}}/history", history)
    app.router.add_get(f"{PREFIX}/alerts", alerts)
