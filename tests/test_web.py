"""The dashboard's pages and JSON API (monitor/web) on a real server over a real SQLite store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from web_helpers import API, EVIL, NOW, PAGES, SECRETS, serving_dashboard

from monitor.encoding import loads
from monitor.web.pages import CSP, money, signed_money


async def test_the_overview_lists_accounts_with_money_changes_and_the_uptime_bar(
    tmp_path: Path,
) -> None:
    """Both accounts, money as money, the day's change, the restriction badge, the firing
    alert, the failed poll in the uptime bar with its error, and totals."""
    async with serving_dashboard(tmp_path) as web:
        status, html, headers = await web.get("/")
    assert status == 200
    assert headers["Content-Security-Policy"] == CSP
    assert 'href="/accounts/A-1?source=default"' in html
    assert 'href="/accounts/B-2?source=default"' in html
    assert "$5,100.00" in html  # A-1's cash
    assert "\u2212$100.00" in html  # its change over 24 h (5,200.00 a day ago)
    assert 'class="badge r-restricted"' in html
    assert ">restricted</span>" in html
    assert 'class="pill firing"' in html
    assert "HTTP 503 from the API" in html  # the failed poll, on hover
    assert html.count('class="ok"') == 5
    assert "$5,200.50" in html  # cash across both accounts
    assert "in 30 s" in html  # the next poll


async def test_every_vendor_string_is_escaped_and_no_secret_is_rendered(tmp_path: Path) -> None:
    """The restriction reason carries markup: every page escapes it (the API gives it as the
    JSON string it is, served as application/json with nosniff); the config's secrets (API
    token, webhook URLs, HMAC key) appear nowhere."""
    async with serving_dashboard(tmp_path) as web:
        bodies = [(await web.get(path))[1] for path in PAGES[:3] + API]
    for body in bodies[:3]:
        assert "<script>alert" not in body
        assert "<img src=x" not in body
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in bodies[2]
    assert "<th>&lt;i&gt;new_field&lt;/i&gt;</th><td>&lt;u&gt;vendor&lt;/u&gt;</td>" in bodies[2]
    assert "<u>" not in bodies[2]
    assert EVIL in loads(bodies[5])["accounts"][0]["record"]["restriction_reason"]


async def test_the_account_page_draws_the_dip_the_restriction_and_the_alert(
    tmp_path: Path,
) -> None:
    """Over 7 days: a chart per field with a point at the dip, the restricted period and
    the alert episode as bands on the same axis, and the notification with its deliveries."""
    async with serving_dashboard(tmp_path) as web:
        status, html, _ = await web.get("/accounts/A-1?range=7d")
    assert status == 200
    assert 'data-field="cash"' in html
    assert re.search(r'<path class="line" d="M[0-9.]+ [0-9.]+H', html)
    assert "$12.34 at " in html  # the dip's hover title
    assert 'class="band restricted"' in html
    assert 'class="band alert"' in html
    assert "ops: delivered" in html
    assert "chat: retrying (1)" in html
    # Every attempt on hover (from the notification record).
    assert 'title="2024-05-08 09:00:01 UTC: retry (HTTP 502 from chat)"' in html
    assert 'aria-current="page">7d<' in html


@pytest.mark.parametrize(
    ("path", "status"),
    [("/accounts/NOPE", 404), ("/accounts/A-1?range=1y", 400), ("/accounts/A-1?source=x", 404)],
)
async def test_the_account_page_refuses_what_it_cannot_show(
    tmp_path: Path, path: str, status: int
) -> None:
    async with serving_dashboard(tmp_path) as web:
        got, _, headers = await web.get(path)
    assert got == status
    assert headers["Content-Security-Policy"] == CSP


async def test_the_alerts_page_shows_firing_deliveries_mutes_and_a_place_for_silences(
    tmp_path: Path,
) -> None:
    from web_helpers import web_config

    cfg = web_config(mute=[{"name": "night", "start": "22:00", "end": "06:00", "timezone": "UTC"}])
    async with serving_dashboard(tmp_path, cfg=cfg) as web:
        status, html, _ = await web.get("/alerts")
    assert status == 200
    assert '<span class="pill firing">restricted</span>' in html
    assert "chat: retrying (1)" in html
    assert 'id="silences"' in html
    assert "<strong>night</strong>" in html
    assert "closed" in html  # noon: the night window is closed, and opens next at 22:00
    assert "2024-05-08 22:00:00 UTC" in html


async def test_the_history_api_returns_typed_downsampled_series(tmp_path: Path) -> None:
    async with serving_dashboard(tmp_path) as web:
        status, body, _ = await web.get(
            "/api/v1/accounts/A-1/history?field=cash&field=restriction&since=7d&points=10"
        )
    assert status == 200
    data = loads(body)
    cash, restriction = data["series"]
    assert cash["field"] == "cash"
    assert cash["money"] is True
    assert [str(p[1]) for p in cash["points"]] == [
        "5000.00",  # in force a week ago, at the range's start
        "5200.00",
        "12.34",
        "5100.00",
        "5100.00",  # carried to the range's end
    ]
    assert cash["points"][0][0] == data["since"]
    assert data["until"] == NOW.timestamp()
    assert [p[1] for p in restriction["points"]] == ["none", "restricted", "restricted"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("field=equity", "field: unknown equity"),
        ("since=yesterday", "since/until"),
        ("since=1h&until=2d", "since must be before until"),
        ("points=2", "points: must be between 4 and 10000"),
        ("points=many", "points: not a whole number"),
    ],
)
async def test_the_history_api_names_a_bad_parameter(
    tmp_path: Path, query: str, message: str
) -> None:
    async with serving_dashboard(tmp_path) as web:
        status, body, _ = await web.get(f"/api/v1/accounts/A-1/history?{query}")
    assert status == 400
    assert message in loads(body)["error"]


async def test_ui_false_leaves_the_pages_out_and_keeps_the_api(tmp_path: Path) -> None:
    async with serving_dashboard(tmp_path, ui=False) as web:
        for path in PAGES:
            assert (await web.get(path))[0] == 404, path
        for path in API:
            assert (await web.get(path))[0] == 200, path


@pytest.mark.parametrize("path", PAGES + API)
async def test_every_route_answers(tmp_path: Path, path: str) -> None:
    async with serving_dashboard(tmp_path) as web:
        status, _, headers = await web.get(path)
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_money_is_formatted_as_money() -> None:
    assert money(None) == "—"
    assert money("1234567.5") == "$1,234,567.50"
    assert money(-5) == "\u2212$5.00"
    assert signed_money(12) == "+$12.00"
    assert signed_money(0) == "$0.00"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/accounts/NOPE", "/api/v1/accounts/NOPE/history", "/api/v1/accounts/A-1?source=x"],
)
async def test_the_api_answers_404_for_an_unknown_account(tmp_path: Path, path: str) -> None:
    async with serving_dashboard(tmp_path) as web:
        status, body, _ = await web.get(path)
    assert status == 404
    assert "no account" in loads(body)["error"]


async def test_a_digest_in_the_notification_list_is_named_and_summed_up(tmp_path: Path) -> None:
    """Neither the page nor the API shows a digest as a rule-less, status-less alert."""
    from sinks_helpers import make_digest

    from monitor import digest_render

    digest = make_digest()
    async with serving_dashboard(tmp_path) as web:
        await web.store.queue_digest(
            digest.payload(), ["chat"], summary="s", now=NOW.timestamp() + 1
        )
        _, html, _ = await web.get("/alerts")
        _, body, _ = await web.get("/api/v1/alerts")
    row = next(line for line in html.splitlines() if "digest close" in line)
    assert '<span class="pill digest">digest</span>' in row
    assert "Total of 2 accounts: value 2,200.00 (+200.00, +10.00%)" in row
    [item] = [n for n in loads(body)["notifications"] if n["id"] == "d-1"]
    assert (item["rule"], item["status"], item["kind"]) == ("digest close", "digest", "digest")
    assert item["summary"] == digest_render.summary(digest)
