"""``balance-monitor status``: what the state database says, without contacting the API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from monitor import encoding
from monitor.config import MuteConfig
from monitor.mutes import window_at
from monitor.store import Store


async def collect(store: Store, now: datetime, mutes: Sequence[MuteConfig] = ()) -> dict[str, Any]:
    """Sources, firing alerts, mute windows and outbox depth as plain data (``--json`` prints
    it as is)."""
    sources = [
        {
            "source": r[0],
            "last_poll_at": r[1],
            "last_result": r[2],
            "last_error": r[3],
            "last_success_at": r[4],
            "consecutive_failures": r[5],
            "accounts": r[6],
            "polls": r[7],
        }
        for r in await store.query(
            "SELECT source, last_poll_at, last_result, last_error, last_success_at, failures,"
            " account_count, polls FROM sources ORDER BY source"
        )
    ]
    known = {
        r[0]: r[1]
        for r in await store.query("SELECT source, count(*) FROM accounts GROUP BY source")
    }
    for s in sources:
        s["accounts_known"] = known.get(s["source"], 0)
    version = int((await store.query("SELECT value FROM meta WHERE key='schema_version'"))[0][0])
    state = "state" if version >= 2 else "'firing'"
    alerts: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for r in await store.query(
        f"SELECT source, rule, account_number, started_at, fingerprint, {state} FROM alerts"  # noqa: S608
        " ORDER BY started_at, source, rule, account_number"
    ):
        row = {"source": r[0], "rule": r[1], "account_number": r[2] or None, "since": r[3]}
        if r[5] == "pending":
            pending.append(row)
        else:
            alerts.append({**row, "fingerprint": r[4]})
    held = (
        await store.query("SELECT mute, count(*) FROM held GROUP BY mute") if version >= 2 else []
    )
    held_by = {r[0]: r[1] for r in held}
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
    outbox_rows = await store.query(
        "SELECT sink, count(*), min(created_at), max(attempts) FROM outbox"
        " WHERE state='pending' GROUP BY sink ORDER BY sink"
    )
    outbox = {
        "pending": sum(r[1] for r in outbox_rows),
        "oldest_pending_at": _iso(min((r[2] for r in outbox_rows), default=None)),
        "by_sink": [
            {"sink": r[0], "pending": r[1], "oldest_pending_at": _iso(r[2]), "max_attempts": r[3]}
            for r in outbox_rows
        ],
        "failed_last_7d": (
            await store.query("SELECT count(*) FROM outbox WHERE state IN ('failed', 'expired')")
        )[0][0],
    }
    return {
        "state": str(store.path),
        "now": now.isoformat(),
        "sources": sources,
        "alerts_firing": alerts,
        "alerts_pending": pending,
        "mutes": mute_rows,
        "outbox": outbox,
    }


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
    if status["sources"]:
        rows = [
            [
                s["source"],
                _ago(s["last_poll_at"], now),
                s["last_result"] or "-",
                _ago(s["last_success_at"], now),
                str(s["accounts_known"]),
                s["last_error"] or "",
            ]
            for s in status["sources"]
        ]
        lines += _table(
            ["SOURCE", "LAST POLL", "RESULT", "LAST SUCCESS", "ACCOUNTS", "ERROR"], rows
        )
    else:
        lines.append("no poll recorded yet")
    lines.append("")
    alerts = status["alerts_firing"]
    if alerts:
        lines.append(f"alerts firing: {len(alerts)}")
        rows = [
            [a["rule"], a["account_number"] or "-", a["source"], _ago(a["since"], now)]
            for a in alerts
        ]
        lines += _table(["RULE", "ACCOUNT", "SOURCE", "SINCE"], rows)
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


def to_json(status: dict[str, Any]) -> str:
    return encoding.dumps(status)
