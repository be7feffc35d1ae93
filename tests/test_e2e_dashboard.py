"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the real
CLI (``run``) polling the simulator.

One browser for the module (one test walks the pages): the overview lists both accounts; a
restriction set through the simulator's control endpoint appears on the open page without a
reload; the account page's charts have points; the alerts page shows the alert, and a silence
added with the CLI meanwhile appears on it without a reload; the page logs
no console error and asks no host but the daemon's (any other request is aborted and fails
the test). Screenshots of each page are saved as artefacts in the test's folder (and in
``$BALANCE_MONITOR_SCREENSHOTS`` when set). ``history`` reads the same data while the daemon runs.

Chromium is ``/usr/bin/chromium`` (``.ci/run`` installs it); without it the test is skipped,
unless ``BALANCE_MONITOR_REQUIRE_BROWSER`` is set (as in CI), where it fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from e2e_helpers import (
    COR,
    RESTRICTION_RULE,
    VISION,
    Cli,
    MakeConfig,
    SimControl,
    account,
    eventually,
)

from monitor.encoding import loads

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.e2e

TOKEN = "dash-e2e-token"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_ENV = "BALANCE_MONITOR_REQUIRE_BROWSER"
REASON = '<b>PDT</b> "flag" & more'
SILENCE_COMMENT = "<i>broker</i> maintenance & more"
#: How long the open page may take to show what a poll saw (polls are 1 s apart).
LIVE = 12_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _browser_or_skip() -> None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:  # pragma: no cover - the test extra has it
        missing = "playwright (the test extra)"
    else:
        missing = "" if CHROMIUM.exists() else str(CHROMIUM)
    if missing:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{missing} is missing and {REQUIRE_ENV} is set")
        pytest.skip(f"{missing} is not installed")


async def test_the_dashboard_in_a_browser(
    tmp_path: Path, sim: SimControl, cli: Cli, make_config: MakeConfig
) -> None:
    _browser_or_skip()
    from playwright.async_api import Request, Route, async_playwright, expect

    port = _free_port()
    origin = f"127.0.0.1:{port}"
    path = make_config(rules=RESTRICTION_RULE + f'\n[http]\nlisten = "{origin}"\n')
    daemon = await cli.start("run", "--config", path)
    await daemon.wait_event("started")
    await daemon.wait_event("baseline_recorded")

    foreign: list[str] = []
    problems: list[str] = []
    shots = [tmp_path]
    if extra := os.environ.get("BALANCE_MONITOR_SCREENSHOTS"):
        shots.append(Path(extra))

    async def only_the_daemon(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc != origin:
            foreign.append(request.url)
            await route.abort()
        else:
            await route.continue_()

    async def shoot(page: Page, name: str) -> None:
        for folder in shots:
            folder.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 900})
            await context.route("**/*", only_the_daemon)
            page = await context.new_page()
            page.set_default_timeout(LIVE)
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

            # Overview: both accounts, then a restriction shows up without a reload.
            await page.goto(f"http://{origin}/")
            rows = page.locator("table.accounts tbody tr")
            await expect(rows).to_have_count(2)
            await expect(page.locator(f'tr[data-account="{VISION}"]')).to_be_visible()
            await expect(page.locator(f'tr[data-account="{COR}"]')).to_be_visible()
            await expect(page.locator("#live")).to_be_visible(timeout=LIVE)
            await page.evaluate("window.notReloaded = true")
            await sim.set_accounts(
                [
                    account(VISION, restriction="restricted", restriction_reason=REASON),
                    account(COR, trade_platform="transaq", margin_type="cash"),
                ]
            )
            badge = page.locator(f'tr[data-account="{VISION}"] .badge')
            await expect(badge).to_have_text("restricted", timeout=LIVE)
            await expect(badge).to_have_attribute("title", REASON)
            assert await page.evaluate("window.notReloaded === true")
            local = await page.locator("time").first.text_content()
            assert local is not None
            assert "UTC" not in local  # app.js wrote it in the browser's zone
            await shoot(page, "overview")

            # Account: charts with points, the restricted period behind them.
            await page.click(f'tr[data-account="{VISION}"] a')
            await expect(page.locator("h1")).to_contain_text(VISION)
            cash = page.locator('figure[data-field="cash"]')
            await expect(cash.locator("path.line")).to_have_count(1)
            assert await cash.locator("circle.pt").count() >= 1
            await expect(page.locator("rect.band.restricted").first).to_be_attached()
            await shoot(page, "account")

            # Alerts: the restriction's notification, delivered to the webhook.
            await page.click('nav a[href="/alerts"]')
            notified = page.locator("tbody tr", has_text="restriction-changed").first
            await expect(notified).to_contain_text("hook: delivered")
            await expect(page.locator("#silences")).to_be_attached()

            # A silence added with the CLI while the daemon runs shows on the open page,
            # without a reload, with its matcher, author and comment (escaped).
            await page.evaluate("window.notReloaded = true")
            added = await cli.run(
                "silence", "add", "--rule", "restriction-changed", "--account", "*@vision",
                "--for", "2h", "--comment", SILENCE_COMMENT, "--author", "e2e-alice",
                "--config", path,
            )  # fmt: skip
            assert added.code == 0, added.output
            silence = page.locator(f"#silence-{added.stdout.strip()}")
            await expect(silence).to_contain_text("active", timeout=LIVE)
            await expect(silence).to_contain_text("rule=restriction-changed")
            await expect(silence).to_contain_text("by e2e-alice")
            await expect(silence).to_contain_text(SILENCE_COMMENT)
            await expect(silence).to_contain_text("holds 0 notifications")
            assert "UTC" not in (await silence.locator("time").text_content() or "UTC")
            assert await page.evaluate("window.notReloaded === true")
            await shoot(page, "alerts")
        finally:
            await browser.close()

    assert foreign == []
    assert problems == []

    # The same series from the command line, while the daemon holds the database.
    exported = await cli.run("history", VISION, "--config", path, "--format", "json")
    assert exported.code == 0, exported.stderr
    series = {s["field"]: s for s in loads(exported.stdout)["series"]}
    assert [p[1] for p in series["restriction"]["points"]][:2] == ["none", "restricted"]
    assert daemon.running


async def test_the_demo_serves_the_dashboard_with_its_story(cli: Cli) -> None:
    """``demo`` prints the dashboard's 127.0.0.1 address; within its story the account's
    history shows the cash dip and the restricted period, and the alerts answer lists the
    notifications firing and resolved."""
    demo = await cli.start("demo", "--interval", "1s", "--duration", "25")

    def address() -> str | None:
        match = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)/", demo.stdout)
        return match.group(1) if match else None

    url = await eventually(address, what="the dashboard's address")
    account = f"{url}/api/v1/accounts/{quote(VISION, safe='')}"
    story: dict[str, object] = {}
    async with aiohttp.ClientSession() as session:

        async def told() -> bool:
            try:
                async with session.get(f"{account}/history?since=5m") as response:
                    history = loads(await response.read())
                async with session.get(f"{url}/api/v1/alerts") as response:
                    alerts = loads(await response.read())
            except aiohttp.ClientConnectionError:
                return False  # the banner comes before the server listens
            series = {s["field"]: s for s in history.get("series", [])}
            if not series:
                return False  # no baseline yet
            cash = [str(p[1]) for p in series["cash"]["points"]]
            restriction = [p[1] for p in series["restriction"]["points"]]
            statuses = {n["status"] for n in alerts["notifications"]}
            story.update(cash=cash, restriction=restriction, statuses=statuses)
            return (
                "512.25" in cash
                and "restricted" in restriction
                and restriction[-1] == "none"
                and statuses == {"firing", "resolved"}
            )

        started = time.monotonic()
        while not await told():
            assert time.monotonic() - started < 20, story
            await asyncio.sleep(0.5)
        async with session.get(f"{url}/accounts/{quote(VISION, safe='')}") as response:
            page = await response.text()
    assert 'class="band restricted"' in page
    await demo.close()
