"""The Telegram bot's commands, pure: an update read, who may do what, and the answers' text.

:mod:`monitor.telegram_bot` long-polls ``getUpdates`` and does the I/O; everything it decides is
here: :func:`read_update` turns an update into an :class:`Incoming` (a message or the press of
an inline button), :func:`access` says whether it is answered at all and whether it may change
state, :func:`parse_command` splits ``/silence@MyBot low-cash 2h``, and :mod:`monitor.bot_answers`
writes the answers.

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
from datetime import timedelta
from typing import Any

__all__ = [
    "COMMANDS",
    "Access",
    "Command",
    "Incoming",
    "SilenceArgs",
    "access",
    "author",
    "button_data",
    "buttons",
    "migrated_to",
    "parse_button",
    "parse_command",
    "parse_silence",
]

#: Telegram's most bytes of an inline button's ``callback_data``.
CALLBACK_DATA_LIMIT = 64
#: The commands, with their one-line help; the admin ones change state.
COMMANDS: Mapping[str, str] = {
    "balance": "/balance [account] — the last polled balances (an account number or glob)",
    "status": "/status — sources, last polls, firing alerts, active silences",
    "alerts": "/alerts — firing and pending alerts, with their ids",
    "digest": "/digest [name] — a digest now",
    "silence": "/silence &lt;rule&gt; [account] &lt;duration&gt; [comment] — hold its alerts",
    "ack": "/ack &lt;id&gt; [comment] — acknowledge an alert (the id /alerts shows)",
    "help": "/help — this list",
}
ADMIN_COMMANDS = frozenset({"silence", "ack"})
#: The buttons under an alert message: ``callback_data`` prefix -> label.
BUTTONS: Mapping[str, str] = {"ack": "Acknowledge", "s1h": "Silence 1h"}
#: The longest ``/silence`` (``9999999d`` would pass the calendar's end; a year is plenty).
SILENCE_MAX = timedelta(days=366)
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
    #: The chat's ``type``: ``private``, ``group``, ``supergroup`` or ``channel``.
    chat_type: str | None = None

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


#: The keys of a message its sender did not write: a forward (of anyone's text, an admin's
#: too), a text made by an inline bot (``via_bot``), a channel post copied into its discussion
#: group. Such a message is never run as a command.
_NOT_TYPED = (
    "forward_origin",
    "forward_from",
    "forward_from_chat",
    "forward_sender_name",
    "forward_date",
    "via_bot",
    "is_automatic_forward",
)


def read_update(update: Mapping[str, Any]) -> Incoming | None:
    """The message or button press of an update; ``None`` for what the bot does not handle
    (an edited message, a sticker, a chat join...), and for a message its sender did not
    type (a forward, a text from an inline bot)."""
    update_id = update.get("update_id")
    if not isinstance(update_id, int):
        return None
    message = update.get("message")
    if isinstance(message, Mapping):
        text = message.get("text")
        chat = message.get("chat")
        if not isinstance(text, str) or not isinstance(chat, Mapping):
            return None
        if any(message.get(key) for key in _NOT_TYPED):
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
            chat_type=incoming.chat_type,
        )
    return None


def _incoming(update_id: int, chat: Mapping[str, Any], sender: Any, text: str) -> Incoming | None:
    chat_id = chat.get("id")
    if not isinstance(chat_id, int):
        return None
    username = chat.get("username")
    kind = chat.get("type")
    user_id: str | None = None
    user_name: str | None = None
    # A bot as sender is no person: an anonymous group admin (GroupAnonymousBot) or someone
    # writing as a channel; it may read in the sink's chat, never be an admin by its id.
    if isinstance(sender, Mapping) and sender.get("is_bot") is not True:
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
        chat_type=kind if isinstance(kind, str) else None,
    )


def migrated_to(update: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(old, new)`` chat ids when the update says a group became a supergroup (its id
    changes: a ``chat_id`` naming the old one is answered no more)."""
    message = update.get("message")
    if not isinstance(message, Mapping):
        return None
    chat = message.get("chat")
    new = message.get("migrate_to_chat_id")
    old = chat.get("id") if isinstance(chat, Mapping) else None
    if isinstance(old, int) and isinstance(new, int):
        return str(old), str(new)
    return None


def access(incoming: Incoming, chat_id: str, admin_chat_ids: Iterable[str]) -> Access:
    """What ``incoming`` may do: its chat is the sink's ``chat_id`` (by id, or by
    ``@username`` for a public group or channel) or one of ``admin_chat_ids``; in the sink's
    chat, a sender whose user id is an admin chat id (their private chat) is an admin too.

    A private chat is never known by its ``@username``: a user's username is theirs to choose,
    so one who took a public group's former name would read its balances."""
    admins = set(admin_chat_ids)
    if incoming.chat_id in admins:
        return Access.ADMIN
    named = (
        incoming.chat_username is not None
        and incoming.chat_type in {"group", "supergroup", "channel"}
        and chat_id.lower() == "@" + incoming.chat_username.lower()
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
    addressed to another bot (``/cmd@OtherBot``; to any bot while this one's name is unknown)."""
    text = text.strip()
    found = _COMMAND.match(text)
    if found is None or (found.end() < len(text) and not text[found.end()].isspace()):
        return None
    addressed = found.group(2)
    if addressed and (bot_username is None or addressed.lower() != bot_username.lower()):
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
    if duration > SILENCE_MAX:
        raise ValueError(f"the duration must be at most {SILENCE_MAX.days}d")
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


def buttons(notification_id: str, *, event: bool = False) -> dict[str, Any] | None:
    """The ``reply_markup`` of an alert message: "Acknowledge" and "Silence 1h", one row; an
    event's has "Silence 1h" only (it fires once: no episode stays to acknowledge)."""
    row = []
    for action, label in BUTTONS.items():
        if event and action == "ack":
            continue
        data = button_data(action, notification_id)
        if data is None:
            return None
        row.append({"text": label, "callback_data": data})
    return {"inline_keyboard": [row]}
