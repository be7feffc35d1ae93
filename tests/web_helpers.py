"""The dashboard on a real server: a SQLite store holding a few polls, alerts and
notifications, served by :class:`~monitor.health.HealthServer` on 127.0.0.1 with a fixed clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from config_helpers import SECRETS, config
from pydantic import SecretStr
from sinks_helpers import make_notification
from store_helpers import commit_poll

from monitor.config import Config, config_from_dict
from monitor.cycle import PollRecord, SeriesPoint
from monitor.health import HealthServer, Readiness
from monitor.metrics import Metrics
from monitor.models import ActiveAlert, Status
from monitor.parse import parse_records
from monitor.rules import SourceHealth
from monitor.store import Store, open_store
from monitor.web import WebContext

SOURCE = "default"
NOW = datetime(2024, 5, 8, 12, 0, tzinfo=UTC)
#: A vendor string that would run as script if it were not escaped.
EVIL = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'
#: Every route of the dashboard and its API (the account is one the store holds).
PAGES = ["/", "/alerts", "/accounts/A-1", "/static/app.js", "/static/app.css"]
API = [
    "/api/v1/sources",
    "/api/v1/overview",
    "/api/v1/accounts",
    "/api/v1/accounts/A-1",
    "/api/v1/accounts/A-1/history",
    "/api/v1/alerts",
]


def record(number: str, cash: str, **extra: Any) -> dict[str, Any]:
    return {
        "account_number": number,
        "margin_type": "cash",
        "restriction": "none",
        "account_value_total": Decimal(cash) + 1000,
        "cash": Decimal(cash),
        "cash_to_withdraw": Decimal(cash),
        "non_margin_buying_power": Decimal(cash),
        "daytrades_count": 0,
        **extra,
    }


async def fill(store: Store) -> None:
    """Eight days of history for A-1 (cash dips for one poll, then a restriction with a
    hostile reason), B-2 that never moves, a failed poll, a firing alert and a notification
    delivered to one sink and retrying on another."""
    start = NOW - timedelta(days=8)
    steps = [
        (start, record("A-1", "5000.00"), True),
        (NOW - timedelta(hours=30), record("A-1", "5200.00"), True),
        (NOW - timedelta(hours=3), record("A-1", "12.34"), True),
        (NOW - timedelta(hours=2), record("A-1", "5100.00"), True),
        (
            NOW - timedelta(hours=1),
            record(
                "A-1",
                "5100.00",
                restriction="restricted",
                restriction_reason=EVIL,
                **{"<i>new_field</i>": "<u>vendor</u>"},
            ),
            True,
        ),
        (NOW - timedelta(minutes=2), None, False),
    ]
    b2 = parse_records([record("B-2", "100.50")]).accounts["B-2"]
    before: dict[str, Any] = {}
    for i, (at, rec, ok) in enumerate(steps):
        upserts = [parse_records([rec]).accounts["A-1"]] if rec is not None else []
        if i == 0:
            upserts.append(b2)
        series: list[SeriesPoint] = []
        if rec is not None and i > 0:  # the baseline writes no history: its records are it
            fields = (
                "cash",
                "cash_to_withdraw",
                "account_value_total",
                "non_margin_buying_power",
                "restriction",
                "restriction_reason",
                "daytrades_count",
            )
            series = [
                ("A-1", f, before.get(f), rec.get(f)) for f in fields if rec.get(f) != before.get(f)
            ]
        if rec is not None:
            before = rec
        await commit_poll(
            store,
            SOURCE,
            poll=PollRecord(
                at,
                ok=ok,
                error=None if ok else "HTTP 503 from the API",
                account_count=2 if ok else None,
            ),
            health=SourceHealth(0 if ok else 1),
            upserts=upserts,
            series=series,
            active={
                ("restricted", "A-1"): ActiveAlert(
                    "restricted", "A-1", "fp-r", NOW - timedelta(hours=1), "firing"
                )
            }
            if i == 4
            else None,
            outbox=[(_dip(), ("ops", "chat"))] if i == 2 else [],
        )
    rows = await store.deliveries(limit=10)
    by_sink = {r.sink: r for r in rows}
    t = (NOW - timedelta(hours=3)).timestamp()
    await store.mark(by_sink["ops"].seq, "delivered", now=t + 1)
    await store.mark(
        by_sink["chat"].seq,
        "pending",
        now=t + 1,
        error="HTTP 502 from chat",
        next_attempt_at=t + 60,
    )


def _dip() -> Any:
    at = NOW - timedelta(hours=3)
    return make_notification(
        account_number="A-1",
        fingerprint="fp-dip",
        observed_at=at,
        started_at=at,
        status=Status.FIRING,
        summary="A-1: cash_to_withdraw fell to 12.34 (< 1000)",
    )


def web_config(**sections: Any) -> Config:
    return config_from_dict(config(**sections), base_dir=Path("/"))


@dataclass
class Served:
    url: str
    session: aiohttp.ClientSession
    store: Store

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, Any]:
        async with self.session.get(self.url + path, **kwargs) as response:
            return response.status, await response.text(), response.headers


@asynccontextmanager
async def serving_dashboard(
    tmp_path: Path, *, ui: bool = True, token: str | None = None, cfg: Config | None = None
) -> AsyncIterator[Served]:
    store = await open_store(tmp_path / "state.db")
    try:
        await fill(store)
        loaded = cfg if cfg is not None else web_config()
        ctx = WebContext(store, lambda: loaded, lambda: {SOURCE: NOW.timestamp() + 30}, lambda: NOW)
        server = HealthServer(
            Metrics(),
            lambda: Readiness(True),
            auth_token=SecretStr(token) if token else None,
            dashboard=ctx,
            ui=ui,
        )
        url = await server.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as session:
                yield Served(url, session, store)
        finally:
            await server.close()
    finally:
        await store.close()


__all__ = ["API", "EVIL", "NOW", "PAGES", "SECRETS", "Served", "serving_dashboard"]
