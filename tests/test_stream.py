"""The account stream client (:class:`monitor.stream.AccountStream`) against the simulator's
stream on 127.0.0.1 (a real aiohttp WebSocket server), with short timings.

What a production client must do, each behaviour once: subscribe as specified, hand pushes on,
ping, notice a dead socket, reconnect with backoff and subscribe again, renew a refused token
once, reconnect with a renewed token, log an error message, ignore unknown types.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from monitor import encoding
from monitor.auth import StaticToken
from monitor.models import Account, ParseResult
from monitor.parse import parse_body
from monitor.simulator import DEMO_TOKEN, Simulator, start
from monitor.stream import AccountStream, backoff
from monitor.testing import ManualClock

VISION, COR = "12345678@vision", "11111111@cor"


class Target:
    """A PushTarget that keeps the accounts the simulator serves and records every push."""

    def __init__(self, sim: Simulator) -> None:
        records = encoding.dumps(sim.current_records()).encode()
        self.state: dict[str, Account] | None = dict(parse_body(records).accounts)
        self.pushes: list[ParseResult] = []

    @property
    def accounts(self) -> Mapping[str, Account] | None:
        return self.state

    async def push(self, seen: ParseResult) -> int:
        self.pushes.append(seen)
        return 0


class Tokens:
    """A renewable token provider: hands out ``tokens`` in order, one more per invalidate."""

    renewable = True

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.index = 0
        self.invalidated = 0

    async def token(self) -> SecretStr:
        return SecretStr(self.tokens[min(self.index, len(self.tokens) - 1)])

    def invalidate(self) -> None:
        self.invalidated += 1
        self.index += 1


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds (a short real wait, checked every 10 ms)."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - a condition on another process's state
            await asyncio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    simulator = Simulator(scenario="static")
    runner, url = await start(simulator)
    try:
        yield simulator, url.replace("http", "ws", 1)
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def stream(
    url: str,
    session: aiohttp.ClientSession,
    target: Target,
    tokens: Any = None,
    **options: Any,
) -> AccountStream:
    settings: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, **options}
    return AccountStream(
        "default",
        url,
        session,
        tokens if tokens is not None else StaticToken(SecretStr(DEMO_TOKEN)),
        target,
        clock=ManualClock(),
        **settings,
    )


async def test_it_subscribes_to_every_account_as_specified_and_hands_pushes_on(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    """One subscribeBalance per account, exactly as Lime documents it; the balances the server
    sends back reach the target as a parsed snapshot."""
    simulator, url = sim
    target = Target(simulator)
    client = stream(url, session, target)
    client.start()
    try:
        await until(lambda: len(target.pushes) >= 1)
        sent = sorted(simulator.stream.received)
        assert [json.loads(t) for t in sent] == [
            {"action": "subscribeBalance", "account": n} for n in sorted((COR, VISION))
        ]
        assert set(target.pushes[-1].accounts) <= {VISION, COR}
        assert client.state.connected
        assert client.state.subscribed == 2
    finally:
        await client.close()
    assert not client.state.connected


async def test_accounts_that_appear_later_are_subscribed(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    """After a poll brings a new account, wake() subscribes to it on the open connection."""
    simulator, url = sim
    target = Target(simulator)
    assert target.state is not None
    cor = target.state.pop(COR)
    client = stream(url, session, target)
    client.start()
    try:
        await until(lambda: simulator.stream.subscribes == 1)
        target.state[COR] = cor
        client.wake()
        await until(lambda: simulator.stream.subscribes == 2)
        assert simulator.stream.connects == 1
    finally:
        await client.close()


@pytest.mark.parametrize("turns", range(6))
async def test_close_right_after_a_wake_still_closes_at_once(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession, turns: int
) -> None:
    """A wake (a poll just ended) and a close (the daemon stops) in the same few loop turns:
    the close ends the stream at once. On Python 3.11, ``asyncio.wait_for`` returned the
    event's result and swallowed the cancel when both landed together, and the watcher went
    back to sleep for ``token_check`` with the daemon's shutdown waiting on it."""
    simulator, url = sim
    target = Target(simulator)
    client = stream(url, session, target, token_check=30.0)
    client.start()
    await until(lambda: client.state.subscribed == 2)
    client.wake()
    for _ in range(turns):
        await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await client.close()
    assert not client.state.connected


async def test_accounts_gone_from_the_polls_are_unsubscribed(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    simulator, url = sim
    target = Target(simulator)
    client = stream(url, session, target)
    client.start()
    try:
        await until(lambda: simulator.stream.subscribes == 2)
        assert target.state is not None
        del target.state[COR]
        client.wake()
        unsubscribe = {"action": "unsubscribeBalance", "account": COR}
        await until(lambda: any(json.loads(t) == unsubscribe for t in simulator.stream.received))
        await until(lambda: client.state.subscribed == 1)
    finally:
        await client.close()


async def test_a_dropped_connection_is_resumed_and_subscribed_again(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    """The server closes the socket: the client connects again and subscribes again."""
    simulator, url = sim
    target = Target(simulator)
    client = stream(url, session, target, settle=0.0)
    client.start()
    try:
        await until(lambda: simulator.stream.subscribes == 2 and target.pushes != [])
        await simulator.stream.drop()
        await until(lambda: simulator.stream.connects == 2 and simulator.stream.subscribes == 4)
        assert client.state.reconnects == 1
        await until(lambda: client.state.connected)
    finally:
        await client.close()


async def test_a_token_refused_at_connect_is_renewed_once_then_backs_off(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    """A 401 at the handshake renews the token and connects at once; refused again, it waits
    (backoff) instead of renewing in a loop, with one warning for the same failure."""
    simulator, url = sim
    simulator.stream.refuse_count, simulator.stream.refuse_status = 3, 401
    tokens = Tokens(DEMO_TOKEN)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    client = stream(url, session, Target(simulator), tokens, sleep=sleep)
    with capture_logs() as logs:
        client.start()
        try:
            await until(lambda: client.state.connected)
        finally:
            await client.close()
    assert tokens.invalidated == 1
    assert len(waits) == 2  # the second and third refusal wait
    assert waits[1] > waits[0] * 1.3  # exponential
    assert [e["event"] for e in logs].count("stream_token_refused") == 1
    # The same failure again is not a second warning (an outage is not a warning a minute).
    assert [e["log_level"] for e in logs if e["event"] == "stream_down"] == ["warning", "debug"]
    assert all(DEMO_TOKEN not in str(e) for e in logs)


async def test_a_close_right_after_connect_counts_as_a_refused_token(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    """Lime closes a denied token's socket at once: renewed once, like a 401."""
    simulator, url = sim
    simulator.stream.refuse_count, simulator.stream.refuse_status = 1, 0
    tokens = Tokens(DEMO_TOKEN)
    client = stream(url, session, Target(simulator), tokens, settle=1.0)
    client.start()
    try:
        await until(lambda: client.state.connected and simulator.stream.connects == 2)
    finally:
        await client.close()
    assert tokens.invalidated == 1


async def test_a_renewed_token_means_a_new_connection_with_it(
    session: aiohttp.ClientSession,
) -> None:
    """When the token provider has a new token (renewed before 03:00 ET), the stream connects
    again with it; the old connection is closed."""
    simulator = Simulator(
        scenario="static",
        oauth={"client_id": "c", "client_secret": "s", "username": "u", "password": "p"},
    )
    first, second = simulator.issue_token(), simulator.issue_token()
    runner, url = await start(simulator)
    tokens = Tokens(first, second)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    client = stream(
        url.replace("http", "ws", 1), session, Target(simulator), tokens, token_check=0.05,
        sleep=sleep,
    )  # fmt: skip
    try:
        with capture_logs() as logs:
            client.start()
            await until(lambda: simulator.stream.connects == 1 and client.state.connected)
            tokens.index = 1  # renewed elsewhere (a poll, or renew_at)
            await until(lambda: simulator.stream.connects == 2 and client.state.connected)
        assert len(simulator.stream.clients) == 1
        assert tokens.invalidated == 0
        assert waits == []  # at once, no backoff
        assert "stream_down" not in [e["event"] for e in logs]
        assert "stream_token_renewed" in [e["event"] for e in logs]
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_error_message_is_logged_with_its_code_and_the_stream_goes_on(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    simulator, url = sim
    counted: list[str] = []
    target = Target(simulator)
    client = stream(url, session, target, on_message=counted.append)
    with capture_logs() as logs:
        client.start()
        try:
            await until(lambda: target.pushes != [])
            await simulator.stream.broadcast({"t": "e", "code": "E42", "description": "throttled"})
            await until(lambda: "e" in counted)
            await simulator.stream.broadcast({"t": "zz", "data": []})
            await until(lambda: "zz" in counted)
            assert client.state.connected
        finally:
            await client.close()
    errors = [e for e in logs if e["event"] == "stream_error_message"]
    assert [(e["code"], e["description"], e["log_level"]) for e in errors] == [
        ("E42", "throttled", "warning")
    ]
    ignored = [e for e in logs if e["event"] == "stream_message_ignored"]
    assert [(e["type"], e["log_level"]) for e in ignored] == [("zz", "debug")]
    assert simulator.stream.connects == 1


async def test_an_unusable_or_binary_message_is_logged_and_the_stream_goes_on(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    simulator, url = sim
    counted: list[str] = []
    target = Target(simulator)
    client = stream(url, session, target, on_message=counted.append)
    with capture_logs() as logs:
        client.start()
        try:
            await until(lambda: target.pushes != [])
            for connected in list(simulator.stream.clients):
                await connected.ws.send_str("not json")
                await connected.ws.send_bytes(b"\x00")
            await until(lambda: "invalid" in counted)
            await until(lambda: any(e["event"] == "stream_message_ignored" for e in logs))
            assert client.state.connected
        finally:
            await client.close()
    unusable = [e for e in logs if e["event"] == "stream_message_unusable"]
    assert unusable[0]["error"].startswith("stream message is not JSON")
    assert simulator.stream.connects == 1


async def test_pings_are_sent_and_a_dead_socket_is_reconnected(
    sim: tuple[Simulator, str], session: aiohttp.ClientSession
) -> None:
    """With a heartbeat, the client pings; a server that stops answering is dropped and the
    client connects again."""
    simulator, url = sim
    client = stream(url, session, Target(simulator), heartbeat=0.1)
    client.start()
    try:
        await until(lambda: simulator.stream.pings >= 2)
        assert simulator.stream.connects == 1
        simulator.stream.answer_pings = False
        await until(lambda: simulator.stream.connects >= 2, limit=5)
        assert client.state.reconnects >= 1
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (0, 0.5, 1.0),
        (1, 0.5, 2.0),
        (2, 0.5, 4.0),
        (5, 0.5, 32.0),
        (6, 0.5, 60.0),
        (40, 0.5, 60.0),
        (0, 0.0, 0.8),
        (0, 0.999999, 1.2),
        (6, 0.999999, 60.0),
        (5, 0.0, 25.6),
    ],
)
def test_backoff_doubles_from_one_second_to_sixty_with_jitter(
    attempt: int, jitter: float, expected: float
) -> None:
    assert backoff(attempt, jitter) == pytest.approx(expected, abs=1e-4)
