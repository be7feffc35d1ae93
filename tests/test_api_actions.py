"""``/api/v1/silences``, ``/api/v1/alerts/{fingerprint}/ack`` and ``/api/v1/notifications``
on a real aiohttp server on 127.0.0.1, over a real SQLite store, with a token configured (the
middleware refusing writes without it is ``test_webauth.py``'s and ``test_e2e_actions.py``'s).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cycle_helpers import LOW_CASH, config
from pydantic import SecretStr
from sinks_helpers import make_notification
from store_helpers import commit_poll

from monitor.api_actions import ActionsApi
from monitor.cycle import PollRecord
from monitor.models import ActiveAlert
from monitor.rules import SourceHealth
from monitor.store import SqliteStore, Store
from monitor.webauth import auth_middleware

AUTH = {"Authorization": "Bearer t0ken"}
NOW = datetime.now(tz=UTC)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Store, list[int]]]:
    store = await SqliteStore.open(tmp_path / "state.db")
    changes: list[int] = []
    actions = ActionsApi(
        store=lambda: store, config=lambda: config(LOW_CASH), changed=lambda: changes.append(1)
    )
    app = web.Application(middlewares=[auth_middleware(SecretStr("t0ken"))])
    actions.add_routes(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, store, changes
    finally:
        await client.close()
        await store.close()


async def test_a_silence_is_added_listed_and_ended(
    api: tuple[TestClient[Any, Any], Store, list[int]],
) -> None:
    client, _, changes = api
    body = {"rule": "low-cash", "labels": {"team": "risk"}, "until": "2999-01-01T00:00:00Z"}
    made = await client.post("/api/v1/silences", json=body, headers=AUTH)
    assert made.status == 201
    silence = await made.json()
    assert (silence["rule"], silence["labels"], silence["author"]) == (
        "low-cash",
        {"team": "risk"},
        "api",
    )
    assert silence["ends_at"] == "2999-01-01T00:00:00Z"
    listed = await (await client.get("/api/v1/silences", headers=AUTH)).json()
    assert [s["id"] for s in listed] == [silence["id"]]
    ended = await client.delete(f"/api/v1/silences/{silence['id']}", headers=AUTH)
    assert (ended.status, (await ended.json())["active"]) == (200, False)
    assert await (await client.get("/api/v1/silences", headers=AUTH)).json() == []
    every = await (await client.get("/api/v1/silences?all=true", headers=AUTH)).json()
    assert len(every) == 1
    assert len(changes) == 2


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"rule": "low-cash"}, "give exactly one of for, until"),
        ({"rule": "low-cash", "for": "2h", "until": "18:00"}, "give exactly one of for, until"),
        ({"rule": "nope", "for": "2h"}, "unknown rule 'nope'"),
        ({"source": "nowhere", "for": "2h"}, "unknown source 'nowhere'"),
        ({"rule": "low-cash", "for": "soon"}, "for: "),
        ({"rule": "low-cash", "for": "2h", "labels": ["team"]}, "labels: an object"),
        ({"rule": "low-cash", "for": "2h", "who": "me"}, "unknown keys: who"),
        ({"rule": 5, "for": "2h"}, "rule: a non-empty string"),
    ],
)
async def test_a_bad_silence_is_a_400_naming_the_problem(
    api: tuple[TestClient[Any, Any], Store, list[int]], body: dict[str, Any], error: str
) -> None:
    client, _, changes = api
    answer = await client.post("/api/v1/silences", json=body, headers=AUTH)
    assert answer.status == 400
    assert error in (await answer.json())["error"]
    assert changes == []


async def test_a_body_that_is_not_json_is_a_400(
    api: tuple[TestClient[Any, Any], Store, list[int]],
) -> None:
    client, _, _ = api
    answer = await client.post("/api/v1/silences", data="rule=x", headers=AUTH)
    assert (answer.status, await answer.json()) == (400, {"error": "the body is not JSON"})


async def test_an_alert_is_acknowledged_by_fingerprint(
    api: tuple[TestClient[Any, Any], Store, list[int]],
) -> None:
    client, store, changes = api
    started = NOW - timedelta(minutes=5)
    await commit_poll(
        store,
        "default",
        poll=PollRecord(started, ok=True, account_count=1),
        health=SourceHealth(),
        active={("low-cash", "12345678"): ActiveAlert("low-cash", "12345678", "fp-1", started)},
        outbox=[(make_notification(fingerprint="fp-1"), ["ops"])],
    )
    unknown = await client.post("/api/v1/alerts/fp-unknown/ack", headers=AUTH)
    assert unknown.status == 404
    answer = await client.post(
        "/api/v1/alerts/fp-1/ack", json={"comment": "on it", "author": "carol"}, headers=AUTH
    )
    assert answer.status == 200
    ack = await answer.json()
    assert (ack["fingerprint"], ack["acknowledged_by"], ack["comment"], ack["new"]) == (
        "fp-1",
        "carol",
        "on it",
        True,
    )
    again = await (await client.post("/api/v1/alerts/fp-1/ack", headers=AUTH)).json()
    assert again["new"] is False
    assert len(changes) == 2

    listed = await client.get(
        "/api/v1/notifications?since=1h&rule=low-cash&sink=ops&status=pending", headers=AUTH
    )
    [record] = await listed.json()
    assert (record["fingerprint"], record["state"], record["attempts"]) == ("fp-1", "pending", [])
    bad = await client.get("/api/v1/notifications?status=lost", headers=AUTH)
    assert bad.status == 400
