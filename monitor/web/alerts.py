"""What the dashboard shows of alerts: firing and pending ones with what operators did about
them (acknowledgement, escalation, as ``status`` computes them), notifications from the outbox
and the notification record, silences and mute windows. Plain data, as :mod:`monitor.web.data`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitor import digest_render
from monitor.config import WEEKDAYS, EscalationStep, MuteConfig
from monitor.digest import DIGEST_STATUS, DIGEST_TYPE, Digest, is_digest_payload, label
from monitor.mutes import window_at
from monitor.silences import HOLDER_PREFIX, Ack
from monitor.status import alert_actions, silence_state
from monitor.store.base import AccountRow, AlertRow, DeliveryRow, Store
from monitor.web.context import WebContext

__all__ = [
    "account_notifications",
    "alerts_page",
    "episodes",
    "kept_alerts",
    "next_window",
    "silences",
]

DAY = 86400.0
#: How many outbox rows the pages look through (newest first).
DELIVERIES_SEEN = 2000
#: How many notification records (one per sink) the account page looks through.
RECORDS_SEEN = 2000
#: Notifications on the alerts page.
NOTIFICATIONS_SHOWN = 50
#: Silences that ended this long ago still show on the alerts page (with a note).
ENDED_SHOWN = DAY
_NOT_ACTED: dict[str, Any] = {
    "acknowledged_by": None,
    "acknowledged_at": None,
    "ack_comment": None,
    "escalation": None,
}


def alert(
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


async def kept_alerts(ctx: WebContext) -> list[dict[str, Any]]:
    """Every alert kept (firing or pending), oldest first, as :func:`alert` shows it."""
    acks = {ack.fingerprint: ack for ack in await ctx.store.acks()}
    steps = {rule.name: getattr(rule, "escalate", ()) for rule in ctx.config().rules}
    return [
        alert(a, acks.get(a.fingerprint), steps.get(a.rule, ())) for a in await ctx.store.alerts()
    ]


# --------------------------------------------------------------------------- notifications


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
        if item is None and is_digest_payload(p):
            item = by_id[row.id] = _digest_item(row)
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


def _digest_item(row: DeliveryRow) -> dict[str, Any]:
    """A digest in the notification list: its name where an alert's rule is, its headline and
    totals as the summary (it has no account, severity nor episode)."""
    digest = Digest.from_payload(row.payload)
    return {
        "id": row.id,
        "source": row.source,
        "status": DIGEST_STATUS,
        "kind": DIGEST_TYPE,
        "rule": label(digest.fingerprint),
        "severity": None,
        "account_number": None,
        "fingerprint": digest.fingerprint,
        "summary": digest_render.summary(digest),
        "observed_at": digest.until.timestamp(),
        "started_at": None,
        "created_at": row.created_at,
        "deliveries": [],
    }


async def account_notifications(
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


def episodes(
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
    kept = await kept_alerts(ctx)
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
