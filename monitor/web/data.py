"""What each page and API answer shows, read from the store as plain data.

The same dictionaries are the JSON of ``/api/v1/...`` (:mod:`monitor.web.api`) and what the
templates render (:mod:`monitor.web.pages`): money stays ``Decimal``, times are epoch seconds
(``*_at``) the templates and clients format themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from monitor.config import WEEKDAYS, EscalationStep, MuteConfig
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
from monitor.mutes import window_at
from monitor.silences import HOLDER_PREFIX, Ack
from monitor.status import alert_actions, silence_state
from monitor.store.base import AccountRow, AlertRow, DeliveryRow, Store
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
#: How many outbox rows the pages look through (newest first).
DELIVERIES_SEEN = 2000
#: How many notification records (one per sink) the account page looks through.
RECORDS_SEEN = 2000
#: Notifications on the alerts page.
NOTIFICATIONS_SHOWN = 50
DAY = 86400.0

__all__ = ["UnknownAccountError", "account_page", "accounts", "alerts_page", "overview"]


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


#: Silences that ended this long ago still show on the alerts page (with a note).
ENDED_SHOWN = DAY
_NOT_ACTED: dict[str, Any] = {
    "acknowledged_by": None,
    "acknowledged_at": None,
    "ack_comment": None,
    "escalation": None,
}


def _alert(
    a: AlertRow, ack: Ack | None = None, escalate: Sequence[EscalationStep] = ()
) -> dict[str, Any]:
    """An alert kept; a firing one with its acknowledgement and escalation as ``status``
    computes them (:func:`monitor.status.alert_actions`)."""
    return {
        "source": a.source,
        "rule": a.rule,
        "account_number": a.account_number,
        "fingerprint": a.fingerprint,
        "state": a.state,
        "started_at": a.started_at.timestamp(),
        **(alert_actions(a, ack, escalate) if a.state == "firing" else _NOT_ACTED),
    }


async def _kept_alerts(ctx: WebContext) -> list[dict[str, Any]]:
    """Every alert kept (firing or pending), oldest first, as :func:`_alert` shows it."""
    acks = {ack.fingerprint: ack for ack in await ctx.store.acks()}
    steps = {rule.name: getattr(rule, "escalate", ()) for rule in ctx.config().rules}
    return [
        _alert(a, acks.get(a.fingerprint), steps.get(a.rule, ())) for a in await ctx.store.alerts()
    ]


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
    for a in await _kept_alerts(ctx):
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
    for a in await _kept_alerts(ctx):
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
    notifications = await _account_notifications(ctx, account, now)
    current = [
        a
        for a in await _kept_alerts(ctx)
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
        "episodes": _episodes(notifications, current, now),
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


def _notifications(
    rows: Iterable[DeliveryRow], *, source: str | None = None, account: str | None = None
) -> list[dict[str, Any]]:
    """The outbox rows as notifications (newest first), each with its delivery per sink."""
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        p = row.payload
        if account is not None and (p.get("account_number") != account or row.source != source):
            continue
        item = by_id.get(row.id)
        if item is None:
            item = by_id[row.id] = {
                "id": row.id,
                "source": row.source,
                "status": p.get("status"),
                "kind": p.get("kind"),
                "rule": p.get("rule"),
                "severity": p.get("severity"),
                "account_number": p.get("account_number"),
                "fingerprint": p.get("fingerprint"),
                "summary": p.get("summary"),
                "observed_at": _epoch(p.get("observed_at")),
                "started_at": _epoch(p.get("started_at")),
                "created_at": row.created_at,
                "deliveries": [],
            }
        item["deliveries"].append(
            {
                "sink": row.sink,
                "state": "retrying" if row.state == "pending" and row.attempts else row.state,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "updated_at": row.updated_at,
            }
        )
    for item in by_id.values():
        item["deliveries"].sort(key=lambda d: d["sink"])
    return list(by_id.values())


async def _account_notifications(
    ctx: WebContext, account: AccountRow, now: float
) -> list[dict[str, Any]]:
    """The account's notifications, newest first, as :func:`_notifications` shows them: from
    the notification record (kept ``[history] keep``, every delivery attempt with it), with
    the observed and start times and kind of the outbox's payload where the outbox still has
    them (a week); what only the outbox has (from before the record existed) as it has it."""
    queued = {
        n["id"]: n
        for n in _notifications(
            await ctx.store.deliveries(limit=DELIVERIES_SEEN),
            source=account.source,
            account=account.account_number,
        )
    }
    keep = ctx.config().history.keep.total_seconds()
    records = await ctx.store.notifications(
        since=now - keep,
        source=account.source,
        account_number=account.account_number,
        limit=RECORDS_SEEN,
    )
    by_id: dict[str, dict[str, Any]] = {}
    for r in records:
        item = by_id.get(r.id)
        if item is None:
            payload = queued.get(r.id, {})
            item = by_id[r.id] = {
                "id": r.id,
                "source": r.source,
                "status": r.status,
                "kind": payload.get("kind"),
                "rule": r.rule,
                "severity": payload.get("severity"),
                "account_number": r.account_number,
                "fingerprint": r.fingerprint,
                "summary": r.summary,
                "observed_at": payload.get("observed_at") or r.created_at,
                "started_at": payload.get("started_at"),
                "created_at": r.created_at,
                "acknowledged_by": (r.ack.author or "unknown") if r.ack is not None else None,
                "acknowledged_at": r.ack.at if r.ack is not None else None,
                "ack_comment": r.ack.comment if r.ack is not None else None,
                "deliveries": [],
            }
        item["deliveries"].append(
            {
                "sink": r.sink,
                "state": "retrying" if r.state == "pending" and r.attempt_count else r.state,
                "attempts": r.attempt_count,
                "last_error": r.last_error,
                "updated_at": r.updated_at,
                "tries": [{"at": a.at, "outcome": a.outcome, "error": a.error} for a in r.attempts],
            }
        )
    for item in by_id.values():
        item["deliveries"].sort(key=lambda d: d["sink"])
    merged = list(by_id.values()) + [n for i, n in queued.items() if i not in by_id]
    return sorted(merged, key=lambda n: n["created_at"], reverse=True)


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _episodes(
    notifications: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    """Alert episodes from their notifications (firing -> resolved) and the alerts firing now
    (an episode with no end yet); events are episodes of no length."""
    episodes: dict[str, dict[str, Any]] = {}
    for n in reversed(notifications):  # oldest first
        fp = n["fingerprint"]
        at = n["observed_at"] or n["created_at"]
        if n["status"] == "firing":
            start = n["started_at"] or at
            ep = episodes.setdefault(
                fp, {"rule": n["rule"], "severity": n["severity"], "start": start, "end": None}
            )
            ep["summary"] = n["summary"]
            if n["kind"] == "event":
                ep["end"] = start
        elif fp in episodes:
            episodes[fp]["end"] = at
    firing = {a["fingerprint"] for a in current if a["state"] == "firing"}
    for a in current:
        if a["state"] == "firing" and a["fingerprint"] not in episodes:
            episodes[a["fingerprint"]] = {
                "rule": a["rule"],
                "severity": None,
                "start": a["started_at"],
                "end": None,
                "summary": None,
            }
    for fp, e in episodes.items():
        # Open and firing now: ongoing. Open but no longer firing: its end was not notified
        # (an event, or a resolution not sent): drawn as a moment.
        e["ongoing"] = e["end"] is None and fp in firing
        if e["end"] is None:
            e["end"] = now if e["ongoing"] else e["start"]
    return sorted(episodes.values(), key=lambda e: e["start"])


# --------------------------------------------------------------------------- alerts


async def alerts_page(ctx: WebContext) -> dict[str, Any]:
    """Firing, pending and held alerts; the last notifications with their delivery per sink;
    the mute windows open now and next."""
    now = ctx.now()
    kept = await _kept_alerts(ctx)
    held = [
        {
            "id": h.id,
            "sink": h.sink,
            "source": h.source,
            "mute": h.mute,
            # The silence's id when a silence holds it (``mute`` is then ``silence:<id>``).
            "silence": h.mute.removeprefix(HOLDER_PREFIX)
            if h.mute.startswith(HOLDER_PREFIX)
            else None,
            "rule": h.payload.get("rule"),
            "status": h.payload.get("status"),
            "account_number": h.payload.get("account_number"),
            "summary": h.payload.get("summary"),
            "created_at": h.created_at,
        }
        for h in await ctx.store.held()
    ]
    notifications = _notifications(await ctx.store.deliveries(limit=DELIVERIES_SEEN))
    return {
        "now": now.timestamp(),
        "firing": [a for a in kept if a["state"] == "firing"],
        "pending": [a for a in kept if a["state"] == "pending"],
        "held": held,
        "notifications": notifications[:NOTIFICATIONS_SHOWN],
        "mutes": [_mute(m, now) for m in ctx.config().mute],
        "silences": await silences(ctx.store, now.timestamp()),
    }


async def silences(store: Store, now: float) -> list[dict[str, Any]]:
    """The silences in force and those still to start (soonest end first), then those that
    ended in the last :data:`ENDED_SHOWN` (latest end first), each with how many
    notifications it holds (:func:`monitor.status.silence_state`)."""
    held_by = await store.held_by_mute()
    shown = [
        silence_state(s, held_by.get(s.holder, 0), now)
        for s in await store.silences(include_ended=True, now=now)
        if s.until > now - ENDED_SHOWN
    ]
    live = sorted(
        (s for s in shown if not s["ended"]), key=lambda s: (s["starts_at"] > now, s["ends_at"])
    )
    ended = sorted((s for s in shown if s["ended"]), key=lambda s: -s["ends_at"])
    return live + ended


def _mute(mute: MuteConfig, now: datetime) -> dict[str, Any]:
    window = window_at(mute, now)
    upcoming = next_window(mute, now)
    return {
        "name": mute.name,
        "rules": list(mute.rules) if mute.rules is not None else None,
        "timezone": mute.timezone,
        "open": window is not None,
        "open_until": window[1].timestamp() if window is not None else None,
        "next_start": upcoming[0].timestamp() if upcoming is not None else None,
        "next_end": upcoming[1].timestamp() if upcoming is not None else None,
    }


def next_window(mute: MuteConfig, now: datetime) -> tuple[datetime, datetime] | None:
    """The next window of ``mute`` that opens after ``now`` (within 8 days), as (start, end)."""
    zone = ZoneInfo(mute.timezone)
    local = now.astimezone(zone)
    hours, minutes = (int(x) for x in mute.start.split(":"))
    for ahead in range(9):
        day = local.date() + timedelta(days=ahead)
        if WEEKDAYS[day.weekday()] not in mute.days or hours == 24:
            continue
        start = datetime.combine(day, time(hours, minutes), tzinfo=zone)
        if start > local:
            window = window_at(mute, start)
            if window is not None:
                return window
    return None
