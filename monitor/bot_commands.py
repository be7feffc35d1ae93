"""The Telegram bot's commands, pure: an update read, who may do what, and the answers' text.

:mod:`monitor.telegram_bot` long-polls ``getUpdates`` and does the I/O; everything it decides is
here: :func:`read_update` turns an update into an :class:`Incoming` (a message or the press of
an inline button), :func:`access` says whether it is answered at all and whether it may change
state, :func:`parse_command` splits ``/silence@MyBot low-cash 2h``, and the ``*_text`` functions
write the answers in Telegram HTML (user text escaped, within :data:`TEXT_LIMIT`).

Who is who: the sink's ``chat_id`` may read (``/balance``, ``/status``, ``/alerts``,
``/digest``, ``/help``); a chat listed in ``admin_chat_ids`` may also change state (``/silence``,
``/ack``, the buttons). A private chat's id is its user's id, so an admin's user id listed there
also makes that user an admin when they write in the sink's group chat. Every other chat is
ignored. Times are datetimes given by the caller: nothing here reads the clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from monitor.models import MONEY_FIELDS
from monitor.sinks.text import escape, join_lines

if TYPE_CHECKING:  # the rows are only read here: the sinks import this module too
    from monitor.silences import Ack, Silence
    from monitor.store.base import AccountRow, AlertRow, SourceRow

__all__ = [
    "COMMANDS",
    "TEXT_LIMIT",
    "Access",
    "Command",
    "Incoming",
    "SilenceArgs",
    "access",
    "alerts_text",
    "author",
    "balance_text",
    "button_data",
    "buttons",
    "help_text",
    "parse_button",
    "parse_command",
    "parse_silence",
    "status_text",
]

#: Telegram's most characters in one message.
TEXT_LIMIT = 4096
#: Telegram's most bytes of an inline button's ``callback_data``.
CALLBACK_DATA_LIMIT = 64
#: The commands, with their one-line help; the admin ones change state.
COMMANDS: Mapping[str, str] = {
    "balance": "/balance [account] — the last polled balances (an account number or glob)",
    "status": "/status — sources, last polls, firing alerts",
    "alerts": "/alerts — firing and pending alerts, with their ids",
    "digest": "/digest [name] — a digest now",
    "silence": "/silence &lt;rule&gt; [account] &lt;duration&gt; [comment] — hold its alerts",
    "ack": "/ack &lt;id&gt; — acknowledge an alert (notification id or fingerprint)",
    "help": "/help — this list",
}
ADMIN_COMMANDS = frozenset({"silence", "ack"})
#: The buttons under an alert message: ``callback_data`` prefix -> label.
BUTTONS: Mapping[str, str] = {"ack": "Acknowledge", "s1h": "Silence 1h"}
#: What the "Silence 1h" button silences for.
BUTTON_SILENCE = timedelta(hours=1)

_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?")
#: A duration as the bot takes it: with units (``90m``, ``1h30m``, ``2d``), so that an account
#: number is never read as seconds.
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message, or the press of an inline button (``callback_id`` set), from one chat."""

    update_id: int
    chat_id: str
    chat_username: str | None
    user_id: str | None
    username: str | None
    text: str
    callback_id: str | None = None

    @property
    def is_button(self) -> bool:
        return self.callback_id is not None


class Access(enum.Enum):
    """What a chat may do: nothing (ignored), read, or also change state."""

    NONE = "none"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # lower case, without the slash and the bot's name
    args: tuple[str, ...]
    rest: str  # the text after the command's name, as typed


@dataclass(frozen=True, slots=True)
class SilenceArgs:
    rule: str
    account: str | None
    duration: timedelta
    comment: str


def read_update(update: Mapping[str, Any]) -> Incoming | None:
    """The message or button press of an update; ``None`` for what the bot does not handle
    (an edited message, a sticker, a chat join...)."""
    update_id = update.get("update_id")
    if not isinstance(update_id, int):
        return None
    message = update.get("message")
    if isinstance(message, Mapping):
        text = message.get("text")
        chat = message.get("chat")
        if not isinstance(text, str) or not isinstance(chat, Mapping):
            return None
        sender = message.get("from")
        return _incoming(update_id, chat, sender, text)
    query = update.get("callback_query")
    if isinstance(query, Mapping):
        origin = query.get("message")
        chat = origin.get("chat") if isinstance(origin, Mapping) else None
        data = query.get("data")
        ident = query.get("id")
        if not isinstance(chat, Mapping) or not isinstance(ident, str):
            return None
        incoming = _incoming(
            update_id, chat, query.get("from"), data if isinstance(data, str) else ""
        )
        if incoming is None:
            return None
        return Incoming(
            incoming.update_id,
            incoming.chat_id,
            incoming.chat_username,
            incoming.user_id,
            incoming.username,
            incoming.text,
            callback_id=ident,
        )
    return None


def _incoming(update_id: int, chat: Mapping[str, Any], sender: Any, text: str) -> Incoming | None:
    chat_id = chat.get("id")
    if not isinstance(chat_id, int):
        return None
    username = chat.get("username")
    user_id: str | None = None
    user_name: str | None = None
    if isinstance(sender, Mapping):
        if isinstance(sender.get("id"), int):
            user_id = str(sender["id"])
        if isinstance(sender.get("username"), str):
            user_name = sender["username"]
    return Incoming(
        update_id,
        str(chat_id),
        username if isinstance(username, str) else None,
        user_id,
        user_name,
        text,
    )


def access(incoming: Incoming, chat_id: str, admin_chat_ids: Iterable[str]) -> Access:
    """What ``incoming`` may do: its chat is the sink's ``chat_id`` (by id, or by
    ``@username`` for a public chat) or one of ``admin_chat_ids``; in the sink's chat, a sender
    whose user id is an admin chat id (their private chat) is an admin too."""
    admins = set(admin_chat_ids)
    if incoming.chat_id in admins:
        return Access.ADMIN
    named = incoming.chat_username is not None and chat_id.lower() == (
        "@" + incoming.chat_username.lower()
    )
    if incoming.chat_id != chat_id and not named:
        return Access.NONE
    if incoming.user_id is not None and incoming.user_id in admins:
        return Access.ADMIN
    return Access.READ


def author(incoming: Incoming) -> str:
    """Who did it, as silences and acks record it: ``telegram:@alice`` or ``telegram:123``."""
    if incoming.username:
        return f"telegram:@{incoming.username}"
    return f"telegram:{incoming.user_id or incoming.chat_id}"


def parse_command(text: str, bot_username: str | None) -> Command | None:
    """``/cmd args`` or ``/cmd@ThisBot args``; ``None`` for text that is no command, or a command
    addressed to another bot (``/cmd@OtherBot``)."""
    text = text.strip()
    found = _COMMAND.match(text)
    if found is None or (found.end() < len(text) and not text[found.end()].isspace()):
        return None
    addressed = found.group(2)
    if addressed and bot_username and addressed.lower() != bot_username.lower():
        return None
    rest = text[found.end() :].strip()
    return Command(found.group(1).lower(), tuple(rest.split()), rest)


def parse_silence(args: Sequence[str], parse_duration: Any) -> SilenceArgs:
    """``<rule> [account] <duration> [comment...]``; ``ValueError`` saying what is wrong.

    ``parse_duration`` is :func:`monitor.config.parse_duration` (given, to keep this pure
    module free of the config package)."""
    usage = "usage: /silence <rule> [account] <duration> [comment], e.g. /silence low-cash 2h"
    if len(args) < 2:
        raise ValueError(usage)
    rule = args[0]
    if _DURATION.fullmatch(args[1]):
        account, at = None, 1
    elif len(args) >= 3 and _DURATION.fullmatch(args[2]):
        account, at = args[1], 2
    else:
        raise ValueError(f"no duration (like 30m, 2h, 1d) after the rule or account; {usage}")
    try:
        duration = parse_duration(args[at])
    except ValueError as exc:
        raise ValueError(f"duration {args[at]!r}: {exc}") from None
    if duration <= timedelta(0):
        raise ValueError("the duration must be more than 0")
    return SilenceArgs(rule, account, duration, " ".join(args[at + 1 :]))


# --------------------------------------------------------------------------- buttons


def button_data(action: str, notification_id: str) -> str | None:
    """``ack:<id>``: a button's ``callback_data``, or ``None`` if it would pass 64 bytes."""
    data = f"{action}:{notification_id}"
    return data if len(data.encode()) <= CALLBACK_DATA_LIMIT else None


def parse_button(data: str) -> tuple[str, str] | None:
    """``("ack", id)`` or ``("s1h", id)`` from a button's data; ``None`` for anything else."""
    action, sep, ident = data.partition(":")
    if not sep or action not in BUTTONS or not ident:
        return None
    return action, ident


def buttons(notification_id: str) -> dict[str, Any] | None:
    """The ``reply_markup`` of an alert message: "Acknowledge" and "Silence 1h", one row."""
    row = []
    for action, label in BUTTONS.items():
        data = button_data(action, notification_id)
        if data is None:
            return None
        row.append({"text": label, "callback_data": data})
    return {"inline_keyboard": [row]}


# --------------------------------------------------------------------------- answers


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
    return f"{number:,.2f}" if number.is_finite() else escape(str(value))


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


def balance_text(rows: Sequence[AccountRow], account: str | None, now: datetime) -> str:
    """``/balance [account]``: each account's money fields, restriction and day trades, from
    the last stored poll (never a call to the API)."""
    chosen = [r for r in rows if account is None or _matches(r.account_number, account)]
    if not chosen:
        if account is not None:
            return f"No account matches <code>{escape(account)}</code>."
        return "No balances yet: no poll has succeeded."
    several_sources = len({r.source for r in rows}) > 1
    lines: list[str] = []
    for row in chosen:
        if lines:
            lines.append("")
        where = f" · {escape(row.source)}" if several_sources else ""
        lines.append(f"<b>{escape(row.account_number)}</b>{where}")
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
        lines.append(f"<i>as of {_ago(row.observed_at, now)}</i>")
    return _fit(lines, "lines: /balance ACCOUNT for one account")


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
    active = [s for s in silences if s.active(moment)]
    if active:
        lines.append(f"Silences active: {len(active)}")
    return _fit(lines, "lines")
