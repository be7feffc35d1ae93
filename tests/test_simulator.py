"""The simulated balances API, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from monitor.encoding import dumps, loads
from monitor.simulator import (
    CYCLE,
    DEMO_TOKEN,
    PDT_REASON,
    Simulator,
    build_app,
    serve_forever,
    start,
)
from monitor.testing import ManualTime

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VISION = "12345678@vision"
COR = "11111111@cor"
MONEY = (
    "account_value_total",
    "cash",
    "day_trading_buying_power",
    "margin_buying_power",
    "non_margin_buying_power",
    "position_market_value",
    "unsettled_cash",
    "cash_to_withdraw",
)
UPSTREAM_401 = {"code": "api_error", "message": "token incorrect or revoked"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def sim() -> Simulator:
    return Simulator(token=TOKEN)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_app(sim))) as client:
        yield client


async def fetch(client: Client) -> Any:
    response = await client.get("/accounts", headers=AUTH)
    assert response.status == 200
    return loads(await response.read())


async def by_account(client: Client) -> dict[str, dict[str, Any]]:
    return {account["account_number"]: account for account in await fetch(client)}


@pytest.fixture
async def cycle(client: Client) -> list[dict[str, dict[str, Any]]]:
    """Both accounts at every step of one cycle plus the first step of the next."""
    return [await by_account(client) for _ in range(CYCLE + 1)]


async def stats(client: Client) -> Any:
    response = await client.get("/_sim/stats")
    assert response.status == 200
    return await response.json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["missing", "wrong-token", "wrong-scheme", "no-scheme"],
)
async def test_accounts_without_the_token_is_upstream_401(
    client: Client, headers: dict[str, str]
) -> None:
    """Without ``Bearer <token>`` the answer is 401 with upstream's error body, and no step."""
    response = await client.get("/accounts", headers=headers)

    assert response.status == 401
    assert response.content_type == "application/json"
    assert await response.json() == UPSTREAM_401
    assert await stats(client) == {"requests": 1, "step": 0, "tokens_issued": 0, "refused": 1}


async def test_accounts_is_a_json_array_of_both_accounts(client: Client) -> None:
    """With the token, GET /accounts is a JSON array holding both documented accounts."""
    response = await client.get("/accounts", headers=AUTH)

    assert response.status == 200
    assert response.content_type == "application/json"
    accounts = loads(await response.read())
    assert [account["account_number"] for account in accounts] == [VISION, COR]
    vision = accounts[0]
    assert vision["trade_platform"] == "ETNA"
    assert vision["margin_type"] == "marginx2"
    assert vision["account_value_total"] == Decimal("40410.28")
    assert "restriction_reason" not in vision
    assert accounts[1]["trade_platform"] == "transaq"
    assert accounts[1]["margin_type"] == "cash"


async def test_money_is_written_with_two_decimal_digits(
    cycle: list[dict[str, dict[str, Any]]],
) -> None:
    """Every money field at every step is a JSON number with exactly two decimal digits."""
    for step in cycle:
        for account in step.values():
            for field in MONEY:
                assert isinstance(account[field], Decimal)
                assert account[field].as_tuple().exponent == -2, (field, account[field])
            assert type(account["daytrades_count"]) is int


async def test_totals_and_buying_power_stay_consistent(
    cycle: list[dict[str, dict[str, Any]]],
) -> None:
    """At every step total = cash + positions exactly, and marginx2 buys twice the cash power."""
    for step in cycle:
        for account in step.values():
            total = account["cash"] + account["position_market_value"]
            assert account["account_value_total"] == total
        vision = step[VISION]
        assert vision["margin_buying_power"] == 2 * vision["non_margin_buying_power"]


# step -> daytrades_count, cash_to_withdraw, restriction, restriction_reason of 12345678@vision
DEMO_TIMELINE = [
    (0, 0, Decimal("2524.54"), "none", None),
    (1, 0, Decimal("2524.54"), "none", None),
    (2, 1, Decimal("2524.54"), "none", None),
    (3, 2, Decimal("2524.54"), "none", None),
    (4, 3, Decimal("512.25"), "none", None),
    (5, 4, Decimal("512.25"), "none", None),
    (6, 4, Decimal("512.25"), "restricted", PDT_REASON),
    (7, 4, Decimal("512.25"), "restricted", PDT_REASON),
    (8, 4, Decimal("2524.54"), "restricted", PDT_REASON),
    (9, 4, Decimal("2524.54"), "restricted", PDT_REASON),
    (10, 4, Decimal("2524.54"), "none", None),
    (11, 4, Decimal("2524.54"), "none", None),
    (12, 0, Decimal("2524.54"), "none", None),
]


@pytest.mark.parametrize("row", DEMO_TIMELINE, ids=[f"step-{row[0]}" for row in DEMO_TIMELINE])
async def test_demo_timeline(
    cycle: list[dict[str, dict[str, Any]]],
    row: tuple[int, int, Decimal, str, str | None],
) -> None:
    """The demo account walks through the documented timeline, one step per request."""
    step, daytrades, cash_to_withdraw, restriction, reason = row
    vision = cycle[step][VISION]

    assert vision["daytrades_count"] == daytrades
    assert vision["cash_to_withdraw"] == cash_to_withdraw
    assert vision["restriction"] == restriction
    assert vision.get("restriction_reason") == reason
    assert ("restriction_reason" in vision) == (reason is not None)


async def test_demo_shows_every_event_within_one_cycle(
    cycle: list[dict[str, dict[str, Any]]],
) -> None:
    """Day trades reach 3, cash to withdraw dips under 1000 and recovers, restriction flips back."""
    vision = [step[VISION] for step in cycle]
    daytrades = [account["daytrades_count"] for account in vision]
    withdrawable = [account["cash_to_withdraw"] for account in vision]
    restrictions = [account["restriction"] for account in vision]

    assert daytrades[0] == 0
    assert max(daytrades[:6]) >= 3
    assert daytrades[CYCLE] == 0
    dip = next(i for i, value in enumerate(withdrawable) if value < 1000)
    assert any(value > 1000 for value in withdrawable[dip:])
    flip = restrictions.index("restricted")
    assert vision[flip]["restriction_reason"] == PDT_REASON
    assert vision[flip]["account_value_total"] < 25000
    assert "none" in restrictions[flip:]
    assert cycle[CYCLE] == cycle[0]


async def test_cash_account_changes_but_trips_nothing(
    cycle: list[dict[str, dict[str, Any]]],
) -> None:
    """11111111@cor moves a little but never restricts, day-trades or dips under 1000."""
    cor = [step[COR] for step in cycle]

    assert len({dumps(account) for account in cor}) > 1
    for account in cor:
        assert account["restriction"] == "none"
        assert account["daytrades_count"] == 0
        assert account["cash_to_withdraw"] > 1000


async def test_static_scenario_never_changes() -> None:
    """Scenario "static" serves the same two accounts at every step."""
    sim = Simulator(token=TOKEN, scenario="static")
    async with TestClient(TestServer(build_app(sim))) as client:
        bodies = [await fetch(client) for _ in range(CYCLE + 1)]

    assert all(body == bodies[0] for body in bodies)
    assert [account["account_number"] for account in bodies[0]] == [VISION, COR]


def test_unknown_scenario_is_refused() -> None:
    """A scenario name the simulator does not know is a ValueError."""
    with pytest.raises(ValueError, match="scenario"):
        Simulator(scenario="nope")


@pytest.mark.parametrize(
    "raw",
    [
        '[{"account_number":"1@x","cash":1.10},{"cash":"12"},7,null]',
        '{"not":"an array"}',
        "[]",
        '[{"account_number":"2@x","cash":-0.00,"extra":1E+2}]',
    ],
    ids=["malformed-records", "object", "empty", "odd-numbers"],
)
async def test_put_accounts_is_served_verbatim(client: Client, raw: str) -> None:
    """PUT /_sim/accounts replaces the scenario with exactly that JSON, decimal digits kept."""
    response = await client.put("/_sim/accounts", data=raw)
    assert response.status == 204

    for _ in range(2):
        response = await client.get("/accounts", headers=AUTH)
        assert response.status == 200
        assert await response.text() == dumps(loads(raw))


async def test_delete_accounts_restores_the_scenario(client: Client, sim: Simulator) -> None:
    """DELETE /_sim/accounts serves the scenario again, at the step it has counted up to."""
    await client.put("/_sim/accounts", data="[]")
    assert await fetch(client) == []

    response = await client.delete("/_sim/accounts")

    assert response.status == 204
    expected = sim.accounts()
    assert await fetch(client) == expected


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (500, "api_error", "internal server error"),
        (502, "api_error", "bad gateway"),
        (404, "not_found", "not found"),
        (400, "validation_error", "bad request"),
        (401, "api_error", "token incorrect or revoked"),
        (599, "api_error", "simulated failure"),
    ],
)
async def test_fail_answers_the_next_count_requests(
    client: Client, status: int, code: str, message: str
) -> None:
    """POST /_sim/fail makes the next N requests fail with upstream's error shape, then recovers."""
    response = await client.post("/_sim/fail", json={"status": status, "count": 2})
    assert response.status == 204

    for _ in range(2):
        response = await client.get("/accounts", headers=AUTH)
        assert response.status == status
        assert await response.json() == {"code": code, "message": message}
    assert len(await fetch(client)) == 2
    assert await stats(client) == {"requests": 3, "step": 1, "tokens_issued": 0, "refused": 0}


async def test_fail_sends_retry_after_and_a_raw_body(client: Client) -> None:
    """A failure carries its Retry-After header, raw body and content type."""
    await client.post(
        "/_sim/fail",
        json={"status": 429, "retry_after": 7, "body": "slow down", "content_type": "text/plain"},
    )

    response = await client.get("/accounts", headers=AUTH)

    assert response.status == 429
    assert response.headers["Retry-After"] == "7"
    assert response.content_type == "text/plain"
    assert await response.text() == "slow down"


async def test_fail_defaults_to_one_500(client: Client) -> None:
    """An empty failure spec is one 500 without Retry-After."""
    await client.post("/_sim/fail", json={})

    response = await client.get("/accounts", headers=AUTH)

    assert response.status == 500
    assert "Retry-After" not in response.headers
    assert len(await fetch(client)) == 2


async def test_fail_until_cleared(client: Client) -> None:
    """count -1 fails every request until DELETE /_sim/fail."""
    await client.post("/_sim/fail", json={"status": 503, "count": -1})
    for _ in range(3):
        assert (await client.get("/accounts", headers=AUTH)).status == 503

    response = await client.delete("/_sim/fail")

    assert response.status == 204
    assert len(await fetch(client)) == 2


async def test_unauthorized_requests_do_not_use_up_failures(client: Client) -> None:
    """The token is checked first: a 401 leaves the queued failure for the next request."""
    await client.post("/_sim/fail", json={"status": 500})

    assert (await client.get("/accounts")).status == 401
    assert (await client.get("/accounts", headers=AUTH)).status == 500


async def test_failures_and_raw_answers_queue_in_order(client: Client) -> None:
    """Queued answers are used in the order they were posted, then the scenario resumes."""
    await client.post("/_sim/fail", json={"status": 500})
    await client.post("/_sim/raw", json={"body": "nope", "count": 2})

    statuses_and_bodies = []
    for _ in range(4):
        response = await client.get("/accounts", headers=AUTH)
        statuses_and_bodies.append((response.status, await response.text()))

    assert [status for status, _ in statuses_and_bodies] == [500, 200, 200, 200]
    assert [body for _, body in statuses_and_bodies[1:3]] == ["nope", "nope"]
    assert loads(statuses_and_bodies[3][1])[0]["account_number"] == VISION
    assert await stats(client) == {"requests": 4, "step": 1, "tokens_issued": 0, "refused": 0}


@pytest.mark.parametrize(
    "body", ["not json", '{"a": 1}', "", "[1, 2"], ids=["text", "object", "empty", "truncated"]
)
async def test_raw_answers_status_200_with_the_body(client: Client, body: str) -> None:
    """POST /_sim/raw serves its body verbatim with status 200 and a JSON content type."""
    await client.post("/_sim/raw", json={"body": body})

    response = await client.get("/accounts", headers=AUTH)

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.text() == body


async def test_delay_postpones_the_answer(client: Client) -> None:
    """A status-200 failure without a body is the normal answer, after its delay."""
    await client.post("/_sim/fail", json={"status": 200, "delay": 0.2})
    loop = asyncio.get_running_loop()
    started = loop.time()

    accounts = await fetch(client)

    assert loop.time() - started >= 0.2
    assert accounts[0]["account_number"] == VISION


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sim/fail", "not json"),
        ("/_sim/fail", "[]"),
        ("/_sim/fail", '{"sttus": 500}'),
        ("/_sim/fail", '{"status": "500"}'),
        ("/_sim/fail", '{"status": 700}'),
        ("/_sim/fail", '{"count": 0}'),
        ("/_sim/fail", '{"delay": -1}'),
        ("/_sim/fail", '{"body": 5}'),
        ("/_sim/fail", '{"retry_after": []}'),
        ("/_sim/fail", '{"content_type": 5}'),
        ("/_sim/raw", "{}"),
        ("/_sim/raw", '{"body": "x", "status": 500}'),
        ("/_sim/step", "{}"),
        ("/_sim/step", '{"step": 1.5}'),
    ],
)
async def test_bad_control_requests_are_400(client: Client, path: str, body: str) -> None:
    """A control request the simulator cannot follow is a 400 validation_error, and no change."""
    response = await client.post(path, data=body)

    assert response.status == 400
    assert (await response.json())["code"] == "validation_error"
    assert len(await fetch(client)) == 2


async def test_put_accounts_refuses_invalid_json(client: Client) -> None:
    """PUT /_sim/accounts with a body that is not JSON is a 400."""
    response = await client.put("/_sim/accounts", data="[1,")

    assert response.status == 400
    assert (await response.json())["code"] == "validation_error"


async def test_stats_count_requests_and_show_the_next_step(client: Client) -> None:
    """Stats count every GET /accounts and the 401s among them; step is the one the next
    answer serves."""
    assert await stats(client) == {"requests": 0, "step": 0, "tokens_issued": 0, "refused": 0}
    await fetch(client)
    await client.get("/accounts")
    await fetch(client)

    assert await stats(client) == {"requests": 3, "step": 2, "tokens_issued": 0, "refused": 1}


@pytest.mark.parametrize(("step", "expected"), [(6, 6), (11, 11), (13, 1), (-1, 11)])
async def test_post_step_sets_the_next_step(client: Client, step: int, expected: int) -> None:
    """POST /_sim/step sets the step, modulo the cycle, and answers with the stats."""
    response = await client.post("/_sim/step", json={"step": step})

    assert response.status == 200
    assert await response.json() == {
        "requests": 0,
        "step": expected,
        "tokens_issued": 0,
        "refused": 0,
    }
    vision = (await by_account(client))[VISION]
    assert vision["daytrades_count"] == DEMO_TIMELINE[expected][1]


async def test_start_binds_a_real_port(sim: Simulator) -> None:
    """start() on port 0 returns the accounts URL with the port actually bound."""
    runner, url = await start(sim)
    try:
        host_port = url.removeprefix("http://").removesuffix("/accounts")
        host, port = host_port.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        async with aiohttp.ClientSession() as session, session.get(url, headers=AUTH) as response:
            assert response.status == 200
            assert len(loads(await response.read())) == 2
    finally:
        await runner.cleanup()


async def test_start_on_a_busy_port_raises(sim: Simulator) -> None:
    """start() on a port already taken raises OSError and leaves nothing running."""
    runner, url = await start(sim)
    try:
        port = int(url.removesuffix("/accounts").rsplit(":", 1)[1])
        with pytest.raises(OSError, match="address already in use"):
            await start(Simulator(), port=port)
    finally:
        await runner.cleanup()


async def test_cleanup_does_not_wait_for_a_client_that_gave_up(sim: Simulator) -> None:
    """A client timing out on a long delay does not hold up the runner's cleanup."""
    runner, url = await start(sim)
    sim_url = url.removesuffix("/accounts")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{sim_url}/_sim/fail", json={"delay": 30}) as response:
                assert response.status == 204
            with pytest.raises(TimeoutError):
                async with session.get(url, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.2)):
                    pass
    finally:
        async with asyncio.timeout(5):
            await runner.cleanup()


async def test_serve_forever_reports_the_url_and_stops(sim: Simulator) -> None:
    """serve_forever() calls on_ready with the URL, serves until stop is set, then returns."""
    stop = asyncio.Event()
    urls: list[str] = []
    ready = asyncio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    task = asyncio.create_task(serve_forever(sim, "127.0.0.1", 0, stop, on_ready))
    async with asyncio.timeout(5):
        await ready.wait()
    async with aiohttp.ClientSession() as session, session.get(urls[0], headers=AUTH) as response:
        assert response.status == 200

    stop.set()
    async with asyncio.timeout(5):
        await task
    assert sim.requests == 1


# --------------------------------------------------------------------------- OAuth2 mode

CREDENTIALS = {
    "client_id": "cid",
    "client_secret": "client-s3cret",
    "username": "trader@example.com",
    "password": "pa55word",
}
GRANT = {"grant_type": "password", **CREDENTIALS}


@pytest.fixture
def server_time() -> ManualTime:
    return ManualTime(0.0)


@pytest.fixture
async def oauth_client(server_time: ManualTime) -> AsyncIterator[Client]:
    sim = Simulator(oauth={**CREDENTIALS, "expires_in": 3}, clock=server_time)
    async with TestClient(TestServer(build_app(sim))) as client:
        yield client


async def issue(client: Client, form: dict[str, str] = GRANT) -> Any:
    response = await client.post("/connect/token", data=form)
    return response.status, await response.json()


async def accounts_status(client: Client, token: str) -> int:
    response = await client.get("/accounts", headers={"Authorization": f"Bearer {token}"})
    return response.status


async def test_token_endpoint_issues_a_bearer_token_that_reads_the_accounts(
    oauth_client: Client,
) -> None:
    """The password grant answers like upstream, and the token it issues reads /accounts."""
    status, body = await issue(oauth_client)

    assert status == 200
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3)
    assert await accounts_status(oauth_client, body["access_token"]) == 200
    assert (await stats(oauth_client))["tokens_issued"] == 1


async def test_each_grant_is_a_new_token_and_the_static_token_is_refused(
    oauth_client: Client,
) -> None:
    """Every grant issues a different token; in OAuth mode the static token is a 401."""
    _, first = await issue(oauth_client)
    _, second = await issue(oauth_client)

    assert first["access_token"] != second["access_token"]
    assert await accounts_status(oauth_client, first["access_token"]) == 200
    assert await accounts_status(oauth_client, DEMO_TOKEN) == 401


async def test_a_token_expires_by_the_server_clock(
    oauth_client: Client, server_time: ManualTime
) -> None:
    """A token is accepted until expires_in has passed on the simulator's clock, then is a
    401 counted as refused."""
    _, body = await issue(oauth_client)
    server_time.advance(2.9)
    assert await accounts_status(oauth_client, body["access_token"]) == 200

    server_time.advance(0.1)
    assert await accounts_status(oauth_client, body["access_token"]) == 401
    assert (await stats(oauth_client))["refused"] == 1


async def test_revoke_refuses_every_token_issued_so_far(oauth_client: Client) -> None:
    """POST /_sim/revoke makes every issued token a 401; a new grant works again."""
    _, old = await issue(oauth_client)

    response = await oauth_client.post("/_sim/revoke")
    assert response.status == 200
    assert await accounts_status(oauth_client, old["access_token"]) == 401

    _, new = await issue(oauth_client)
    assert await accounts_status(oauth_client, new["access_token"]) == 200
    assert await stats(oauth_client) == {
        "requests": 2,
        "step": 1,
        "tokens_issued": 2,
        "refused": 1,
    }


@pytest.mark.parametrize("key", sorted(CREDENTIALS))
async def test_wrong_credentials_are_invalid_grant(oauth_client: Client, key: str) -> None:
    """Any wrong credential is 400 invalid_grant with a description, and issues nothing."""
    status, body = await issue(oauth_client, GRANT | {key: "wrong"})

    assert status == 400
    assert body["error"] == "invalid_grant"
    assert body["error_description"]
    assert CREDENTIALS[key] not in json.dumps(body)
    assert (await stats(oauth_client))["tokens_issued"] == 0


async def test_other_grant_types_are_refused(oauth_client: Client) -> None:
    """Only grant_type=password is served."""
    status, body = await issue(oauth_client, GRANT | {"grant_type": "client_credentials"})

    assert status == 400
    assert body["error"] == "unsupported_grant_type"


async def test_without_oauth_there_is_no_token_endpoint(client: Client) -> None:
    """A static-token simulator answers the token endpoint with 404."""
    response = await client.post("/connect/token", data=GRANT)

    assert response.status == 404
