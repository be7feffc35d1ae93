"""End to end, issue 17: the Telegram bot of the real CLI (``python -m monitor run``) against
the simulator and a fake Bot API on 127.0.0.1: it answers within seconds, a restart (SIGTERM,
then ``run`` again) answers no command twice, and the bot token is in no log line."""

from __future__ import annotations

import signal

import pytest
from bot_helpers import ADMIN_ID, BOT_TOKEN, CHAT_ID, FakeBotApi
from e2e_helpers import VISION, Cli, MakeConfig, SimControl, eventually

pytestmark = pytest.mark.e2e

TOKEN = "e2e-bot-token-1717"


def telegram_sink(url: str) -> str:
    return (
        '\n[[sinks]]\nname = "tg"\ntype = "telegram"\n'
        f'bot_token = "{BOT_TOKEN}"\nchat_id = "{CHAT_ID}"\napi_url = "{url}"\n'
        f'commands = true\nadmin_chat_ids = ["{ADMIN_ID}"]\n'
    )


async def test_the_daemon_answers_and_a_restart_answers_nothing_twice(
    sim: SimControl, cli: Cli, make_config: MakeConfig, bot_api: FakeBotApi
) -> None:
    config = make_config(rules=telegram_sink(bot_api.url))
    daemon = await cli.start("run", "--config", config)
    await daemon.wait_event("baseline_recorded")
    await daemon.wait_event("telegram_bot_started")
    bot_api.message("/balance 12345678")
    await bot_api.wait_sent(1)
    assert bot_api.texts()[0].startswith(f"<b>{VISION}</b>")
    assert "Cash: <code>2,524.50</code>" in bot_api.texts()[0]
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0

    again = await cli.start("run", "--config", config)
    await again.wait_event("telegram_bot_started")
    bot_api.message("/help")
    await bot_api.wait_sent(2)
    await eventually(
        lambda: len([m for m, _ in bot_api.calls if m == "getUpdates"]) >= 3,
        what="another long poll",
    )
    again.send(signal.SIGTERM)
    assert await again.wait() == 0
    assert len(bot_api.sent) == 2
    assert bot_api.texts()[1].startswith("<b>balance-monitor</b> answers:")
    for proc in (daemon, again):
        assert BOT_TOKEN not in proc.stderr
        assert BOT_TOKEN.split(":")[1] not in proc.stderr
