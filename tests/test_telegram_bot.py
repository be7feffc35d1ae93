"""The Telegram bot (:mod:`monitor.telegram_bot`) against a fake Bot API on 127.0.0.1 and a real
SQLite state database: what it answers, to whom, what it records, its offset and its backoff.
The daemon running a bot against the simulator is ``test_daemon_bot.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bot_helpers import (
    ADMIN_ID,
    BOT_TOKEN,
    CHAT_ID,
    MEMBER_ID,
    STRANGER_CHAT,
    FakeBotApi,
)
from pydantic import SecretStr
from sinks_helpers import make_notification
from store_helpers import commit_poll
from structlog.testing import capture_logs

from monitor.config import Config, TelegramSinkConfig, load_config
from monitor.cycle import PollRecord
from monitor.errors import BotError
from monitor.metrics import Metrics
from monitor.models import ActiveAlert
from monitor.parse import parse_records
from monitor.rules import SourceHealth
from monitor.store import SqliteStore, Store
from monitor.telegram_bot import STANDBY_CHECK, BotApi, TelegramBot, bots_for

NUMBER = "12345678@vision"


@pytest.fixture
def api(bot_api: FakeBotApi) -> FakeBotApi:
    return bot_api


@pytest.fixture
def config(tmp_path: Path, api: FakeBotApi) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(
        '[api]\nurl = "http://127.0.0.1:9/accounts"\ntoken = "t"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
        '[[sinks]]\nname = "tg"\ntype = "telegram"\n'
        f'bot_token = "{BOT_TOKEN}"\nchat_id = "{CHAT_ID}"\napi_url = "{api.url}"\n'
        f'commands = true\nadmin_chat_ids = ["{ADMIN_ID}"]\n'
        '[[rules]]\nname = "low-cash"\ntype = "threshold"\nfield = "cash"\nop = "<"\nvalue = 1\n',
        encoding="utf-8",
    )
    return load_config(path)


class Waits:
    """The bot's ``sleep``: records each wait and stops the bot after ``stop_after`` of them."""

    def __init__(self, stop_after: int = 1) -> None:
        self.seconds: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, stop: asyncio.Event, seconds: float) -> None:
        self.seconds.append(seconds)
        if len(self.seconds) >= self.stop_after:
            stop.set()


def make_bot(
    config: Config,
    store: Store,
    session: aiohttp.ClientSession,
    **options: Any,
) -> TelegramBot:
    (bot,) = bots_for(config, session=session, store=store, settings=lambda: config)
    sink = config.sinks[0]
    assert isinstance(sink, TelegramSinkConfig)
    options.setdefault("poll_timeout", 0.2)
    return TelegramBot(sink, bot.api, store=store, settings=lambda: config, **options)


async def run_until(bot: TelegramBot, done: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Run the bot until ``done()``, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not done():  # noqa: ASYNC110 - polling what the fake recorded
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def firing(store: Store) -> None:
    """A poll with NUMBER's balances, low-cash firing on it (notification ``n1``, fingerprint
    ``fp-1``)."""
    started = datetime.now(tz=UTC) - timedelta(minutes=5)
    parsed = parse_records(
        [
            {
                "account_number": NUMBER,
                "cash": Decimal("0.50"),
                "account_value_total": Decimal("12345.67"),
                "restriction": "restricted",
                "restriction_reason": "margin call <urgent>",
                "daytrades_count": 3,
            }
        ]
    )
    note = replace(make_notification(fingerprint="fp-1"), id="n1")
    note = replace(note, alert=replace(note.alert, account_number=NUMBER, rule="low-cash"))
    await commit_poll(
        store,
        "default",
        poll=PollRecord(started, ok=True, account_count=1),
        health=SourceHealth(),
        upserts=list(parsed.accounts.values()),
        active={("low-cash", NUMBER): ActiveAlert("low-cash", NUMBER, "fp-1", started)},
        outbox=[(note, ["tg"])],
    )


# --------------------------------------------------------------------------- commands


async def test_balance_answers_from_the_stored_poll(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """Money with separators, the restriction with its (escaped) reason, day trades; sent to
    the chat the command came from, as HTML; an unknown account is named."""
    await firing(store)
    bot = make_bot(config, store, session)
    api.message("/balance")
    api.message("/balance@BalanceBot 12345678")
    api.message("/balance 99999999")
    await run_until(bot, lambda: len(api.sent) >= 3)
    first, second, third = api.sent
    assert first["chat_id"] == int(CHAT_ID)
    assert first["parse_mode"] == "HTML"
    assert "<b>12345678@vision</b>" in first["text"]
    assert "Account value: <code>12,345.67</code>" in first["text"]
    assert "Cash: <code>0.50</code>" in first["text"]
    assert "Restriction: restricted (margin call &lt;urgent&gt;)" in first["text"]
    assert "Day trades: 3" in first["text"]
    assert second["text"] == first["text"]
    assert third["text"] == "No account matches <code>99999999</code>: /balance lists the 1 polled."


async def test_status_alerts_and_help(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    await firing(store)
    bot = make_bot(config, store, session)
    api.message("/status")
    api.message("/alerts")
    api.message("/help")
    api.message("/help", chat_id=ADMIN_ID, user_id=ADMIN_ID)
    api.message("/frobnicate")
    api.message("/digest")
    await run_until(bot, lambda: len(api.sent) >= 6)
    status, alerts, help_member, help_admin, unknown, digest = api.texts()
    assert "✅ default: ok, last poll 5m ago, 1 accounts" in status
    assert "Firing: 1" in status
    assert "• low-cash on 12345678@vision" in status
    assert "<b>1 firing, 0 pending</b>" in alerts
    assert "id <code>fp-1</code>" in alerts
    assert "/silence" not in help_member.split("\n", 1)[1].split("<i>")[0]
    assert "/silence &lt;rule&gt;" in help_admin
    assert unknown == "Unknown command /frobnicate. /help lists what I answer."
    assert digest == "No digests configured."


async def test_digest_asks_the_injected_digest(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    asked: list[str | None] = []

    async def digest(name: str | None) -> str:
        asked.append(name)
        return f"<b>digest {name}</b>"

    bot = make_bot(config, store, session, digest=digest)
    api.message("/digest")
    api.message("/digest morning")
    await run_until(bot, lambda: len(api.sent) >= 2)
    assert asked == [None, "morning"]
    assert api.texts() == ["<b>digest None</b>", "<b>digest morning</b>"]


async def test_silence_from_an_admin_is_kept_with_its_author(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """Kept as the CLI keeps it (author ``telegram:@al``), the daemon told at once."""
    changed: list[int] = []
    bot = make_bot(config, store, session, changed=lambda: changed.append(1))
    api.message("/silence low-cash 12345678@vision 2h wire on its way", user_id=ADMIN_ID,
                username="al")  # fmt: skip
    await run_until(bot, lambda: len(api.sent) >= 1)
    (silence,) = await store.silences(now=time.time())
    assert (silence.rule, silence.account, silence.author) == ("low-cash", NUMBER, "telegram:@al")
    assert silence.comment == "wire on its way"
    assert silence.ends_at - silence.starts_at == pytest.approx(7200, abs=1)
    assert changed == [1]
    assert api.texts()[0].startswith("🔕 Silenced <b>low-cash</b> on 12345678@vision until")


async def test_state_changes_from_a_non_admin_are_refused(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    await firing(store)
    bot = make_bot(config, store, session)
    api.message("/silence low-cash 2h", user_id=MEMBER_ID)
    api.message("/ack fp-1", user_id=MEMBER_ID)
    await run_until(bot, lambda: len(api.sent) >= 2)
    assert api.texts() == [
        "/silence changes state: only an admin chat may use it.",
        "/ack changes state: only an admin chat may use it.",
    ]
    assert await store.silences(now=time.time()) == []
    assert await store.acks() == []


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/silence", "usage: /silence &lt;rule&gt; [account] &lt;duration&gt; [comment]"),
        ("/silence low-cash soon", "no duration (like 30m, 2h, 1d) after the rule or account"),
        ("/silence nope 1h", "unknown rule &#x27;nope&#x27;"),
        ("/ack", "usage: /ack &lt;id&gt; [comment]"),
        ("/ack nothing-here", "no notification or alert with id or fingerprint"),
    ],
)
async def test_bad_arguments_get_a_precise_answer(  # noqa: PLR0917 - fixtures and parameters
    api: FakeBotApi,
    config: Config,
    store: Store,
    session: aiohttp.ClientSession,
    text: str,
    answer: str,
) -> None:
    bot = make_bot(config, store, session)
    api.message(text, chat_id=ADMIN_ID, user_id=ADMIN_ID)
    await run_until(bot, lambda: len(api.sent) >= 1)
    assert answer.replace("&#x27;", "'") in api.texts()[0]


async def test_ack_from_an_admin_chat_records_who(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    await firing(store)
    bot = make_bot(config, store, session)
    api.message("/ack fp-1 on it", chat_id=ADMIN_ID, user_id=ADMIN_ID, username=None)
    api.message("/ack n1", chat_id=ADMIN_ID, user_id=ADMIN_ID, username=None)
    await run_until(bot, lambda: len(api.sent) >= 2)
    (ack,) = await store.acks()
    assert (ack.fingerprint, ack.author, ack.comment) == ("fp-1", f"telegram:{ADMIN_ID}", "on it")
    assert api.texts(ADMIN_ID) == [
        f"✅ Acknowledged <b>low-cash</b> on 12345678@vision by telegram:{ADMIN_ID}.",
        "<b>low-cash</b> on 12345678@vision was already acknowledged.",
    ]
    (record,) = await store.notifications(since=0)
    assert record.ack is not None
    assert record.ack.author == f"telegram:{ADMIN_ID}"


async def test_an_unknown_chat_gets_no_answer_and_one_log_line(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    bot = make_bot(config, store, session)
    with capture_logs() as logs:
        api.message("/balance", chat_id=STRANGER_CHAT)
        api.message("/silence low-cash 1h", chat_id=STRANGER_CHAT, user_id=ADMIN_ID)
        api.press("ack:n1", chat_id=STRANGER_CHAT)
        api.message("/help")  # ours: answered, and tells when the others were handled
        await run_until(bot, lambda: len(api.sent) >= 1)
    assert [m["chat_id"] for m in api.sent] == [int(CHAT_ID)]
    assert api.toasts == []
    assert await store.silences(now=time.time()) == []
    unknown = [e for e in logs if e["event"] == "telegram_unknown_chat"]
    assert [e["chat_id"] for e in unknown] == [STRANGER_CHAT]


async def test_commands_for_another_bot_and_chatter_are_not_answered(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    bot = make_bot(config, store, session)
    api.message("/balance@SomeOtherBot")
    api.message("good morning")
    api.message("/help")
    await run_until(bot, lambda: len(api.sent) >= 1)
    await asyncio.sleep(0.1)
    assert len(api.sent) == 1
    assert api.texts()[0].startswith("<b>balance-monitor</b> answers:")


async def test_a_command_sent_while_nothing_listened_is_not_run_late(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    bot = make_bot(config, store, session)
    api.message("/silence low-cash 1h", chat_id=ADMIN_ID, user_id=ADMIN_ID,
                date=time.time() - 3600)  # fmt: skip
    await run_until(bot, lambda: len(api.sent) >= 1)
    assert "while the monitor was not listening: not run" in api.texts()[0]
    assert await store.silences(now=time.time()) == []


async def test_silence_takes_an_account_as_balance_does(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """``/balance 12345678`` finds ``12345678@vision``, so ``/silence low-cash 12345678 1h``
    silences that account (not a number no alert carries); an account nothing polled matches
    is silenced as asked, with a warning that it holds nothing yet."""
    await firing(store)
    bot = make_bot(config, store, session)
    api.message("/silence low-cash 12345678 1h", chat_id=ADMIN_ID, user_id=ADMIN_ID)
    api.message("/silence low-cash 99999999 1h", chat_id=ADMIN_ID, user_id=ADMIN_ID)
    await run_until(bot, lambda: len(api.sent) >= 2)
    short, unknown = api.texts()
    assert f"on {NUMBER} until" in short
    assert "on 99999999 until" in unknown
    assert "no polled account matches 99999999" in unknown
    silences = await store.silences(now=time.time())
    assert sorted(s.account or "" for s in silences) == ["12345678@vision", "99999999"]


# --------------------------------------------------------------------------- buttons


async def test_the_buttons_acknowledge_and_silence_for_an_admin_only(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    await firing(store)
    bot = make_bot(config, store, session)
    api.press("ack:n1", user_id=MEMBER_ID, username="member")
    api.press("s1h:n1", user_id=ADMIN_ID, username="al")
    api.press("ack:n1", user_id=ADMIN_ID, username="al")
    await run_until(bot, lambda: len(api.toasts) >= 3)
    assert api.toasts[0]["text"] == "Only an admin chat may do this."
    assert api.toasts[0]["show_alert"] is True  # a box the member must close: not missed
    assert "show_alert" not in api.toasts[1]
    assert api.toasts[1]["text"].startswith("🔕 Silenced low-cash on 12345678@vision until")
    assert api.toasts[2]["text"] == "✅ Acknowledged low-cash on 12345678@vision by telegram:@al."
    (silence,) = await store.silences(now=time.time())
    assert (silence.rule, silence.account, silence.author) == ("low-cash", NUMBER, "telegram:@al")
    assert silence.ends_at - silence.starts_at == pytest.approx(3600, abs=1)
    (ack,) = await store.acks()
    assert (ack.author, ack.notification_id) == ("telegram:@al", "n1")
    assert len(api.sent) == 2  # the chat sees who did what


async def test_silence_1h_pressed_twice_keeps_one_silence(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """Two admins (or one impatient one) pressing "Silence 1h" on the same message add one
    silence; the second press is told it is already silenced, and until when."""
    await firing(store)
    bot = make_bot(config, store, session)
    api.press("s1h:n1", user_id=ADMIN_ID, username="al")
    api.press("s1h:n1", user_id=ADMIN_ID, username="al")
    await run_until(bot, lambda: len(api.toasts) >= 2)
    (silence,) = await store.silences(now=time.time())
    assert api.toasts[0]["text"].startswith("🔕 Silenced low-cash on 12345678@vision until")
    assert api.toasts[1]["text"].startswith("low-cash on 12345678@vision is already silenced until")
    assert f"(id {silence.id}" in api.toasts[1]["text"]


# --------------------------------------------------------------------------- offset, failures


async def test_a_restart_does_not_answer_a_command_twice(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """The offset is kept after each update: a bot that stops (or crashes) before its next
    ``getUpdates`` confirmed the update to Telegram is followed by one that asks past it."""
    first = make_bot(config, store, session)
    handled = api.message("/help")
    await first.handle(api.updates[0])  # answered, then the process ends
    assert len(api.sent) == 1
    assert await store.bot_offset("tg") == handled + 1

    second = make_bot(config, store, session)
    api.message("/status")
    await run_until(second, lambda: len(api.sent) >= 2)
    await asyncio.sleep(0.3)  # another long poll: nothing comes again
    assert [t.split("\n")[0] for t in api.texts()] == [
        "<b>balance-monitor</b> answers:",
        "<b>balance-monitor status</b>",
    ]
    offsets = [p.get("offset") for m, p in api.calls if m == "getUpdates"]
    assert offsets[0] == handled + 1


async def test_a_429_waits_its_retry_after(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    api.fail("getUpdates", 429, description="Too Many Requests: retry after 7",
             parameters={"retry_after": 7})  # fmt: skip
    waits = Waits()
    bot = make_bot(config, store, session, sleep=waits)
    with capture_logs() as logs:
        await asyncio.wait_for(bot.run(asyncio.Event()), 5)
    assert waits.seconds == [7.0]
    assert any(e["event"] == "telegram_bot_rate_limited" for e in logs)


async def test_failures_back_off_with_jitter_and_a_conflict_waits_long(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """500s: 1, 2, 4 s (times 0.5 to 1, here the jitter's top); a 409 (another consumer of the
    updates) is logged as such and waits a minute; a success resets the backoff."""
    api.fail("getUpdates", 500, count=3, description="Internal Server Error")
    api.fail("getUpdates", 409, description="Conflict: terminated by other getUpdates request")
    waits = Waits(stop_after=4)
    bot = make_bot(config, store, session, sleep=waits, jitter=lambda: 1.0)
    with capture_logs() as logs:
        await asyncio.wait_for(bot.run(asyncio.Event()), 5)
    assert waits.seconds == [1.0, 2.0, 4.0, 60.0]
    conflict = [e for e in logs if e["event"] == "telegram_bot_conflict"]
    assert len(conflict) == 1
    assert "deleteWebhook" in conflict[0]["hint"]
    assert all(BOT_TOKEN not in str(e) for e in logs)


async def test_a_bot_error_never_holds_the_token(session: aiohttp.ClientSession) -> None:
    """A 401 (wrong token) and a refused connection: the messages name the bot, not the URL."""
    fake = await FakeBotApi(token="other:token").start()
    try:
        api = BotApi("tg", session=session, token=SecretStr(BOT_TOKEN), api_url=fake.url)
        with pytest.raises(BotError) as refused:
            await api.get_me()
    finally:
        await fake.aclose()
    assert str(refused.value) == "bot 'tg': getMe answered 401: Unauthorized"
    assert refused.value.status == 401
    with pytest.raises(BotError) as down:
        await api.get_me()
    assert BOT_TOKEN not in str(down.value)
    assert "bot 'tg': connection failed" in str(down.value)


async def test_a_standby_replica_does_not_poll(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    waits = Waits(stop_after=2)
    bot = make_bot(config, store, session, sleep=waits, singleton=lambda: False)
    await asyncio.wait_for(bot.run(asyncio.Event()), 5)
    assert api.calls == []
    assert waits.seconds == [STANDBY_CHECK, STANDBY_CHECK]


async def test_a_bug_in_a_command_is_logged_and_the_bot_goes_on(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """The crash is logged with its traceback, the update is past (not answered for ever
    again), and the next command is answered after the backoff."""

    async def digest(name: str | None) -> str:
        raise RuntimeError("a bug")

    bot = make_bot(config, store, session, digest=digest, jitter=lambda: 0.0)
    crashed = api.message("/digest")
    api.message("/help")
    with capture_logs() as logs:
        await run_until(bot, lambda: len(api.sent) >= 1)
    assert [e["event"] for e in logs if e["event"] == "telegram_bot_crashed"] == [
        "telegram_bot_crashed"
    ]
    assert api.texts()[0].startswith("<b>balance-monitor</b> answers:")
    assert (await store.bot_offset("tg") or 0) > crashed


# --------------------------------------------------------------------------- review of issue 17


async def test_forwards_inline_bot_texts_and_bots_are_not_obeyed(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """A member forwarding an admin's command, an admin forwarding anyone's, a text an inline
    bot wrote: none is run; a command the admin typed is."""
    forwarded = {"type": "user", "sender_user": {"id": int(ADMIN_ID)}, "date": 1}
    api.message("/silence low-cash 1d", forward_origin=forwarded, forward_date=1)
    hidden = {"type": "hidden_user", "sender_user_name": "x", "date": 1}
    api.message("/silence low-cash 1d", chat_id=ADMIN_ID, user_id=ADMIN_ID, forward_origin=hidden)
    api.message("/silence low-cash 1d", user_id=ADMIN_ID,
                via_bot={"id": 42, "is_bot": True, "username": "InlineBot"})  # fmt: skip
    api.message("/help", chat_id=ADMIN_ID, user_id=ADMIN_ID)
    await run_until(make_bot(config, store, session), lambda: len(api.sent) >= 1)
    await asyncio.sleep(0.1)
    assert [t.split("\n")[0] for t in api.texts()] == ["<b>balance-monitor</b> answers:"]
    assert await store.silences(now=time.time()) == []


async def test_spoofed_button_data_from_a_member_or_for_an_unknown_id_does_nothing(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """Telegram does not check ``callback_data`` against the message's buttons: a member's
    forged press is refused, an admin's for no notification is answered with an alert."""
    await firing(store)
    api.press("s1h:fp-1", user_id=MEMBER_ID, username="member")
    api.press("ack:n-none", user_id=ADMIN_ID)
    api.press("rm:n1", user_id=ADMIN_ID)
    await run_until(make_bot(config, store, session), lambda: len(api.toasts) >= 3)
    assert [(t["text"], t.get("show_alert")) for t in api.toasts] == [
        ("Only an admin chat may do this.", True),
        ("no notification or alert with id or fingerprint 'n-none'", True),
        ("This button is not one of mine.", True),
    ]
    assert await store.silences(now=time.time()) == []
    assert await store.acks() == []
    assert api.sent == []


async def test_every_answer_fits_one_message(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """An echoed argument of 4,000 characters that escaping makes five times longer, and an
    error that names it: answered within 4,096 characters (Telegram refuses longer ones,
    and nobody would get an answer)."""
    await firing(store)
    api.message("/balance " + "&" * 4000)
    api.message("/ack " + "<" * 4000, chat_id=ADMIN_ID, user_id=ADMIN_ID)
    await run_until(make_bot(config, store, session), lambda: len(api.sent) >= 2)
    balance, ack = api.texts()
    assert balance.startswith("No account matches <code>&amp;&amp;")
    assert len(balance) < 500
    assert ack.startswith("no notification or alert with id or fingerprint '&lt;&lt;")
    assert len(ack) <= 4096
    assert ack.endswith("…")


async def test_a_429_waits_at_most_five_minutes_and_says_so(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    api.fail("getUpdates", 429, parameters={"retry_after": 86400})
    waits = Waits()
    bot = make_bot(config, store, session, sleep=waits)
    with capture_logs() as logs:
        await asyncio.wait_for(bot.run(asyncio.Event()), 5)
    assert waits.seconds == [300.0]
    (limited,) = [e for e in logs if e["event"] == "telegram_bot_rate_limited"]
    assert (limited["retry_after"], limited["retry_in"]) == (86400, 300.0)


async def test_a_wrong_token_is_logged_clearly_and_waits_long(
    config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """A 401 (or 404) is no passing failure: one clear line with the fix, then ten minutes,
    not the doubling backoff's minute."""
    fake = await FakeBotApi(token="987654321:another-bots-token").start()
    try:
        sink = config.sinks[0]
        assert isinstance(sink, TelegramSinkConfig)
        api = BotApi("tg", session=session, token=SecretStr(BOT_TOKEN), api_url=fake.url)
        waits = Waits(stop_after=2)
        bot = TelegramBot(sink, api, store=store, settings=lambda: config, sleep=waits,
                          jitter=lambda: 1.0, poll_timeout=0.2)  # fmt: skip
        with capture_logs() as logs:
            await asyncio.wait_for(bot.run(asyncio.Event()), 5)
    finally:
        await fake.aclose()
    assert waits.seconds == [600.0, 600.0]
    failed = [e for e in logs if e["event"] == "telegram_bot_unauthorized"]
    assert len(failed) == 2
    assert "BotFather" in failed[0]["hint"]
    assert failed[0]["error"] == "bot 'tg': getMe answered 401: Unauthorized"
    assert all(BOT_TOKEN not in str(e) for e in logs)


async def test_an_answer_refused_with_a_429_is_sent_again_after_an_injected_wait(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    api.fail("sendMessage", 429, parameters={"retry_after": 3})
    waits = Waits(stop_after=100)
    api.message("/help")
    await run_until(make_bot(config, store, session, sleep=waits), lambda: len(api.sent) >= 1)
    assert waits.seconds[0] == 3.0


async def test_malformed_updates_never_stop_the_bot_nor_make_it_spin(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    """Wrong types are passed over (and confirmed); an update without an ``update_id`` cannot
    be confirmed and comes back at once: the bot backs off instead of asking in a tight
    loop."""
    api.push({"message": {"chat": "nope", "text": 5, "date": "today"}})
    api.push({"callback_query": {"id": 7, "message": None, "data": {"x": 1}}})
    api.push({"message": {"chat": {"id": int(CHAT_ID)}, "text": "/help", "date": 1e300}})
    api.updates.append({"message": {"chat": {"id": int(CHAT_ID)}, "text": "/help"}})
    waits = Waits(stop_after=2)
    with capture_logs() as logs:
        await asyncio.wait_for(
            make_bot(config, store, session, sleep=waits, jitter=lambda: 1.0).run(asyncio.Event()),
            5,
        )
    assert len(api.sent) == 1  # the /help with a date no clock shows: answered, once
    assert waits.seconds == [1.0, 2.0]
    assert [e["event"] for e in logs].count("telegram_bot_no_progress") == 2


async def test_an_update_below_the_offset_is_not_handled_again(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    bot = make_bot(config, store, session)
    older = api.message("/silence low-cash 1h", chat_id=ADMIN_ID, user_id=ADMIN_ID)
    newer = api.message("/help")
    await bot.handle(api.updates[1])
    await bot.handle(api.updates[0])  # replayed by a confused server, or a second consumer
    assert older < newer
    assert len(api.sent) == 1
    assert await store.silences(now=time.time()) == []
    assert await store.bot_offset("tg") == newer + 1


class CountingStore(SqliteStore):
    """The real SQLite store, counting the bot's offset writes."""

    offset_writes = 0

    async def set_bot_offset(self, bot: str, next_update_id: int, *, now: float) -> None:
        self.offset_writes += 1
        await super().set_bot_offset(bot, next_update_id, now=now)


async def test_a_flood_from_strangers_costs_one_write_per_batch(
    api: FakeBotApi, config: Config, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Ignored updates are confirmed with the batch (a replay of them would do nothing); an
    update that did something is kept at once."""
    store = await CountingStore.open(tmp_path / "counting.db")
    assert isinstance(store, CountingStore)
    try:
        last = 0
        for _ in range(60):
            last = api.message("/balance", chat_id=STRANGER_CHAT, user_id=MEMBER_ID)
        await run_until(
            make_bot(config, store, session),
            lambda: any(p.get("offset") == last + 1 for m, p in api.calls if m == "getUpdates"),
        )
        assert await store.bot_offset("tg") == last + 1
        assert store.offset_writes <= 2
        assert api.sent == []
    finally:
        await store.close()


async def test_a_migrated_group_is_named_with_its_new_id(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    api.push({"message": {"message_id": 1, "date": int(time.time()),
                          "chat": {"id": int(CHAT_ID), "type": "group"},
                          "migrate_to_chat_id": -1002222222222}})  # fmt: skip
    api.message("/help")
    with capture_logs() as logs:
        await run_until(make_bot(config, store, session), lambda: len(api.sent) >= 1)
    (moved,) = [e for e in logs if e["event"] == "telegram_chat_migrated"]
    assert (moved["chat_id"], moved["new_chat_id"]) == (CHAT_ID, "-1002222222222")
    assert "-1002222222222" in moved["hint"]


async def test_the_bot_counts_its_updates_and_says_whether_it_is_up(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    metrics = Metrics()
    api.message("/help")
    api.message("/silence low-cash 1h")  # a member: refused
    api.message("/help", date=time.time() - 3600)  # stale
    api.message("good morning")
    api.message("/help", chat_id=STRANGER_CHAT)
    await run_until(make_bot(config, store, session, metrics=metrics), lambda: len(api.sent) >= 3)
    text = metrics.render().decode()
    for outcome, count in [("answered", 1), ("refused", 1), ("stale", 1), ("ignored", 1),
                           ("unknown_chat", 1), ("failed", 0)]:  # fmt: skip
        line = f'balance_monitor_bot_updates_total{{outcome="{outcome}",sink="tg"}} {count}.0'
        assert line in text
    assert 'balance_monitor_bot_up{sink="tg"} 1.0' in text
    api.fail("getUpdates", 502)
    waits = Waits()
    await asyncio.wait_for(
        make_bot(config, store, session, metrics=metrics, sleep=waits).run(asyncio.Event()), 5
    )
    assert 'balance_monitor_bot_up{sink="tg"} 0.0' in metrics.render().decode()
    standby = make_bot(config, store, session, metrics=metrics, sleep=Waits(),
                       singleton=lambda: False)  # fmt: skip
    await asyncio.wait_for(standby.run(asyncio.Event()), 5)
    assert "balance_monitor_bot_up{" not in metrics.render().decode()  # says nothing either way


async def test_a_stop_ends_a_long_poll_in_flight_at_once(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    bot = make_bot(config, store, session, poll_timeout=25.0)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    async with asyncio.timeout(5):
        while not any(m == "getUpdates" for m, _ in api.calls):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0


async def test_an_answer_telegram_cannot_parse_goes_again_as_plain_text(
    api: FakeBotApi, config: Config, store: Store, session: aiohttp.ClientSession
) -> None:
    async def digest(name: str | None) -> str:
        return "<b>Digest</b> <unbalanced & broken"

    api.fail("sendMessage", 400, description="Bad Request: can't parse entities: Unexpected end")
    api.message("/digest")
    await run_until(make_bot(config, store, session, digest=digest), lambda: len(api.sent) >= 1)
    assert api.texts() == ["Digest &lt;unbalanced &amp; broken"]
