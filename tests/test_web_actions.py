"""What operators did about alerts, on the dashboard: silences (in force, to start, ended in
the last day, with what each holds), acknowledgements and escalation of firing alerts, and
notifications held by a silence; the same in ``/api/v1/alerts`` and ``/api/v1/silences``.

A real SQLite store behind the real dashboard server on 127.0.0.1 (:mod:`web_helpers`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from config_helpers import restriction, threshold
from sinks_helpers import make_notification
from store_helpers import commit_poll
from web_helpers import EVIL, NOW, SOURCE, Served, serving_dashboard, web_config

from monitor.api_actions import ActionsApi
from monitor.cycle import PollRecord
from monitor.encoding import loads
from monitor.models import ActiveAlert, Notification, Status
from monitor.rules import SourceHealth
from monitor.silences import Ack, Silence
from monitor.status import collect
from monitor.web.pages import utc_text

T = NOW.timestamp()
HOUR = 3600.0
#: low-cash escalates to ops after 15 min, to chat after 1 h.
CFG = web_config(
    rules=[
        threshold(
            escalate=[{"after": "15m", "sinks": ["ops"]}, {"after": "1h", "sinks": ["chat"]}]
        ),
        restriction(name="restricted"),
    ]
)
ACTIVE = Silence(
    "aaaaaaaaaaaa",
    T - HOUR,
    T + 2 * HOUR,
    rule="low-cash",
    account="B-*",
    labels={"team": "risk"},
    comment=f"deploy {EVIL}",
    author="alice",
    created_at=T - HOUR,
)
UPCOMING = Silence("bbbbbbbbbbbb", T + HOUR, T + 3 * HOUR, source=SOURCE, author="", created_at=T)
ENDED = Silence(  # expired by hand two hours ago: still shown, with a note
    "cccccccccccc",
    T - 5 * HOUR,
    T + HOUR,
    rule="restricted",
    author="carol",
    created_at=T - 5 * HOUR,
    expired_at=T - 2 * HOUR,
)
LONG_GONE = Silence("dddddddddddd", T - 3 * 86400, T - 2 * 86400, rule="x", created_at=T - 86400)


@asynccontextmanager
async def acted_on(tmp_path: Path) -> AsyncIterator[Served]:
    """The dashboard's store, plus: the restricted alert on A-1 acknowledged by bob, low-cash
    firing on B-2 for 30 min with its first escalation step sent, four silences, and one
    notification held by the active silence."""
    async with serving_dashboard(tmp_path, cfg=CFG) as web:
        store = web.store
        held = _with_id(
            "n-held",
            rule="low-cash",
            account_number="B-2",
            fingerprint="fp-low",
            observed_at=NOW - timedelta(minutes=30),
            started_at=NOW - timedelta(minutes=30),
            status=Status.FIRING,
            summary="B-2: cash_to_withdraw fell",
        )
        await commit_poll(
            store,
            SOURCE,
            poll=PollRecord(NOW - timedelta(seconds=30), ok=True, error=None, account_count=2),
            health=SourceHealth(0),
            active={
                ("restricted", "A-1"): ActiveAlert(
                    "restricted", "A-1", "fp-r", NOW - timedelta(hours=1), "firing"
                ),
                ("low-cash", "B-2"): ActiveAlert(
                    "low-cash", "B-2", "fp-low", NOW - timedelta(minutes=30), "firing", escalated=1
                ),
            },
            held=[(held, ["chat"], ACTIVE.holder)],
        )
        for silence in (ACTIVE, UPCOMING, ENDED, LONG_GONE):
            await store.add_silence(silence)
        ack = Ack("fp-r", "restricted", "A-1", SOURCE, T - 600, "bob", "on it <b>now</b>")
        assert await store.add_ack(ack, [])
        yield web


async def test_the_alerts_page_lists_silences_in_force_to_start_and_ended_today(
    tmp_path: Path,
) -> None:
    """The active silence first, then the one to start, then the one expired by hand (with a
    note); one that ended two days ago is gone. Each with its matchers, end (a <time> the
    browser shows in its zone, UTC on hover), author, comment (escaped) and what it holds."""
    async with acted_on(tmp_path) as web:
        status, html, _ = await web.get("/alerts")
    assert status == 200
    section = html[html.index('id="silences"') : html.index("<h2>Mute windows")]
    order = [section.index(f'id="silence-{s.id}"') for s in (ACTIVE, UPCOMING, ENDED)]
    assert order == sorted(order)
    assert LONG_GONE.id not in section
    active = section[order[0] : order[1]]
    assert '<span class="pill held">active</span>' in active
    for matcher in ("rule=low-cash", "account=B-*", "team=risk"):
        assert f'<span class="matcher">{matcher}</span>' in active
    assert f'title="{utc_text(ACTIVE.ends_at)}"' in active
    assert "by alice" in active
    assert "deploy &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in active
    assert "holds 1 notification\n" in active
    upcoming = section[order[1] : order[2]]
    assert "starts <time datetime=" in upcoming
    assert "source=default" in upcoming
    assert "by unknown" in upcoming
    assert "holds 0 notifications" in upcoming
    ended = section[order[2] :]
    assert 'class="ended"' in ended
    assert 'ended <time datetime="' in ended
    assert f'title="{utc_text(T - 2 * HOUR)}"' in ended
    assert "expired by hand; ended silences show for 24 h" in ended
    assert '<span class="count">2</span>' in section  # in force or to start
    assert "<script>" not in html


async def test_a_notification_held_by_a_silence_says_so(tmp_path: Path) -> None:
    async with acted_on(tmp_path) as web:
        _, html, _ = await web.get("/alerts")
        body = loads((await web.get("/api/v1/alerts"))[1])
    assert (
        f'for chat · held by <a href="#silence-{ACTIVE.id}">silence {ACTIVE.id}</a> since' in html
    )
    [held] = body["held"]
    assert (held["mute"], held["silence"], held["rule"]) == (ACTIVE.holder, ACTIVE.id, "low-cash")


async def test_firing_alerts_show_their_ack_and_escalation_on_every_page(tmp_path: Path) -> None:
    """The acknowledged alert says by whom, when and why (escaped) on the alerts page, the
    overview and its account page; the escalating one its steps sent, the next step's time
    and sinks."""
    async with acted_on(tmp_path) as web:
        pages = {path: (await web.get(path))[1] for path in ("/alerts", "/", "/accounts/A-1")}
        b2 = (await web.get("/accounts/B-2"))[1]
    ack = (
        f'acknowledged by bob <time datetime="{_iso(T - 600)}" title="{utc_text(T - 600)}">'
        f"{utc_text(T - 600)}</time>: “on it &lt;b&gt;now&lt;/b&gt;”"
    )
    next_at = T - 1800 + HOUR
    escalation = (
        f'escalation 1/2 sent, next <time datetime="{_iso(next_at)}" '
        f'title="{utc_text(next_at)}">{utc_text(next_at)}</time> to chat'
    )
    for path, html in pages.items():
        assert ack in html, path
        assert "<b>now" not in html, path
    assert escalation in pages["/alerts"]
    assert escalation in pages["/"]
    assert escalation in b2
    assert escalation not in pages["/accounts/A-1"]


async def test_the_alerts_api_carries_what_status_computes(tmp_path: Path) -> None:
    """``/api/v1/alerts``: each firing alert's ack and escalation as ``status`` has them (in
    epoch seconds), and the silences with what they hold."""
    async with acted_on(tmp_path) as web:
        body = loads((await web.get("/api/v1/alerts"))[1])
        told = await collect(web.store, NOW, CFG.mute, CFG.rules)
    firing = {a["fingerprint"]: a for a in body["firing"]}
    said = {a["fingerprint"]: a for a in told["alerts_firing"]}
    assert set(firing) == set(said) == {"fp-r", "fp-low"}
    for fp, alert in firing.items():
        assert alert["acknowledged_by"] == said[fp]["acknowledged_by"]
        assert alert["ack_comment"] == said[fp]["ack_comment"]
        assert _iso_or_none(alert["acknowledged_at"]) == _plain(said[fp]["acknowledged_at"])
    assert firing["fp-r"]["acknowledged_by"] == "bob"
    assert firing["fp-low"]["escalation"] == {
        "steps": 2,
        "sent": 1,
        "next_at": T - 1800 + HOUR,
        "next_sinks": ["chat"],
    }
    assert _plain(said["fp-low"]["escalation"]["next_at"]) == _iso(T - 1800 + HOUR)
    assert [(s["id"], s["held"], s["active"], s["ended"]) for s in body["silences"]] == [
        (ACTIVE.id, 1, True, False),
        (UPCOMING.id, 0, False, False),
        (ENDED.id, 0, False, True),
    ]
    assert body["silences"][0]["labels"] == {"team": "risk"}


async def test_the_silences_route_says_how_many_notifications_each_holds(
    tmp_path: Path,
) -> None:
    async with acted_on(tmp_path) as web:
        actions = ActionsApi(store=lambda: web.store, config=lambda: CFG, changed=lambda: None)
        app = web_app(actions)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            # The route reads the wall clock: these silences of 2024 have all ended.
            listed = await (await client.get("/api/v1/silences?all=true")).json()
        finally:
            await client.close()
    held = {s["id"]: s["held"] for s in listed}
    assert held[ACTIVE.id] == 1
    assert held[UPCOMING.id] == 0


async def test_the_sources_route_moves_its_control_version_when_a_silence_is_written(
    tmp_path: Path,
) -> None:
    """What the page watches to refresh by itself: a silence written (by the CLI, through the
    store) changes ``control_version``."""
    async with serving_dashboard(tmp_path) as web:
        before = loads((await web.get("/api/v1/sources"))[1])["control_version"]
        await web.store.add_silence(UPCOMING)
        after = loads((await web.get("/api/v1/sources"))[1])["control_version"]
    assert after != before


def _with_id(ident: str, **changes: Any) -> Notification:
    return replace(make_notification(**changes), id=ident)


def web_app(actions: ActionsApi) -> web.Application:
    app = web.Application()
    actions.add_routes(app)
    return app


def _iso(epoch: Any) -> str:
    return datetime.fromtimestamp(float(epoch), tz=UTC).isoformat().replace("+00:00", "Z")


def _plain(text: str | None) -> str | None:
    return None if text is None else text.replace("+00:00", "Z")


def _iso_or_none(epoch: Any) -> str | None:
    return None if epoch is None else _iso(epoch)


async def test_the_account_history_reads_the_record_beyond_the_outbox_week(
    tmp_path: Path,
) -> None:
    """A notification whose outbox rows were pruned (as they are a week on) is still in the
    account's alert history (from the notification record), newest first, with every
    delivery attempt on hover; its episode (fired, resolved an hour later) is drawn on the
    chart."""
    async with acted_on(tmp_path) as web:
        store = web.store
        fired = NOW - timedelta(hours=20)
        old = _with_id(
            "n-old-fired",
            rule="low-cash",
            account_number="A-1",
            fingerprint="fp-old",
            observed_at=fired,
            started_at=fired,
            status=Status.FIRING,
            summary="A-1: cash_to_withdraw fell, 20 h ago",
        )
        resolved = _with_id(
            "n-old-resolved",
            rule="low-cash",
            account_number="A-1",
            fingerprint="fp-old",
            observed_at=fired + timedelta(hours=1),
            started_at=fired,
            status=Status.RESOLVED,
            summary="A-1: cash_to_withdraw is back, 19 h ago",
        )
        for n, at in ((old, fired), (resolved, fired + timedelta(hours=1))):
            await store.release([(n, "ops", SOURCE)], [], at.timestamp())
            row = await store.next_pending("ops")
            assert row is not None
            t = at.timestamp()
            if n is old:
                await store.mark(row.seq, "pending", now=t + 1, error="HTTP 500 from ops")
            await store.mark(row.seq, "delivered", now=t + 2)
        # As a week on: the finished rows are pruned.
        await store.expire(older_than=T - 8 * 86400, now=T + 7 * 86400 + 1)
        assert {r.id for r in await store.deliveries(limit=100)}.isdisjoint({old.id})
        _, html, _ = await web.get("/accounts/A-1?range=30d")
    table = html[html.index("<h2>Alert history") :]
    assert "A-1: cash_to_withdraw fell, 20 h ago" in table
    assert "A-1: cash_to_withdraw is back, 19 h ago" in table
    first_try = utc_text(fired.timestamp() + 1)
    assert f'title="{first_try}: retry (HTTP 500 from ops)&#10;' in table
    assert "ops: delivered" in table
    assert (
        f"low-cash: {utc_text(fired.timestamp())} to {utc_text(fired.timestamp() + 3600)}" in html
    )
    assert table.index("20 h ago") > table.index("cash_to_withdraw fell to 12.34")
