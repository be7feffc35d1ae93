"""``balance-monitor status``: what the state database says, without contacting the API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from monitor import encoding
from monitor.config import EscalationStep, MuteConfig, RuleConfig
from monitor.leases import SINGLETON, lease_source, source_lease
from monitor.mutes import window_at
from monitor.silences import HOLDER_PREFIX, Ack, Silence
from monitor.store import Store
from monitor.store.base import AlertRow


async def collect(
    store: Store,
    now: datetime,
    mutes: Sequence[MuteConfig] = (),
    rules: Sequence[RuleConfig] = (),
) -> dict[str, Any]:
    """Sources, firing alerts (with their acknowledgement and escalation), mute windows,
    silences and outbox depth as plain data (``--json`` prints it as is); with replicas sharing
    a PostgreSQL, every replica's last heartbeat and the owner of each source (``owner``: the
    live replica holding its lease, else None)."""
    at = now.timestamp()
    leases = {lease.name: lease for lease in await store.leases()}
    replica_rows = await store.replicas()
    live = {r.name for r in replica_rows if r.expires_at > at}

    def owner(source: str) -> str | None:
        lease = leases.get(source_lease(source))
        if lease is None or lease.owner not in live or lease.expires_at <= at:
            return None
        return lease.owner

    replicas = [
        {
            "replica": r.name,
            "live": r.name in live,
            "last_heartbeat_at": _iso(r.heartbeat_at),
            "started_at": _iso(r.started_at),
            "version": r.version,
            "sources_owned": sum(
                1 for name in leases if (src := lease_source(name)) and owner(src) == r.name
            ),
            "singleton": (single := leases.get(SINGLETON)) is not None
            and single.owner == r.name
            and single.expires_at > at,
        }
        for r in replica_rows
    ]
    sources = [
        {
            "source": r.source,
            "last_poll_at": _text(r.last_poll_at),
            "last_result": r.last_result,
            "last_error": r.last_error,
            "last_success_at": _text(r.last_success_at),
            "consecutive_failures": r.failures,
            "accounts": r.account_count,
            "polls": r.polls,
            "accounts_known": r.accounts_known,
            "owner": owner(r.source),
        }
        for r in await store.sources()
    ]
    alerts: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    acks = {a.fingerprint: a for a in await store.acks()}
    steps = {r.name: getattr(r, "escalate", ()) for r in rules}
    for a in await store.alerts():
        row = {
            "source": a.source,
            "rule": a.rule,
            "account_number": a.account_number,
            "since": a.started_at.isoformat(),
        }
        if a.state == "pending":
            pending.append(row)
            continue
        acted = alert_actions(a, acks.get(a.fingerprint), steps.get(a.rule, ()))
        escalation = acted["escalation"]
        if escalation is not None:
            escalation = {**escalation, "next_at": _iso(escalation["next_at"])}
        alerts.append(
            {
                **row,
                "fingerprint": a.fingerprint,
                **acted,
                "acknowledged_at": _iso(acted["acknowledged_at"]),
                "escalation": escalation,
            }
        )
    held_by = await store.held_by_mute()
    silences = []
    for s in await store.silences(now=now.timestamp()):
        state = silence_state(s, held_by.pop(s.holder, 0), now.timestamp())
        silences.append(
            {
                **{k: v for k, v in state.items() if k not in _EPOCH_SILENCE_KEYS},
                "starts_at": _iso(s.starts_at),
                "ends_at": _iso(s.until),
            }
        )
    for name in [n for n in held_by if n.startswith(HOLDER_PREFIX)]:
        held_by.pop(name)  # a silence that ended: what it held is settled within a second
    mute_rows = []
    for mute in mutes:
        window = window_at(mute, now)
        mute_rows.append(
            {
                "name": mute.name,
                "active": window is not None,
                "until": window[1].isoformat() if window is not None else None,
                "timezone": mute.timezone,
                "rules": list(mute.rules) if mute.rules is not None else None,
                "held": held_by.pop(mute.name, 0),
            }
        )
    for name, count in held_by.items():  # a window no longer configured: settled soon
        mute_rows.append(
            {
                "name": name,
                "active": False,
                "until": None,
                "timezone": None,
                "rules": None,
                "held": count,
            }
        )
    streams = [
        {"source": name, **state}
        for name, state in (await store.streams()).items()
        if state.get("enabled", True)
    ]
    summary = await store.outbox_summary()
    queues = summary.queues
    outbox = {
        "pending": sum(q.pending for q in queues),
        "oldest_pending_at": _iso(min((q.oldest_created_at for q in queues), default=None)),
        "by_sink": [
            {
                "sink": q.sink,
                "pending": q.pending,
                "oldest_pending_at": _iso(q.oldest_created_at),
                "max_attempts": q.max_attempts,
            }
            for q in queues
        ],
        "failed_last_7d": summary.failed_or_expired,
    }
    return {
        "state": store.location,
        "now": now.isoformat(),
        "replicas": replicas,
        "sources": sources,
        "streams": streams,
        "alerts_firing": alerts,
        "alerts_pending": pending,
        "mutes": mute_rows,
        "silences": silences,
        "outbox": outbox,
    }


def alert_actions(
    alert: AlertRow, ack: Ack | None, escalate: Sequence[EscalationStep]
) -> dict[str, Any]:
    """What operators did about a firing alert and where its escalation stands, with times
    in epoch seconds (``status`` shows them as ISO 8601, the dashboard in the browser's zone):
    ``acknowledged_by``/``acknowledged_at``/``ack_comment`` (None when not acknowledged) and
    ``escalation`` (None for a rule without ``escalate``): steps, sent, and the next step's
    time and sinks (None once every step is sent or the alert is acknowledged)."""
    following = (
        escalate[alert.escalated] if alert.escalated < len(escalate) and ack is None else None
    )
    return {
        "acknowledged_by": (ack.author or "unknown") if ack is not None else None,
        "acknowledged_at": ack.at if ack is not None else None,
        "ack_comment": ack.comment if ack is not None else None,
        "escalation": {
            "steps": len(escalate),
            "sent": alert.escalated,
            "next_at": (alert.started_at + following.after).timestamp()
            if following is not None
            else None,
            "next_sinks": list(following.sinks) if following is not None else None,
        }
        if escalate or alert.escalated
        else None,
    }


#: The keys of :func:`silence_state` that are epoch seconds.
_EPOCH_SILENCE_KEYS = frozenset({"starts_at", "ends_at", "expired_at", "created_at"})


def silence_state(silence: Silence, held: int, now: float) -> dict[str, Any]:
    """A silence as ``status`` and the dashboard show it (times in epoch seconds): its
    matchers, whether it holds now (``active``), has not started yet (``upcoming``) or has
    ended (``ended``), when it ends (``ends_at``: its end, or when it was expired by hand),
    who set it and why, and how many notifications it holds."""
    return {
        "id": silence.id,
        **silence.matchers(),
        "active": silence.active(now),
        "upcoming": now < silence.starts_at,
        "ended": silence.until <= now,
        "starts_at": silence.starts_at,
        "ends_at": silence.until,
        "expired_at": silence.expired_at,
        "created_at": silence.created_at,
        "author": silence.author,
        "comment": silence.comment,
        "held": held,
    }


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def _ago(text: str | None, now: datetime) -> str:
    if not text:
        return "never"
    seconds = int((now - datetime.fromisoformat(text)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{text[:19]}Z ({seconds // size}{unit} ago)"
    return f"{text[:19]}Z ({max(seconds, 0)}s ago)"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def render(status: dict[str, Any]) -> str:
    """The readable form: one block per section."""
    now = datetime.fromisoformat(status["now"])
    lines = [f"state: {status['state']}", ""]
    if status["replicas"]:
        live = sum(1 for r in status["replicas"] if r["live"])
        lines.append(f"replicas: {live} live of {len(status['replicas'])}")
        rows = [
            [
                r["replica"],
                "live" if r["live"] else "gone",
                _ago(r["last_heartbeat_at"], now),
                str(r["sources_owned"]),
                "yes" if r["singleton"] else "",
            ]
            for r in status["replicas"]
        ]
        lines += _table(["REPLICA", "STATE", "LAST HEARTBEAT", "SOURCES", "SINGLETON"], rows)
        lines.append("")
    owners = bool(status["replicas"])
    if status["sources"]:
        rows = [
            [
                s["source"],
                _ago(s["last_poll_at"], now),
                s["last_result"] or "-",
                _ago(s["last_success_at"], now),
                str(s["accounts_known"]),
                *([s["owner"] or "(none)"] if owners else []),
                s["last_error"] or "",
            ]
            for s in status["sources"]
        ]
        lines += _table(
            ["SOURCE", "LAST POLL", "RESULT", "LAST SUCCESS", "ACCOUNTS"]
            + (["OWNER"] if owners else [])
            + ["ERROR"],
            rows,
        )
    else:
        lines.append("no poll recorded yet")
    if status.get("streams"):
        lines.append("")
        rows = [
            [
                s["source"],
                "connected" if s.get("connected") else "DOWN",
                _ago(s.get("since"), now),
                str(s.get("reconnects", 0)),
                s.get("last_error") or "",
            ]
            for s in status["streams"]
        ]
        lines += _table(["STREAM", "STATE", "SINCE", "RECONNECTS", "ERROR"], rows)
    lines.append("")
    alerts = status["alerts_firing"]
    if alerts:
        lines.append(f"alerts firing: {len(alerts)}")
        rows = [
            [
                a["rule"],
                a["account_number"] or "-",
                a["source"],
                _ago(a["since"], now),
                f"by {a['acknowledged_by']}" if a.get("acknowledged_by") else "-",
                _escalation(a.get("escalation")),
            ]
            for a in alerts
        ]
        lines += _table(["RULE", "ACCOUNT", "SOURCE", "SINCE", "ACKED", "ESCALATION"], rows)
    else:
        lines.append("alerts firing: none")
    if status["alerts_pending"]:
        lines.append(
            f"alerts pending (waiting for their rule's `for`): {len(status['alerts_pending'])}"
        )
        rows = [
            [a["rule"], a["account_number"] or "-", a["source"], _ago(a["since"], now)]
            for a in status["alerts_pending"]
        ]
        lines += _table(["RULE", "ACCOUNT", "SOURCE", "HOLDS SINCE"], rows)
    lines.append("")
    active = [m for m in status["mutes"] if m["active"]]
    held = sum(m["held"] for m in status["mutes"])
    if status["mutes"]:
        lines.append(f"mutes active: {len(active) or 'none'}; {held} notifications held")
        rows = [
            [
                m["name"],
                f"until {m['until'][:16].replace('T', ' ')} {m['timezone']}"
                if m["active"]
                else "inactive",
                ", ".join(m["rules"]) if m["rules"] else "all rules",
                str(m["held"]),
            ]
            for m in status["mutes"]
        ]
        lines += _table(["MUTE", "NOW", "RULES", "HELD"], rows)
        lines.append("")
    silences = status.get("silences", [])
    if silences:
        held_silenced = sum(s["held"] for s in silences)
        lines.append(f"silences: {len(silences)}; {held_silenced} notifications held")
        rows = [
            [
                s["id"],
                "active" if s["active"] else "pending",
                f"until {s['ends_at'][:16].replace('T', ' ')} UTC",
                ", ".join(f"{k}={s[k]}" for k in ("rule", "account", "source") if k in s)
                + "".join(f" {k}={v}" for k, v in s.get("labels", {}).items()),
                s["author"] or "-",
                str(s["held"]),
                s["comment"],
            ]
            for s in silences
        ]
        lines += _table(["SILENCE", "NOW", "ENDS", "MATCHES", "BY", "HELD", "COMMENT"], rows)
        lines.append("")
    outbox = status["outbox"]
    oldest = outbox["oldest_pending_at"]
    lines.append(
        f"outbox: {outbox['pending']} pending"
        + (f", oldest {_ago(oldest, now)}" if oldest else "")
        + f"; {outbox['failed_last_7d']} failed or expired (kept 7 days)"
    )
    if outbox["by_sink"]:
        rows = [
            [
                b["sink"],
                str(b["pending"]),
                _ago(b["oldest_pending_at"], now),
                str(b["max_attempts"]),
            ]
            for b in outbox["by_sink"]
        ]
        lines += _table(["SINK", "PENDING", "OLDEST", "ATTEMPTS"], rows)
    return "\n".join(lines)


def _escalation(state: dict[str, Any] | None) -> str:
    if not state:
        return "-"
    text = f"{state['sent']}/{state['steps']} sent"
    if state["next_at"]:
        text += f", next {state['next_at'][11:19]}Z to {', '.join(state['next_sinks'])}"
    return text


def to_json(status: dict[str, Any]) -> str:
    return encoding.dumps(status)
