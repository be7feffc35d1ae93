"""``[http] auth_token``: who may use the HTTP server (monitor/webauth.py), on a real server."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from config_helpers import config, problems
from pydantic import SecretStr
from web_helpers import API, PAGES, serving_dashboard

from monitor.config import config_from_dict
from monitor.encoding import loads
from monitor.errors import ConfigError
from monitor.health import HealthServer, Readiness
from monitor.metrics import Metrics
from monitor.webauth import presented_token, token_matches

TOKEN = "web-TOKEN-SECRET-41"


async def _serve(token: str | None) -> tuple[HealthServer, str]:
    server = HealthServer(
        Metrics(), lambda: Readiness(True), auth_token=SecretStr(token) if token else None
    )
    return server, await server.start("127.0.0.1", 0)


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server, url = await _serve(TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            yield url, session
    finally:
        await server.close()


@pytest.fixture
async def open_server() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server, url = await _serve(None)
    try:
        async with aiohttp.ClientSession() as session:
            yield url, session
    finally:
        await server.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/", "/api/v1/anything"])
async def test_every_route_but_healthz_asks_for_the_token(
    guarded: tuple[str, aiohttp.ClientSession], path: str
) -> None:
    """Without the token every route answers 401 and offers bearer and basic auth (a browser
    prompts for basic); the answer never echoes the token."""
    url, session = guarded
    async with session.get(url + path) as response:
        assert response.status == 401
        offered = response.headers.getall("WWW-Authenticate")
        assert any(h.startswith("Bearer") for h in offered)
        assert any(h.startswith("Basic") for h in offered)
        body = await response.text()
    assert TOKEN not in body
    assert "Bearer <token>" in loads(body)["error"]


async def test_every_dashboard_page_and_api_route_asks_for_the_token(tmp_path: Path) -> None:
    """The dashboard's pages, static files and API: 401 without the token, 200 with it;
    /healthz stays open."""
    async with serving_dashboard(tmp_path, token=TOKEN) as web:
        for path in PAGES + API:
            status, body, headers = await web.get(path)
            assert status == 401, path
            assert TOKEN not in body
            assert headers["Content-Security-Policy"]
            ok = await web.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok[0] == 200, path
        assert (await web.get("/healthz"))[0] == 200


async def test_healthz_is_open_with_a_token(guarded: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = guarded
    async with session.get(url + "/healthz") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", _basic("anyone", TOKEN), _basic("", TOKEN)],
)
async def test_the_token_as_bearer_or_basic_password_opens_the_routes(
    guarded: tuple[str, aiohttp.ClientSession], header: str
) -> None:
    url, session = guarded
    async with session.get(url + "/metrics", headers={"Authorization": header}) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        "Bearer ",
        f"Token {TOKEN}",
        _basic(TOKEN, "wrong"),
        "Basic not-base64!",
        f"Basic {base64.b64encode(TOKEN.encode()).decode()}",  # no colon: no password
    ],
)
async def test_a_wrong_or_malformed_credential_is_refused(
    guarded: tuple[str, aiohttp.ClientSession], header: str
) -> None:
    url, session = guarded
    async with session.get(url + "/metrics", headers={"Authorization": header}) as response:
        assert response.status == 401


async def test_without_a_token_reads_are_open_and_writes_refused(
    open_server: tuple[str, aiohttp.ClientSession],
) -> None:
    """No token configured: GET works as before; anything that could change state is 403,
    so a write API is never open by accident."""
    url, session = open_server
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        async with session.request(method, url + "/metrics") as response:
            assert response.status == 403, method
            assert "auth_token_env" in loads(await response.read())["error"]


async def test_with_a_token_writes_reach_the_route(
    guarded: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = guarded
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(url + "/metrics", headers=headers) as response:
        assert response.status == 405  # the route's own answer: the middleware let it through


def test_presented_token_reads_both_schemes() -> None:
    assert presented_token(None) is None
    assert presented_token("Bearer  abc ") == "abc"
    assert presented_token(_basic("u", "p:q")) == "p:q"
    assert not token_matches("Bearer abc", SecretStr("abd"))


# --------------------------------------------------------------------------- config


def test_the_token_is_spelled_three_ways_and_at_most_once(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    loaded = config_from_dict(
        config(http={"listen": "127.0.0.1:9464", "auth_token_file": "token"}), base_dir=tmp_path
    )
    ref = loaded.http.auth_token_ref()
    assert ref is not None
    assert ref.file == tmp_path / "token"
    assert loaded.http.ui is True
    assert ref in loaded.secret_refs()
    found = problems(config(http={"auth_token": TOKEN, "auth_token_env": "X"}))
    assert any("give only one of auth_token, auth_token_env, auth_token_file" in p for p in found)
    assert all(TOKEN not in p for p in found)


def test_a_missing_token_variable_is_a_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BM_WEB_TOKEN", raising=False)
    loaded = config_from_dict(config(http={"auth_token_env": "BM_WEB_TOKEN"}), base_dir=Path("/"))
    assert loaded.missing_secrets() == [
        "http.auth_token_env: environment variable BM_WEB_TOKEN is not set"
    ]


def test_listen_from_the_environment_keeps_the_rest_of_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALANCE_MONITOR_LISTEN", "127.0.0.1:9999")
    loaded = config_from_dict(
        config(http={"ui": False, "auth_token_env": "BM_WEB_TOKEN"}), base_dir=Path("/")
    )
    assert loaded.http.listen == "127.0.0.1:9999"
    assert loaded.http.ui is False
    assert loaded.http.auth_token_env == "BM_WEB_TOKEN"
    monkeypatch.setenv("BALANCE_MONITOR_LISTEN", "nope")
    with pytest.raises(ConfigError, match="BALANCE_MONITOR_LISTEN: must be HOST:PORT"):
        config_from_dict(config(), base_dir=Path("/"))
