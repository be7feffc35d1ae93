"""The dashboard's pages: server-rendered HTML (Jinja2, autoescaped) and their static files.

``/`` (overview), ``/accounts/{number}`` (charts and alert history) and ``/alerts``. Every
vendor string goes through Jinja's autoescape; charts are SVG computed by
:mod:`monitor.web.chart`. The page works with JavaScript off; ``/static/app.js`` (our own, a
few lines) shows times in the browser's zone and refreshes the page's content within a few
seconds of a poll. Every response carries a strict Content-Security-Policy.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from markupsafe import Markup

from monitor import __version__
from monitor.history import RANGES
from monitor.web import data
from monitor.web.alerts import alerts_page
from monitor.web.chart import sparkline, step_chart
from monitor.web.context import WebContext

__all__ = ["CSP", "add_routes", "environment"]

#: Nothing but our own origin: no inline script or style, no third party, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}
MINUS = "\u2212"
FIELD_LABELS = {
    "account_value_total": "Account value",
    "cash": "Cash",
    "cash_to_withdraw": "Cash to withdraw",
    "day_trading_buying_power": "Day-trading buying power",
    "margin_buying_power": "Margin buying power",
    "non_margin_buying_power": "Non-margin buying power",
    "position_market_value": "Position market value",
    "unsettled_cash": "Unsettled cash",
    "daytrades_count": "Day trades",
}


def money(value: Any) -> str:
    """``$12,345.67``, ``-$5.00`` (with a minus sign); ``—`` when there is no number."""
    if value is None or isinstance(value, bool):
        return "—"
    try:
        d = Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        return str(value)
    return f"{MINUS if d < 0 else ''}${abs(d):,.2f}"


def signed_money(value: Any) -> str:
    if value is None:
        return "—"
    d = Decimal(value)
    return ("+" if d > 0 else "") + money(d)


def value_text(field: str, value: Any) -> str:
    if field in FIELD_LABELS and field != "daytrades_count":
        return money(value)
    return "—" if value is None else str(value)


def utc_text(at: float | None) -> str:
    if at is None:
        return "—"
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_tag(at: float | None) -> Markup:
    """A ``<time>`` in UTC that app.js shows in the browser's zone (UTC stays on hover)."""
    if at is None:
        return Markup("—")
    iso = datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")
    text = utc_text(at)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, text, text)


def age(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = max(0, int(now - at))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def until(at: float | None, now: float) -> str:
    if at is None:
        return "—"
    seconds = int(at - now)
    return (
        "now" if seconds <= 0 else f"in {seconds} s" if seconds < 120 else f"in {seconds // 60} min"
    )


def _urlpart(text: str) -> str:
    """A path segment or query value: every reserved character escaped (``/`` too)."""
    return quote(str(text), safe="")


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money, signed_money=signed_money, time=time_tag, utc=utc_text, urlpart=_urlpart
    )
    env.globals.update(
        age=age,
        until=until,
        value_text=value_text,
        labels=FIELD_LABELS,
        sparkline=sparkline,
        version=__version__,
        ranges=list(RANGES),
    )
    return env


def render(name: str, status: int = 200, **context: Any) -> web.Response:
    """A page, compressed when the browser accepts it (an overview of many accounts is large)."""
    html = environment().get_template(name).render(**context)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    response.enable_compression()
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)


def add_routes(app: web.Application, ctx: WebContext) -> None:
    async def overview(request: web.Request) -> web.Response:
        return render("overview.html", page="overview", view=await data.overview(ctx))

    async def account(request: web.Request) -> web.Response:
        number = request.match_info["number"]
        source = request.query.get("source")
        range_name = request.query.get("range", "")
        if range_name and range_name not in RANGES:
            return render("error.html", 400, page="", message=f"unknown range {range_name!r}")
        try:
            row = await data.find_account(ctx, number, source)
        except data.UnknownAccountError as exc:
            return render("error.html", 404, page="", message=str(exc))
        view = await data.account_page(ctx, row, range_name or None)
        return render("account.html", page="account", view=view, charts=_charts(view))

    async def alerts(request: web.Request) -> web.Response:
        return render("alerts.html", page="alerts", view=await alerts_page(ctx))

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound
        body = resources.files("monitor.web").joinpath("static", name).read_bytes()
        return web.Response(
            body=body,
            content_type=STATIC[name],
            headers={"Cache-Control": "public, max-age=300"},
        )

    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", overview)
    app.router.add_get("/accounts/{number}", account)
    app.router.add_get("/alerts", alerts)
    app.router.add_get("/static/{name}", static)


def _charts(view: dict[str, Any]) -> list[dict[str, Any]]:
    """One chart per series, with restricted periods and alert episodes behind the line."""
    since, end = view["since"], view["until"]
    bands = [
        (a, b, "restricted", f"{kind} from {utc_text(a)} to {utc_text(b)}")
        for a, b, kind in view["restricted"]
    ]
    bands += [
        (
            e["start"],
            e["end"],
            "event" if e["start"] == e["end"] else "alert",
            f"{e['rule']}: {utc_text(e['start'])}"
            + (
                ""
                if e["start"] == e["end"]
                else f" to {'now' if e['ongoing'] else utc_text(e['end'])}"
            ),
        )
        for e in view["episodes"]
    ]
    charts = []
    for series in view["series"]:
        name = series.field

        def fmt(v: Any, name: str = name) -> str:
            return value_text(name, v)

        charts.append(
            {
                "field": name,
                "label": FIELD_LABELS.get(name, name),
                "last": fmt(series.points[-1][1]) if series.points else "—",
                "total": series.total,
                "chart": step_chart(series.points, since=since, until=end, fmt=fmt, bands=bands),
            }
        )
    return charts
