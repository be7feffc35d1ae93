"""``[heartbeat]``: when a beat is due, and a ping against a real receiver on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sinks_helpers import Reply, serving, unused_url

from monitor.config import HeartbeatConfig
from monitor.errors import SinkError
from monitor.heartbeat import STUCK_AFTER, Heartbeat, unhealthy

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("polls", "oldest", "reason"),
    [
        ([("default", True), ("fund", True)], None, None),
        ([("default", True)], NOW - STUCK_AFTER + 1, None),
        ([("default", True), ("fund", False)], None, "the last poll of source fund failed"),
        ([("default", None)], None, "source default has not been polled yet"),
        (
            [("default", True)],
            NOW - STUCK_AFTER - 120,
            "the outbox is stuck: a notification has waited 17 minutes",
        ),
    ],
)
def test_a_beat_is_due_only_while_every_source_polls_and_the_outbox_moves(
    polls: list[tuple[str, bool | None]], oldest: float | None, reason: str | None
) -> None:
    assert unhealthy(polls, oldest, NOW) == reason


def beat_config(url: str, **fields: object) -> HeartbeatConfig:
    return HeartbeatConfig(url=SecretStr(url), **fields)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_ping_reaches_the_url_with_its_method(
    session: aiohttp.ClientSession, method: str
) -> None:
    """The configured method, to the configured path, with our User-Agent."""
    seen: list[tuple[str, str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("User-Agent", "")))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/ping/uuid-secret"))
        await Heartbeat(beat_config(url, method=method), SecretStr(url), session).ping()
    finally:
        await server.close()
    assert [(m, p) for m, p, _ in seen] == [(method, "/ping/uuid-secret")]
    assert seen[0][2].startswith("balance-monitor/")


async def test_a_failed_ping_never_names_the_url(session: aiohttp.ClientSession) -> None:
    async with serving("/ping/uuid-secret", reply=Reply(status=500)) as receiver:
        config = beat_config(receiver.url, method="POST")
        with pytest.raises(SinkError) as info:
            await Heartbeat(config, SecretStr(receiver.url), session).ping()
    assert "uuid-secret" not in str(info.value)
    down = unused_url("/ping/uuid-secret")
    with pytest.raises(SinkError) as info:
        await Heartbeat(beat_config(down), SecretStr(down), session).ping()
    assert "uuid-secret" not in str(info.value)
