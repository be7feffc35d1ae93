"""The daemon's Telegram bot, in-process against the simulator and a fake Bot API on 127.0.0.1
(the issue's tests): ``/balance`` answers with the simulator's values; ``/silence`` from an admin
holds the next alert, from a non-admin is refused; an unknown chat gets no answer; a restart does
not answer a command twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bot_helpers import ADMIN_ID, BOT_TOKEN, CHAT_ID, MEMBER_ID, STRANGER_CHAT, FakeBotApi
from e2e_helpers import VISION, healthy, low_cash

from monitor import simulator
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.simulator import DEMO_TOKEN, Simulator

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NOT_TODAY = [d for i, d in enumerate(_DAYS) if i != datetime.now(tz=UTC).weekday()]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    served = Simulator(scenario="static")
    served.set_accounts(healthy())
    runner, url = await simulator.start(served)
    try:
        yield served, url
    finally:
        await runner.cleanup()


def write_config(path: Path, api_url: str, bot_url: str) -> Path:
    path.write_text(
        f'[api]\nurl = "{api_url}"\ntoken = "{DEMO_TOKEN}"\n'
        '[schedule]\ninterval = "1s"\n'
        f'[state]\npath = "{path.parent / "state.db"}"\n'
        '[[sinks]]\nname = "tg"\ntype = "telegram"\n'
        f'bot_token = "{BOT_TOKEN}"\nchat_id = "{CHAT_ID}"\napi_url = "{bot_url}"\n'
        f'commands = true\nadmin_chat_ids = ["{ADMIN_ID}"]\n'
        '[[rules]]\nname = "low-cash"\ntype = "threshold"\nfield = "cash_to_withdraw"\n'
        'op = "<"\nvalue = 1000\n'
        # A digest that is not due today (none sent at start): /digest asks for it.
        '[[digests]]\nname = "close"\nat = "16:15"\ntimezone = "UTC"\nsinks = ["tg"]\n'
        f"days = {json.dumps(NOT_TODAY)}\n",
        encoding="utf-8",
    )
    return path


async def wait_until(check: Callable[[], bool], timeout: float = 8.0) -> None:  # noqa: ASYNC109 - a test helper's bound
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling what the fake recorded
            await asyncio.sleep(0.05)


def answers(api: FakeBotApi, start: str) -> list[str]:
    return [t for t in api.texts() if t.startswith(start)]


async def test_the_bot_answers_silences_refuses_and_survives_a_restart(
    sim: tuple[Simulator, str], bot_api: FakeBotApi, tmp_path: Path
) -> None:
    served, api_url = sim
    path = write_config(tmp_path / "config.toml", api_url, bot_api.url)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        await wait_until(
            lambda: daemon._rt is not None and daemon._rt.pipeline.last_success is not None
        )
        bot_api.message("/balance 12345678")
        bot_api.message("/balance", chat_id=STRANGER_CHAT, user_id=ADMIN_ID)
        bot_api.message("/silence low-cash 1h", user_id=MEMBER_ID)
        bot_api.message("/silence low-cash 12345678@vision 1h wire sent", user_id=ADMIN_ID)
        bot_api.message("/digest")
        bot_api.message("/digest open")
        await wait_until(lambda: len(bot_api.sent) >= 5)
        balance, refused, silenced, digest, unknown = bot_api.texts()
        # /digest: the configured digest as of now, from the stored poll (Telegram HTML).
        assert digest.startswith("<b>Digest close: ")
        assert "40,410.28" in digest
        assert unknown == "no digest named 'open' in [[digests]] (close)"
        assert balance.startswith(f"<b>{VISION}</b>")
        assert "Cash: <code>2,524.50</code>" in balance
        assert "Account value: <code>40,410.28</code>" in balance
        assert refused == "/silence changes state: only an admin chat may use it."
        assert silenced.startswith("🔕 Silenced <b>low-cash</b> on 12345678@vision until")
        assert all(str(m["chat_id"]) == CHAT_ID for m in bot_api.sent)  # not the stranger's

        # The next alert is held by the silence: it fires, and the chat gets no message of it.
        rt = daemon._rt
        assert rt is not None
        served.set_accounts(low_cash())
        await wait_until(lambda: bool(rt.pipeline.firing_alerts()))
        await wait_until(lambda: bool(rt.control.state.silences))
        async with asyncio.timeout(5):
            while not (records := await rt.store.notifications(since=0)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert [(r.rule, r.state) for r in records] == [("low-cash", "held")]
        await asyncio.sleep(1.5)
        assert not [t for t in bot_api.texts() if "FIRING" in t]
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)

    # A restart: what was answered is not answered again; a new command is.
    sent = len(bot_api.sent)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        bot_api.message("/alerts")
        await wait_until(lambda: len(bot_api.sent) > sent)
        await asyncio.sleep(1.0)
        assert len(bot_api.sent) == sent + 1
        assert "low-cash" in bot_api.texts()[-1]
        assert len(answers(bot_api, "<b>12345678@vision</b>")) == 1
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)


async def test_without_a_silence_the_alert_comes_with_its_buttons(
    sim: tuple[Simulator, str], bot_api: FakeBotApi, tmp_path: Path
) -> None:
    """The alert message carries "Acknowledge" and "Silence 1h"; the admin's press of
    "Acknowledge" acknowledges it (recorded with who) and the chat is told."""
    served, api_url = sim
    served.set_accounts(low_cash())
    path = write_config(tmp_path / "config.toml", api_url, bot_api.url)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    started = time.monotonic()
    try:
        await wait_until(lambda: any("reply_markup" in m for m in bot_api.sent))
        (alert,) = [m for m in bot_api.sent if "reply_markup" in m]
        ack, silence = alert["reply_markup"]["inline_keyboard"][0]
        assert (ack["text"], silence["text"]) == ("Acknowledge", "Silence 1h")
        bot_api.press(ack["callback_data"], user_id=ADMIN_ID, username="al")
        await wait_until(lambda: len(bot_api.toasts) >= 1)
        assert bot_api.toasts[0]["text"].startswith("✅ Acknowledged low-cash on 12345678@vision")
        rt = daemon._rt
        assert rt is not None
        (acked,) = await rt.store.acks()
        assert acked.author == "telegram:@al"
        assert time.monotonic() - started < 8
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)


async def test_a_reload_ends_the_long_poll_at_once_and_applies_new_admins(
    sim: tuple[Simulator, str], bot_api: FakeBotApi, tmp_path: Path
) -> None:
    """The bot of the old config stops mid long poll (not 25 s later) and the new one answers
    by the new ``admin_chat_ids``."""
    _, api_url = sim
    path = write_config(tmp_path / "config.toml", api_url, bot_api.url)
    daemon = Daemon(load_config(path), config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        bot_api.message("/silence low-cash 1h", user_id=MEMBER_ID)
        await wait_until(lambda: len(bot_api.sent) >= 1)
        assert bot_api.texts() == ["/silence changes state: only an admin chat may use it."]
        await asyncio.sleep(0.3)  # the next long poll is in flight
        path.write_text(
            path.read_text(encoding="utf-8").replace(
                f'admin_chat_ids = ["{ADMIN_ID}"]', f'admin_chat_ids = ["{MEMBER_ID}"]'
            ),
            encoding="utf-8",
        )
        started = time.monotonic()
        assert await daemon.reload()
        assert time.monotonic() - started < 3.0
        bot_api.message("/silence low-cash 1h", user_id=MEMBER_ID)
        await wait_until(lambda: len(bot_api.sent) >= 2)
        assert bot_api.texts()[1].startswith("🔕 Silenced <b>low-cash</b> until")
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)
