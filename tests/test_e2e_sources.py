"""End to end, issue 4: the real CLI as a subprocess against simulators on 127.0.0.1 that play
the OAuth2 token endpoint (short-lived tokens, revocation, bad credentials) and several sources
side by side (one changing, one failing), with a webhook receiver recording what arrives.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e_helpers import (
    COR,
    LOW_CASH_RULE,
    PAYLOAD_KEYS,
    VISION,
    Cli,
    Hook,
    Proc,
    SimControl,
    account,
    child_env,
    eventually,
)

from monitor.simulator import Simulator, start

pytestmark = pytest.mark.e2e

CLIENT_ID = "balance-monitor-e2e"
CLIENT_SECRET = "e2e-cl13nt-S3CRET"
USERNAME = "trader@example.com"
PASSWORD = "e2e-pa55-W0RD"
WRONG_PASSWORD = "e2e-wr0ng-PA55"
SECRET_ENV = "BM_E2E_CLIENT_SECRET"
PASSWORD_ENV = "BM_E2E_PASSWORD"
WRONG_PASSWORD_ENV = "BM_E2E_WRONG_PASSWORD"
FAMILY_TOKEN = "e2e-family-T0KEN"
FUND_TOKEN = "e2e-fund-T0KEN"
OAUTH = {
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "username": USERNAME,
    "password": PASSWORD,
}
FUND_ONLY_RULE = """
[[rules]]
name = "fund-low-cash"
type = "threshold"
field = "cash_to_withdraw"
op = "<"
value = 1000
sources = ["fund"]
"""

Serve = Callable[[Simulator], Awaitable[SimControl]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def serve(session: aiohttp.ClientSession) -> AsyncIterator[Serve]:
    """Serves simulators (two healthy accounts each) until the test ends."""
    runners = []

    async def serve_one(sim: Simulator) -> SimControl:
        runner, url = await start(sim)
        runners.append(runner)
        control = SimControl(url, session)
        await control.set_accounts(healthy())
        return control

    try:
        yield serve_one
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = await Hook().start()
    try:
        yield receiver
    finally:
        await receiver.aclose()


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Cli]:
    """CLI subprocesses with every secret in their environment; reaped at the end."""
    env = child_env() | {
        SECRET_ENV: CLIENT_SECRET,
        PASSWORD_ENV: PASSWORD,
        WRONG_PASSWORD_ENV: WRONG_PASSWORD,
        "BM_E2E_FAMILY_TOKEN": FAMILY_TOKEN,
        "BM_E2E_FUND_TOKEN": FUND_TOKEN,
    }
    runner = Cli(tmp_path, env)
    try:
        yield runner
    finally:
        await runner.aclose()


def healthy() -> list[dict[str, Any]]:
    return [account(VISION), account(COR, trade_platform="transaq", margin_type="cash")]


def low_cash() -> list[dict[str, Any]]:
    return [account(VISION, cash_to_withdraw=Decimal("512.25")), healthy()[1]]


def q(text: str) -> str:
    """A TOML basic string."""
    return json.dumps(text)


def common_toml(hook: Hook, state: Path, rules: str = "") -> str:
    """Everything but the sources: 1 s polls, fast retries, the webhook receiver."""
    return f"""
[schedule]
interval = "1s"

[state]
path = {q(str(state))}

[delivery]
initial_backoff = "0.2s"
max_backoff = "1s"

[[sinks]]
name = "hook"
type = "webhook"
url = {q(hook.url)}
{rules}"""


def oauth_config(
    tmp_path: Path,
    api: SimControl,
    hook: Hook,
    *,
    password_env: str = PASSWORD_ENV,
    api_extra: str = "",
) -> Path:
    """[api] with [api.oauth] against the simulator; secrets from the environment."""
    token_url = api.url.removesuffix("/accounts") + "/connect/token"
    text = f"""\
[api]
url = {q(api.url)}
timeout = "5s"
{api_extra}

[api.oauth]
token_url = {q(token_url)}
client_id = {q(CLIENT_ID)}
client_secret_env = {q(SECRET_ENV)}
username = {q(USERNAME)}
password_env = {q(password_env)}
renew_before = "1s"
timeout = "5s"
{common_toml(hook, tmp_path / "state.db")}"""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, leaked
    assert "Traceback" not in text, text


async def stop(daemon: Proc) -> None:
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0, daemon.stderr


# --------------------------------------------------------------------------- OAuth2


async def test_polls_continue_across_many_token_renewals(
    tmp_path: Path, serve: Serve, hook: Hook, cli: Cli
) -> None:
    """With tokens that live 3 s, renewed 1 s early, a 1 s poll runs across several renewals
    without one refused or failed poll; no secret and no access token reaches the output."""
    sim = Simulator(token="static-unused", oauth=OAUTH | {"expires_in": 3})
    api = await serve(sim)
    daemon = await cli.start("run", "--config", oauth_config(tmp_path, api, hook))

    await eventually(lambda: sim.tokens_issued >= 4 or None, what="four tokens issued")
    await api.wait_requests(sim.requests + 1)
    await stop(daemon)

    assert sim.refused == 0
    assert sim.requests >= 6
    assert daemon.events("poll_failed") == []
    assert daemon.events("token_refused") == []
    issued = daemon.events("token_issued", source="default", expires_in=3)
    assert len(issued) == sim.tokens_issued
    assert_no_secret(daemon.stdout + daemon.stderr, [CLIENT_SECRET, PASSWORD, *sim.issued])


async def test_revoked_tokens_lead_to_exactly_one_renewal(
    tmp_path: Path, serve: Serve, hook: Hook, cli: Cli
) -> None:
    """Revoking every token: the next poll's 401 renews the token once and retries at once,
    so no poll fails and polling goes on with the new token."""
    sim = Simulator(token="static-unused", oauth=OAUTH | {"expires_in": 3600})
    api = await serve(sim)
    daemon = await cli.start("run", "--config", oauth_config(tmp_path, api, hook))
    await daemon.wait_event("baseline_recorded")
    await api.wait_requests(sim.requests + 1)

    await api.revoke()
    refused = await daemon.wait_event("token_refused")
    await daemon.wait_event("token_issued", count=2)
    await api.wait_requests(sim.requests + 3)
    await stop(daemon)

    assert refused["source"] == "default"
    assert len(daemon.events("token_refused")) == 1
    assert len(daemon.events("token_issued")) == 2
    assert (sim.refused, sim.tokens_issued) == (1, 2)
    assert daemon.events("poll_failed") == []
    assert_no_secret(daemon.stdout + daemon.stderr, [CLIENT_SECRET, PASSWORD, *sim.issued])


async def test_bad_credentials_fail_polls_clearly_then_source_down(
    tmp_path: Path, serve: Serve, hook: Hook, cli: Cli
) -> None:
    """A refused password grant is a failed poll naming invalid_grant (one token request per
    poll, the API never asked), then source_down after down_after; no secret anywhere."""
    sim = Simulator(token="static-unused", oauth=OAUTH | {"expires_in": 3600})
    api = await serve(sim)
    config = oauth_config(
        tmp_path, api, hook, password_env=WRONG_PASSWORD_ENV, api_extra="down_after = 2"
    )
    started = time.monotonic()
    daemon = await cli.start("run", "--config", config)

    failed = await daemon.wait_event("poll_failed")
    [down] = await eventually(
        lambda: hook.matching(rule="source_down", status="firing"), what="source_down"
    )
    await stop(daemon)
    elapsed = time.monotonic() - started

    assert failed["error"] == (
        "token request refused: HTTP 400 (invalid_grant: invalid client, username or password)"
    )
    assert (down["source"], down["account_number"]) == ("default", None)
    assert "invalid_grant" in down["summary"]
    assert set(down) == PAYLOAD_KEYS
    assert sim.requests == 0
    assert sim.tokens_issued == 0
    assert len(daemon.events("poll_failed")) <= elapsed + 1  # no tight retry loop
    secrets = [CLIENT_SECRET, WRONG_PASSWORD, PASSWORD]
    assert_no_secret(daemon.stdout + daemon.stderr, secrets)
    assert_no_secret(b"".join(p.body for p in hook.posts).decode(), secrets)


async def test_check_config_refuses_oauth_together_with_a_token(tmp_path: Path, cli: Cli) -> None:
    """[api.oauth] and a token are mutually exclusive: exit 2 naming the keys."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""\
[api]
url = "https://api.lime.co/accounts"
token_env = "LIME_TOKEN"

[api.oauth]
token_url = "https://auth.lime.co/connect/token"
client_id = {q(CLIENT_ID)}
client_secret = {q(CLIENT_SECRET)}
username = {q(USERNAME)}
password_env = {q(PASSWORD_ENV)}

[[sinks]]
name = "console"
type = "log"
""",
        encoding="utf-8",
    )

    result = await cli.run("check-config", "--config", path)

    assert result.code == 2, result.output
    assert "api: give either oauth or token_env, not both" in result.stderr
    assert result.stdout == ""
    assert_no_secret(result.output, [CLIENT_SECRET, PASSWORD])


async def test_check_config_summarises_oauth_and_notes_missing_secrets(
    tmp_path: Path, serve: Serve, hook: Hook, cli: Cli
) -> None:
    """An OAuth config is valid without its secrets at hand: exit 0, the token URL in the
    summary, one note per missing variable naming its key."""
    api = await serve(Simulator(oauth=OAUTH))
    config = oauth_config(tmp_path, api, hook, password_env="BM_E2E_NOT_SET")

    result = await cli.run("check-config", "--config", config)

    assert result.code == 0, result.output
    assert "(OAuth2 password grant at http://127.0.0.1:" in result.stdout
    assert result.stderr == (
        "note: api.oauth.password_env: environment variable BM_E2E_NOT_SET is not set"
        " (needed by run, once and test-sink)\n"
    )


# --------------------------------------------------------------------------- several sources


async def test_two_sources_alert_and_go_down_separately(
    tmp_path: Path, serve: Serve, hook: Hook, cli: Cli
) -> None:
    """'family' changes and 'fund' fails: family's alert arrives with its source, source_down
    fires for fund only, a rule limited to fund never fires for family; ``status --json``
    shows both sources and ``once`` exits 1 because one of them fails."""
    family = await serve(Simulator(token=FAMILY_TOKEN))
    fund = await serve(Simulator(token=FUND_TOKEN))
    await fund.fail(status=500, count=-1)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""\
[[sources]]
name = "family"
url = {q(family.url)}
token_env = "BM_E2E_FAMILY_TOKEN"
timeout = "5s"

[[sources]]
name = "fund"
url = {q(fund.url)}
token_env = "BM_E2E_FUND_TOKEN"
timeout = "5s"
down_after = 2
{common_toml(hook, tmp_path / "state.db", LOW_CASH_RULE + FUND_ONLY_RULE)}""",
        encoding="utf-8",
    )
    daemon = await cli.start("run", "--config", path)
    await daemon.wait_event("baseline_recorded", source="family")
    [down] = await eventually(
        lambda: hook.matching(rule="source_down", status="firing"), what="source_down of fund"
    )

    await family.set_accounts(low_cash())
    [alert] = await eventually(
        lambda: hook.matching(rule="low-cash-to-withdraw"), what="family's alert"
    )
    await family.wait_requests(await family.requests() + 2)
    await fund.wait_requests(await fund.requests() + 1)
    await stop(daemon)

    assert (down["source"], down["account_number"], down["severity"]) == (
        "fund",
        None,
        "critical",
    )
    assert "HTTP 500" in down["summary"]
    assert (alert["source"], alert["account_number"], alert["status"]) == (
        "family",
        VISION,
        "firing",
    )
    assert all(set(body) == PAYLOAD_KEYS for body in hook.delivered())
    assert [(b["rule"], b["source"]) for b in hook.delivered()] == [
        ("source_down", "fund"),
        ("low-cash-to-withdraw", "family"),
    ]
    assert {e["source"] for e in daemon.events("poll_failed")} == {"fund"}
    assert daemon.events("alert_firing", source="family", rule="fund-low-cash") == []

    status = await cli.run("status", "--json", "--config", path)
    assert status.code == 0, status.output
    sources = {s["source"]: s for s in json.loads(status.stdout)["sources"]}
    assert set(sources) == {"family", "fund"}
    assert (sources["family"]["last_result"], sources["family"]["accounts_known"]) == ("ok", 2)
    assert sources["fund"]["last_result"] == "failed"
    assert sources["fund"]["consecutive_failures"] >= 2
    firing = json.loads(status.stdout)["alerts_firing"]
    assert sorted((a["source"], a["rule"]) for a in firing) == [
        ("family", "low-cash-to-withdraw"),
        ("fund", "source_down"),
    ]

    once = await cli.run("once", "--config", path)
    assert once.code == 1, once.output
    assert "error: poll failed (source fund): HTTP 500" in once.stderr
    assert once.stdout == ""
    assert_no_secret(
        daemon.stdout + daemon.stderr + status.output + once.output, [FAMILY_TOKEN, FUND_TOKEN]
    )
