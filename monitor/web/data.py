"""What each page and API answer shows, read from the store as plain data.

The same dictionaries are the JSON of ``/api/v1/...`` (:mod:`monitor.web.api`) and what the
templates render (:mod:`monitor.web.pages`): money stays ``Decimal``, times are epoch seconds
(``*_at``) the templates and clients format themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from monitor.history import (
    RANGES,
    Series,
    UnknownAccountError,
    account_history,
    build_series,
    series_value,
)
from monitor.history import find_account as history_lookup
from monitor.models import SERIES_FIELDS
from monitor.store.base import AccountRow
from monitor.web.alerts import DAY, account_notifications, episodes, kept_alerts
from monitor.web.context import WebContext

#: The money columns of the overview (buying power: margin, else cash-account).
OVERVIEW_FIELDS: tuple[str, ...] = (
    "account_value_total",
    "cash",
    "cash_to_withdraw",
    "margin_buying_power",
    "non_margin_buying_power",
)
#: Polls in the uptime bar; points in a sparkline.
UPTIME_POLLS = 90
SPARK_POINTS = 48

__all__ = ["UnknownAccountError", "account_page", "accounts", "overview"]


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal | int):
        return Decimal(value)
    if isinstance(value, float | str):
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return None
    return None


def buying_power(record: Mapping[str, Any]) -> tuple[str, Decimal | None]:
    """The buying power people mean: margin buying power of a margin account, else the cash
    account's (``non_margin_buying_power``); with the field it came from."""
    margin = record.get("margin_type")
    if margin != "cash" and record.get("margin_buying_power") is not None:
        return "margin_buying_power", _number(record.get("margin_buying_power"))
    return "non_margin_buying_power", _number(record.get("non_margin_buying_power"))


# --------------------------------------------------------------------------- overview


async def overview(ctx: WebContext) -> dict[str, Any]:
    """Every source with its health, last polls and accounts; totals across accounts."""
    now = ctx.now().timestamp()
    config = ctx.config()
    stored = {s.source: s for s in await ctx.store.sources()}
    names = [spec.name for spec in config.all_sources()]
    names += sorted(n for n in stored if n not in names)
    accounts: dict[str, list[AccountRow]] = defaultdict(list)
    for row in await ctx.store.accounts():
        accounts[row.source].append(row)
    alerts: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for a in await kept_alerts(ctx):
        alerts[(a["source"], a["account_number"])].append(a)
    next_polls = ctx.next_polls()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    sources = []
    for name in names:
        health = stored.get(name)
        rows = await ctx.store.series(name, None, OVERVIEW_FIELDS, since=now - DAY, until=now)
        by_account: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            by_account[r.account_number].append(r)
        listed = []
        source_totals: dict[str, Decimal] = defaultdict(Decimal)
        for account in accounts.get(name, []):
            item = _overview_account(account, by_account.get(account.account_number, []), now)
            item["alerts"] = alerts.get((name, account.account_number), [])
            for key, value in item["values"].items():
                if value is not None:
                    source_totals[key] += value
                    totals[key] += value
            listed.append(item)
        polls = await ctx.store.recent_polls(name, limit=UPTIME_POLLS)
        sources.append(
            {
                "name": name,
                "last_poll_at": ts(health.last_poll_at if health else None),
                "last_result": health.last_result if health else None,
                "last_error": health.last_error if health else None,
                "last_success_at": ts(health.last_success_at if health else None),
                "failures": health.failures if health else 0,
                "next_poll_at": next_polls.get(name),
                "polls": [{"at": p.at, "ok": p.ok, "error": p.error} for p in polls],
                "alerts": alerts.get((name, None), []),
                "accounts": listed,
                "totals": dict(source_totals),
            }
        )
    return {"now": now, "sources": sources, "totals": dict(totals)}


def ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _overview_account(account: AccountRow, rows: Sequence[Any], now: float) -> dict[str, Any]:
    record = account.record
    bp_field, bp = buying_power(record)
    values = {
        "account_value_total": _number(record.get("account_value_total")),
        "cash": _number(record.get("cash")),
        "cash_to_withdraw": _number(record.get("cash_to_withdraw")),
        "buying_power": bp,
    }
    fields = {
        "account_value_total": "account_value_total",
        "cash": "cash",
        "cash_to_withdraw": "cash_to_withdraw",
        "buying_power": bp_field,
    }
    change: dict[str, Decimal | None] = {}
    for key, name in fields.items():
        start = None  # the value in force a day ago (None: the series began since)
        for r in rows:
            if r.field == name and r.at <= now - DAY:
                start = _number(series_value(name, r.value))
        now_value = values[key]
        change[key] = now_value - start if now_value is not None and start is not None else None
    [spark] = build_series(
        rows,
        source=account.source,
        account_number=account.account_number,
        fields=["account_value_total"],
        since=now - DAY,
        until=now,
        limit=SPARK_POINTS,
    )
    return {
        "account_number": account.account_number,
        "restriction": record.get("restriction"),
        "restriction_reason": record.get("restriction_reason"),
        "margin_type": record.get("margin_type"),
        "observed_at": account.observed_at.timestamp(),
        "values": values,
        "change_24h": change,
        "sparkline": [[t, v] for t, v in spark.points],
        # The sparkline spans the day, or less when the history is younger.
        "sparkline_since": spark.points[0][0] if spark.points else now - DAY,
    }


# --------------------------------------------------------------------------- accounts


async def accounts(ctx: WebContext) -> list[dict[str, Any]]:
    """Every stored account with its record and its alerts."""
    alerts: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for a in await kept_alerts(ctx):
        alerts[(a["source"], a["account_number"])].append(a)
    return [
        {
            "source": row.source,
            "account_number": row.account_number,
            "observed_at": row.observed_at.timestamp(),
            "record": row.record,
            "alerts": alerts.get((row.source, row.account_number), []),
        }
        for row in await ctx.store.accounts()
    ]


async def find_account(ctx: WebContext, number: str, source: str | None) -> AccountRow:
    return await history_lookup(ctx.store, number, source)


async def history(
    ctx: WebContext,
    account: AccountRow,
    fields: Sequence[str],
    *,
    since: float,
    until: float,
    limit: int | None,
) -> list[Series]:
    return await account_history(
        ctx.store,
        source=account.source,
        account_number=account.account_number,
        fields=fields,
        since=since,
        until=until,
        limit=limit,
    )


async def first_seen(ctx: WebContext, account: AccountRow) -> float | None:
    """When the account's history begins (within the longest range): its first change, or
    ``None`` when it has not changed since it was first polled."""
    now = ctx.now().timestamp()
    start = now - max(RANGES.values()).total_seconds()
    rows = await ctx.store.series(
        account.source, [account.account_number], SERIES_FIELDS, since=start, until=now
    )
    return min((r.at for r in rows if r.at > start), default=None)


def fitting_range(first: float | None, now: float) -> str:
    """The account page's default range: the shortest that holds the account's whole history
    (at least 1h; 90d at most; 1d for an account that never changed)."""
    if first is None:
        return "1d"
    for name, span in RANGES.items():
        if now - span.total_seconds() <= first:
            return name
    return list(RANGES)[-1]


async def account_page(
    ctx: WebContext, account: AccountRow, range_name: str | None
) -> dict[str, Any]:
    """One account: its record, its series over the range (by default the shortest that
    holds its history; never from before its history begins), restriction changes, alert
    episodes and notifications."""
    now = ctx.now().timestamp()
    first = await first_seen(ctx, account)
    range_name = range_name or fitting_range(first, now)
    since = now - RANGES[range_name].total_seconds()
    if first is not None and since < first < now:
        since = first - min(60.0, (now - first) * 0.05)  # the chart begins with the history
    fields = [f for f in SERIES_FIELDS if f not in ("restriction", "restriction_reason")]
    series = await history(ctx, account, fields, since=since, until=now, limit=1000)
    restriction, reason = await history(
        ctx, account, ["restriction", "restriction_reason"], since=since, until=now, limit=None
    )
    reasons = dict(reason.points)
    changes: list[dict[str, Any]] = []
    for at, value in restriction.points:
        if changes and changes[-1]["restriction"] == value:
            continue
        changes.append({"at": at, "restriction": value, "reason": reasons.get(at)})
    notifications = await account_notifications(ctx, account, now)
    current = [
        a
        for a in await kept_alerts(ctx)
        if a["source"] == account.source and a["account_number"] == account.account_number
    ]
    return {
        "source": account.source,
        "account_number": account.account_number,
        "observed_at": account.observed_at.timestamp(),
        "record": account.record,
        "range": range_name,
        "since": since,
        "until": now,
        "series": [s for s in series if s.points],
        "restriction_changes": changes,
        "restricted": _restricted_spans(restriction.points, now),
        "episodes": episodes(notifications, current, now),
        "notifications": notifications,
        "alerts": current,
    }


def _restricted_spans(points: Iterable[tuple[float, Any]], until: float) -> list[list[Any]]:
    """[start, end, restriction] of every span the account was not ``none``."""
    spans: list[list[Any]] = []
    for at, value in points:
        if spans and spans[-1][1] is None:
            if value == spans[-1][2]:
                continue
            spans[-1][1] = at
        if value not in (None, "none"):
            spans.append([at, None, value])
    if spans and spans[-1][1] is None:
        spans[-1][1] = until
    return spans
