"""The simulator's account stream and its control endpoints, driven over real HTTP and a real
WebSocket on 127.0.0.1 (aiohttp's client)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.simulator import DEMO_TOKEN, Simulator, start

AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}"}
VISION = "12345678@vision"


@pytest.fixture
async def api() -> AsyncIterator[tuple[Simulator, str, aiohttp.ClientSession]]:
    sim = Simulator(scenario="static")
    runner, url = await start(sim)
    try:
        async with aiohttp.ClientSession() as session:
            yield sim, url.removesuffix("/accounts"), session
    finally:
        await runner.cleanup()


async def subscribed(session: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{base}/accounts", headers=AUTH)
    await ws.send_str(json.dumps({"action": "subscribeBalance", "account": VISION}))
    return ws


async def test_a_subscription_gets_its_balances_and_each_change(
    api: tuple[Simulator, str, aiohttp.ClientSession],
) -> None:
    sim, base, session = api
    ws = await subscribed(session, base)
    first = await ws.receive_json(timeout=2)
    assert first["t"] == "b"
    assert [r["account_number"] for r in first["data"]] == [VISION]
    records = sim.accounts()
    records[0]["cash"] = 1
    sim.set_accounts(records)
    second = await ws.receive_json(timeout=2)
    assert second["data"][0]["cash"] == 1
    await ws.close()


async def test_drop_error_push_and_stats(
    api: tuple[Simulator, str, aiohttp.ClientSession],
) -> None:
    _, base, session = api
    ws = await subscribed(session, base)
    await ws.receive_json(timeout=2)
    async with session.post(f"{base}/_sim/stream/error", json={"code": "E1", "description": "d"}):
        pass
    assert await ws.receive_json(timeout=2) == {"t": "e", "code": "E1", "description": "d"}
    async with session.post(f"{base}/_sim/stream/push"):
        pass
    assert (await ws.receive_json(timeout=2))["t"] == "b"
    async with session.get(f"{base}/_sim/stream/stats") as response:
        stats = await response.json()
    assert stats == {
        "connections": 1,
        "connects": 1,
        "refused": 0,
        "subscribes": 1,
        "pings": 0,
        "messages": 2,
    }
    async with session.post(f"{base}/_sim/stream/drop") as response:
        assert await response.json() == {"dropped": 1}
    closed = await ws.receive(timeout=2)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001 or closed.data == 1001


async def test_refuse_with_a_status_or_by_closing_at_once(
    api: tuple[Simulator, str, aiohttp.ClientSession],
) -> None:
    sim, base, session = api
    async with session.post(f"{base}/_sim/stream/refuse", json={"count": 1, "status": 401}):
        pass
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(f"{base}/accounts", headers=AUTH)
    assert refused.value.status == 401
    async with session.post(f"{base}/_sim/stream/refuse", json={"count": 1}):
        pass
    ws = await session.ws_connect(f"{base}/accounts", headers=AUTH)
    assert (await ws.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008
    ok = await subscribed(session, base)  # the refusals are used up
    assert (await ok.receive_json(timeout=2))["t"] == "b"
    await ok.close()
    assert sim.stream.refused == 2


async def test_a_wrong_token_is_closed_at_once(
    api: tuple[Simulator, str, aiohttp.ClientSession],
) -> None:
    _, base, session = api
    ws = await session.ws_connect(f"{base}/accounts", headers={"Authorization": "Bearer nope"})
    assert (await ws.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008


async def test_throttle_sends_at_most_one_balances_message_per_period(
    api: tuple[Simulator, str, aiohttp.ClientSession],
) -> None:
    """Three changes within the throttle: the first goes at once, the last after the period,
    the one between is never sent."""
    sim, base, session = api
    async with session.post(f"{base}/_sim/stream/throttle", json={"seconds": 0.3}) as response:
        assert response.status == 204
    ws = await subscribed(session, base)
    await ws.receive_json(timeout=2)
    for cash in (1, 2, 3):
        records = sim.accounts()
        records[0]["cash"] = cash
        sim.set_accounts(records)
        await asyncio.sleep(0.01)
    last = await ws.receive_json(timeout=2)
    assert last["data"][0]["cash"] == 3
    assert sim.stream.messages == 2


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("refuse", {"count": -1}),
        ("refuse", {"status": 200}),
        ("refuse", {"nope": 1}),
        ("throttle", {"seconds": -1}),
        ("throttle", {"seconds": "x"}),
    ],
)
async def test_a_bad_control_request_is_a_400(
    api: tuple[Simulator, str, aiohttp.ClientSession], path: str, body: dict[str, object]
) -> None:
    _, base, session = api
    async with session.post(f"{base}/_sim/stream/{path}", json=body) as response:
        assert response.status == 400
