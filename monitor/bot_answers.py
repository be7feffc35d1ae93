"""The Telegram bot's answers, pure: Telegram HTML (user text escaped) within 4096 characters.

What the commands of :mod:`monitor.bot_commands` answer, from what the store holds: the last
polled balances (never a call to the API), the sources' health, the alerts. Times are given by
the caller: nothing here reads the clock.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from monitor.bot_commands import ADMIN_COMMANDS, COMMANDS
from monitor.models import MONEY_FIELDS
from monitor.sinks.text import escape, join_lines
from monitor.text import clip, money_text

if TYPE_CHECKING:
    from monitor.silences import Ack, Silence
    from monitor.store.base import AccountRow, AlertRow, SourceRow

__all__ = [
    "TEXT_LIMIT",
    "alerts_text",
    "balance_text",
    "fit_message",
    "help_text",
    "plain",
    "status_text",
]

#: Telegram's most characters in one message.
TEXT_LIMIT = 4096
#: The last line of an answer cut to fit :data:`TEXT_LIMIT`.
CUT = "<i>…cut: too long for one message</i>"


def plain(html_text: str) -> str:
    """Telegram HTML as plain text: without its tags and entities (a button's toast)."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def fit_message(text: str, limit: int = TEXT_LIMIT) -> str:
    """Any answer within Telegram's ``limit`` (a longer one is refused, and nobody gets an
    answer): whole lines, then :data:`CUT`; a first line too long on its own (an echoed
    argument, an error) goes as escaped plain text, clipped, so no tag is ever cut in two."""
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = len(CUT)
    for line in text.split("\n"):
        if size + len(line) + 1 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:
        return clip(escape(plain(text)), limit)
    return "\n".join([*kept, CUT])


def help_text(admin: bool) -> str:
    lines = ["<b>balance-monitor</b> answers:"]
    lines += [text for name, text in COMMANDS.items() if admin or name not in ADMIN_COMMANDS]
    if not admin:
        lines.append("<i>/silence and /ack: only from an admin chat</i>")
    return "\n".join(lines)


def _ago(then: datetime | float | None, now: datetime) -> str:
    if then is None:
        return "never"
    moment = then if isinstance(then, datetime) else datetime.fromtimestamp(then, tz=UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h ago"


def _money(value: Any) -> str:
    if value is None:
        return "—"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return escape(str(value))
    return money_text(number) if number.is_finite() else escape(str(value))


def _fit(lines: Sequence[str], what: str) -> str:
    return join_lines(lines, TEXT_LIMIT, rest=lambda n: f"<i>…and {n} more {what}</i>")


_MONEY_NAMES: Mapping[str, str] = {
    "account_value_total": "Account value",
    "cash": "Cash",
    "cash_to_withdraw": "Cash to withdraw",
    "unsettled_cash": "Unsettled cash",
    "position_market_value": "Positions",
    "margin_buying_power": "Margin buying power",
    "non_margin_buying_power": "Non-margin buying power",
    "day_trading_buying_power": "Day-trading buying power",
}


def _matches(number: str, pattern: str) -> bool:
    """``12345678`` finds ``12345678@vision``; globs work as in rules' ``accounts``."""
    if any(c in pattern for c in "*?["):
        return fnmatchcase(number, pattern)
    return number == pattern or number.split("@", 1)[0] == pattern


#: The most characters of an argument echoed in an answer (``No account matches …``).
ECHO_LIMIT = 64


def balance_text(
    rows: Sequence[AccountRow],
    account: str | None,
    now: datetime,
    *,
    polled: Mapping[str, datetime | None] | None = None,
) -> str:
    """``/balance [account]``: each account's money fields, restriction and day trades, from
    the last stored poll (never a call to the API). An account is its number, its number
    before ``@``, or a glob; failing those, the accounts whose number contains it (``5678``
    finds ``12345678@vision``). Accounts that do not fit one message are cut whole, counted.

    ``polled`` is each source's last successful poll: a row is stored only when it changes,
    so its figures are as of that poll (or of the row's own time, if later)."""
    if account is None:
        chosen = list(rows)
    else:
        chosen = [r for r in rows if _matches(r.account_number, account)]
        if not chosen and not any(c in account for c in "*?["):
            chosen = [r for r in rows if account.lower() in r.account_number.lower()]
    if not chosen:
        if account is not None:
            known = f": /balance lists the {len(rows)} polled" if rows else ""
            return f"No account matches <code>{escape(clip(account, ECHO_LIMIT))}</code>{known}."
        return "No balances yet: no poll has succeeded."
    several_sources = len({r.source for r in rows}) > 1
    seen = polled or {}
    blocks = [_account_lines(row, now, several_sources, seen.get(row.source)) for row in chosen]
    lines: list[str] = []
    for index, block in enumerate(blocks):
        left = len(blocks) - index
        rest = f"<i>…and {left} more accounts (of {len(blocks)}): /balance ACCOUNT for one</i>"
        candidate = [*lines, *([""] if lines else []), *block]
        room = TEXT_LIMIT if left == 1 else TEXT_LIMIT - len(rest) - 2
        if lines and len("\n".join(candidate)) > room:
            return "\n".join([*lines, "", rest])
        lines = candidate
    return fit_message("\n".join(lines))


def _account_lines(
    row: AccountRow, now: datetime, several_sources: bool, polled: datetime | None
) -> list[str]:
    where = f" · {escape(row.source)}" if several_sources else ""
    lines = [f"<b>{escape(row.account_number)}</b>{where}"]
    record = row.record
    for field in MONEY_FIELDS:
        if field in record:
            name = _MONEY_NAMES.get(field, field)
            lines.append(f"{name}: <code>{_money(record[field])}</code>")
    restriction = str(record.get("restriction", "—"))
    reason = record.get("restriction_reason")
    why = f" ({escape(str(reason))})" if reason else ""
    lines.append(f"Restriction: {escape(restriction)}{why}")
    if "daytrades_count" in record:
        lines.append(f"Day trades: {escape(str(record['daytrades_count']))}")
    as_of = row.observed_at if polled is None else max(row.observed_at, polled)
    lines.append(f"<i>as of {_ago(as_of, now)}</i>")
    return lines


def _alert_line(alert: AlertRow, acks: Mapping[str, Ack], now: datetime) -> str:
    where = alert.account_number or f"source {alert.source}"
    state = "" if alert.state == "firing" else f" ({escape(alert.state)})"
    ack = acks.get(alert.fingerprint)
    acked = f" · acked by {escape(ack.author or 'unknown')}" if ack is not None else ""
    return (
        f"• <b>{escape(alert.rule)}</b>{state} on {escape(where)}, since"
        f" {_ago(alert.started_at, now)}{acked}\n  id <code>{escape(alert.fingerprint)}</code>"
    )


def alerts_text(alerts: Sequence[AlertRow], acks: Iterable[Ack], now: datetime) -> str:
    """``/alerts``: the firing alerts, then the pending ones, each with the id ``/ack`` takes."""
    if not alerts:
        return "No alert is firing. ✅"
    by_fingerprint = {a.fingerprint: a for a in acks}
    ordered = sorted(alerts, key=lambda a: (a.state != "firing", a.started_at))
    firing = sum(1 for a in alerts if a.state == "firing")
    head = f"<b>{firing} firing, {len(alerts) - firing} pending</b>"
    lines = [head, *(_alert_line(a, by_fingerprint, now) for a in ordered)]
    return _fit(lines, "alerts")


def status_text(
    sources: Sequence[SourceRow],
    alerts: Sequence[AlertRow],
    silences: Sequence[Silence],
    now: datetime,
) -> str:
    """``/status``: each source's last poll and health, what fires, the active silences."""
    lines = ["<b>balance-monitor status</b>"]
    if not sources:
        lines.append("No poll yet.")
    for s in sources:
        name = escape(s.source)
        if s.last_result == "ok":
            count = f", {s.account_count} accounts" if s.account_count is not None else ""
            lines.append(f"✅ {name}: ok, last poll {_ago(s.last_poll_at, now)}{count}")
        elif s.last_result is None:
            lines.append(f"⏳ {name}: not polled yet")
        else:
            error = escape((s.last_error or "failed")[:300])
            lines.append(
                f"❌ {name}: failing ({s.failures} in a row), last success"
                f" {_ago(s.last_success_at, now)}: {error}"
            )
    firing = [a for a in alerts if a.state == "firing"]
    pending = len(alerts) - len(firing)
    lines.append(f"Firing: {len(firing)}" + (f", pending: {pending}" if pending else ""))
    lines.extend(
        f"• {escape(a.rule)} on {escape(a.account_number or a.source)}" for a in firing[:20]
    )
    if len(firing) > 20:
        lines.append(f"<i>…and {len(firing) - 20} more: /alerts</i>")
    moment = now.timestamp()
    active = sorted((s for s in silences if s.active(moment)), key=lambda s: s.until)
    if active:
        lines.append(f"Silences active: {len(active)}")
        lines.extend(_silence_line(s, now) for s in active[:10])
        if len(active) > 10:
            lines.append(f"<i>…and {len(active) - 10} more: balance-monitor silence list</i>")
    return _fit(lines, "lines")


def _silence_line(silence: Silence, now: datetime) -> str:
    """``🔕 low-cash on 12345678@vision for 1h20m more, by telegram:@al``."""
    what = escape(silence.rule or "every rule")
    where = silence.account or (f"source {silence.source}" if silence.source else None)
    on = f" on {escape(where)}" if where else ""
    left = _ago(now, datetime.fromtimestamp(silence.until, tz=UTC)).removesuffix(" ago")
    by = f", by {escape(silence.author)}" if silence.author else ""
    return f"🔕 {what}{on} for {left} more{by}"
