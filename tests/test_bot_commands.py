"""The bot's pure part (:mod:`monitor.bot_commands`): reading updates, who may do what, the
commands' arguments, the buttons' data; and the sink keys ``commands`` and ``admin_chat_ids``."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from config_helpers import config, problems

from monitor.bot_commands import (
    Access,
    Command,
    Incoming,
    access,
    author,
    button_data,
    buttons,
    migrated_to,
    parse_button,
    parse_command,
    parse_silence,
    read_update,
)
from monitor.config import TelegramSinkConfig, config_from_dict, parse_duration

CHAT = "-1001234567890"


def message(chat: int, text: str, sender: int | None = 7, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"chat": {"id": chat, **extra}, "text": text, "date": 0}
    if sender is not None:
        body["from"] = {"id": sender, "username": "al"}
    return {"update_id": 5, "message": body}


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (message(-100, "/help"), Incoming(5, "-100", None, "7", "al", "/help")),
        (message(9, "/help", sender=None), Incoming(5, "9", None, None, None, "/help")),
        (
            {
                "update_id": 6,
                "callback_query": {
                    "id": "q1",
                    "from": {"id": 7},
                    "message": {"chat": {"id": -100}},
                    "data": "ack:n1",
                },
            },
            Incoming(6, "-100", None, "7", None, "ack:n1", callback_id="q1"),
        ),
        ({"update_id": 7, "edited_message": {"chat": {"id": 1}, "text": "/help"}}, None),
        ({"update_id": 8, "message": {"chat": {"id": 1}, "sticker": {}}}, None),
        ({"message": {"chat": {"id": 1}, "text": "/help"}}, None),
    ],
)
def test_read_update(update: dict[str, Any], expected: Incoming | None) -> None:
    assert read_update(update) == expected


def typed_by(**extra: Any) -> dict[str, Any]:
    update = message(-100, "/silence low-cash 1d")
    update["message"].update(extra)
    return update


@pytest.mark.parametrize(
    "update",
    [
        typed_by(forward_origin={"type": "user", "sender_user": {"id": 111}}, forward_date=1),
        typed_by(forward_from={"id": 111}, forward_date=1),  # Bot API before 7.0
        typed_by(forward_from_chat={"id": -100}, forward_date=1),
        typed_by(forward_sender_name="Al", forward_date=1),
        typed_by(via_bot={"id": 42, "is_bot": True, "username": "SomeInlineBot"}),
        typed_by(is_automatic_forward=True),
        {
            "update_id": 9,
            "channel_post": {"chat": {"id": -100, "type": "channel"}, "text": "/ack x"},
        },
        {"update_id": 9, "edited_channel_post": {"chat": {"id": -100}, "text": "/ack x"}},
        {"update_id": 9, "message": {"chat": {"id": -100}, "text": ["/help"]}},
        {"update_id": 9, "message": {"chat": {"id": "-100"}, "text": "/help"}},
        {"update_id": 9, "message": "/help"},
        {"update_id": 9, "callback_query": {"id": "q", "data": "ack:n1"}},  # inline: no message
        {"update_id": "9", "message": {"chat": {"id": -100}, "text": "/help"}},
    ],
)
def test_what_its_sender_did_not_type_or_cannot_be_read_is_no_command(
    update: dict[str, Any],
) -> None:
    """A forward (even of an admin's command), an inline bot's text, another bot's message, a
    channel post and a malformed update are not run: read_update gives nothing."""
    assert read_update(update) is None


def test_a_bot_as_sender_is_no_person_it_reads_at_most() -> None:
    """An anonymous group admin writes as GroupAnonymousBot: answered in the sink's chat, but
    never an admin through a user id (not even one listed)."""
    update = message(-100, "/silence low-cash 1d", sender=1087968824)
    update["message"]["from"]["is_bot"] = True
    update["message"]["sender_chat"] = {"id": -100, "type": "supergroup"}
    read = read_update(update)
    assert read == Incoming(5, "-100", None, None, None, "/silence low-cash 1d")
    assert access(read, "-100", ["1087968824"]) is Access.READ


def test_a_migrated_group_names_its_new_id() -> None:
    moved = {"update_id": 9, "message": {"chat": {"id": -100}, "migrate_to_chat_id": -1007}}
    assert migrated_to(moved) == ("-100", "-1007")
    assert migrated_to(message(-100, "/help")) is None
    assert read_update(moved) is None


def incoming(
    chat: str, user: str | None = None, username: str | None = None, kind: str = "supergroup"
) -> Incoming:
    return Incoming(1, chat, username, user, None, "/help", chat_type=kind)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (incoming(CHAT, "7"), Access.READ),  # a member of the sink's chat
        (incoming(CHAT, "111"), Access.ADMIN),  # an admin's user id, in the sink's chat
        (incoming("111", "111"), Access.ADMIN),  # the admin's private chat
        (incoming("-100222", "111"), Access.NONE),  # an admin, in some other group
        (incoming("999", "999"), Access.NONE),  # a stranger's private chat
        (incoming("-100333", "7", username="alerts"), Access.NONE),
    ],
)
def test_access(who: Incoming, expected: Access) -> None:
    assert access(who, CHAT, ["111"]) is expected


def test_a_public_chat_is_known_by_its_username() -> None:
    assert access(incoming("-100333", "7", username="Alerts"), "@alerts", []) is Access.READ


def test_a_private_chat_is_never_known_by_its_username() -> None:
    """A user who takes the name of a public group (renamed or gone) reads nothing."""
    squatter = incoming("5555", "5555", username="alerts", kind="private")
    assert access(squatter, "@alerts", ["111"]) is Access.NONE
    assert access(incoming("5555", "5555", username="alerts", kind=""), "@alerts", []) is (
        Access.NONE
    )


def test_a_command_for_some_bot_is_not_run_while_this_ones_name_is_unknown() -> None:
    assert parse_command("/silence@OtherBot low-cash 1d", None) is None
    assert parse_command("/silence low-cash 1d", None) == Command(
        "silence", ("low-cash", "1d"), "low-cash 1d"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/balance", Command("balance", (), "")),
        ("/Balance 1234  5678", Command("balance", ("1234", "5678"), "1234  5678")),
        ("/balance@BalanceBot 1234", Command("balance", ("1234",), "1234")),
        ("/balance@balancebot", Command("balance", (), "")),
        ("/balance@OtherBot", None),
        ("hello /balance", None),
        ("/balance-now", None),
        ("", None),
    ],
)
def test_parse_command(text: str, expected: Command | None) -> None:
    assert parse_command(text, "BalanceBot") == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("low-cash 2h", ("low-cash", None, timedelta(hours=2), "")),
        ("low-cash 12345678@vision 30m wire sent", ("low-cash", "12345678@vision",
                                                    timedelta(minutes=30), "wire sent")),
        ("low-cash 12345678 1h30m", ("low-cash", "12345678", timedelta(minutes=90), "")),
        ("source_down 1d maintenance", ("source_down", None, timedelta(days=1), "maintenance")),
        ("low-cash 366d", ("low-cash", None, timedelta(days=366), "")),
    ],
)  # fmt: skip
def test_parse_silence(args: str, expected: tuple[Any, ...]) -> None:
    parsed = parse_silence(args.split(), parse_duration)
    assert (parsed.rule, parsed.account, parsed.duration, parsed.comment) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("", "usage: /silence <rule> [account] <duration> [comment]"),
        ("low-cash", "usage: /silence"),
        ("low-cash 12345678", "no duration (like 30m, 2h, 1d)"),
        ("low-cash 12345678 soon", "no duration"),
        ("low-cash 0s", "the duration must be more than 0"),
        ("low-cash 9999999d", "the duration must be at most 366d"),  # past the calendar's end
        ("low-cash 367d", "the duration must be at most 366d"),
    ],
)
def test_parse_silence_says_what_is_wrong(args: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_silence(args.split(), parse_duration)


def test_author_is_the_username_else_the_id() -> None:
    assert author(Incoming(1, "-1", None, "7", "al", "")) == "telegram:@al"
    assert author(Incoming(1, "-1", None, "7", None, "")) == "telegram:7"


def test_button_data_stays_within_64_bytes() -> None:
    assert button_data("ack", "a" * 32) == "ack:" + "a" * 32
    assert button_data("ack", "a" * 61) is None
    assert buttons("a" * 61) is None
    assert parse_button("s1h:abc") == ("s1h", "abc")
    assert parse_button("nope:abc") is None
    assert parse_button("ack:") is None


# --------------------------------------------------------------------------- the sink's keys


def telegram(**fields: Any) -> dict[str, Any]:
    return {"name": "tg", "type": "telegram", "bot_token": "b", "chat_id": CHAT, **fields}


def test_commands_are_off_by_default_and_admin_ids_may_be_numbers() -> None:
    loaded = config_from_dict(config(sinks=[telegram()]), base_dir=Path())
    sink = loaded.sinks[0]
    assert isinstance(sink, TelegramSinkConfig)
    assert (sink.commands, sink.admin_chat_ids) == (False, ())
    loaded = config_from_dict(
        config(sinks=[telegram(commands=True, admin_chat_ids=[123456789, "-1009"])]),
        base_dir=Path(),
    )
    sink = loaded.sinks[0]
    assert isinstance(sink, TelegramSinkConfig)
    assert sink.admin_chat_ids == ("123456789", "-1009")


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["@alice"], "'@alice' is not a numeric chat or user id"),
        (["1", "1"], "lists an id twice"),
    ],
)
def test_admin_chat_ids_are_numeric_ids(ids: list[str], message: str) -> None:
    found = problems(config(sinks=[telegram(commands=True, admin_chat_ids=ids)]))
    assert any("admin_chat_ids" in p and message in p for p in found), found


def test_admin_chat_ids_need_commands() -> None:
    found = problems(config(sinks=[telegram(admin_chat_ids=["1"])]))
    assert any("admin_chat_ids" in p and "has no effect without commands = true" in p
               for p in found), found  # fmt: skip


def test_two_sinks_cannot_answer_commands_with_one_bot() -> None:
    """Telegram gives a bot's updates to one reader: the second would get 409 for ever. The
    same bot may post to a second chat without commands."""
    env = {"bot_token": None, "bot_token_env": "TG"}
    found = problems(
        config(
            sinks=[
                telegram(name="a", commands=True, **env),
                telegram(name="b", chat_id="-1002", commands=True, **env),
                telegram(name="c", chat_id="-1003", **env),
            ]
        )
    )
    assert found == [
        "sinks[1] (b).commands: sink 'a' already answers commands with the same bot token (one"
        " process may read a bot's updates: give each its own bot)"
    ]
