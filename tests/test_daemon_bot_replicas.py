"""The Telegram bot with two replicas in-process on the real PostgreSQL of ``pg_helpers``: only
the replica doing the singleton work answers, and a hand-over neither replays nor skips a
command (the offset is in the shared database)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bot_helpers import ADMIN_ID, BOT_TOKEN, CHAT_ID, FakeBotApi

from monitor.config import Config, config_from_dict
from monitor.daemon import Daemon, Exit
from monitor.simulator import DEMO_TOKEN, Simulator

#: Real seconds in-process: handed out first among the workers (tests/conftest.py).
pytestmark = pytest.mark.slow


async def until(condition: Callable[[], bool], limit: float = 15.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - state of daemons in this loop
            await asyncio.sleep(0.05)


def replica_config(tmp_path: Path, db: str, name: str, api_url: str, bot_url: str) -> Config:
    import pg_helpers

    cluster = pg_helpers.cluster()
    data: dict[str, Any] = {
        "schedule": {"interval": "1s"},
        "state": {"url": db, "password": cluster.password, "replica": name, "lease": "3s"},
        "sources": [{"name": "s0", "url": api_url, "token": DEMO_TOKEN}],
        "sinks": [
            {
                "type": "telegram",
                "name": "tg",
                "bot_token": BOT_TOKEN,
                "chat_id": CHAT_ID,
                "api_url": bot_url,
                "commands": True,
                "admin_chat_ids": [ADMIN_ID],
            }
        ],
    }
    return config_from_dict(data, base_dir=tmp_path)


async def test_one_replica_answers_and_a_hand_over_answers_each_command_once(
    tmp_path: Path, static_api: tuple[Simulator, str], bot_api: FakeBotApi
) -> None:
    import pg_helpers

    cluster = pg_helpers.cluster()
    db = cluster.url(cluster.new_schema())
    _, url = static_api
    running: list[tuple[Daemon, asyncio.Event, asyncio.Task[Exit]]] = []
    for name in ("a", "b"):
        daemon = Daemon(replica_config(tmp_path, db, name, url, bot_api.url))
        stop = asyncio.Event()
        running.append((daemon, stop, asyncio.create_task(daemon.run(stop))))
    try:
        await until(
            lambda: any(d.replica is not None and d.replica.singleton for d, _, _ in running)
        )
        for n in range(3):
            bot_api.message(f"/balance x{n}")
        await until(lambda: len(bot_api.sent) >= 3)

        # The replica doing the singleton work stops; the other takes over from the offset.
        holder = next(i for i, (d, _, _) in enumerate(running) if d.replica.singleton)
        daemon, stop, task = running[holder]
        stop.set()
        async with asyncio.timeout(10):
            assert await task is Exit.OK
        other = running[1 - holder][0]
        for n in range(3, 5):
            bot_api.message(f"/balance x{n}")
        await until(lambda: other.replica.singleton, limit=20)
        await until(lambda: len(bot_api.sent) >= 5, limit=20)
        await asyncio.sleep(1.5)
        answered = [t.split("</code>")[0] for t in bot_api.texts()]
        assert answered == [f"No account matches <code>x{n}" for n in range(5)]
    finally:
        for _, stop, _ in running:
            stop.set()
        await asyncio.gather(*(task for _, _, task in running), return_exceptions=True)
