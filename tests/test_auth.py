"""Access tokens: the pure renewal arithmetic as a table, then OAuthTokens and BalancesSource
against the simulator's token endpoint (and a few broken ones) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs

from monitor import encoding, http
from monitor.auth import (
    MAX_LIFETIME,
    OAuthTokens,
    StaticToken,
    expires_in_seconds,
    next_daily_expiry,
    read_token_answer,
    renew_at,
    token_answer,
)
from monitor.config import ApiConfig, OAuthConfig
from monitor.errors import AuthError, FetchError
from monitor.simulator import Reply, Simulator, build_app
from monitor.source import BalancesSource
from monitor.testing import ManualClock, ManualTime

ET = ZoneInfo("America/New_York")
CLIENT_SECRET = "cl13nt-S3CRET-value"
PASSWORD = "pa55-W0RD-value"
CREDENTIALS = {
    "client_id": "balance-monitor",
    "client_secret": CLIENT_SECRET,
    "username": "trader@example.com",
    "password": PASSWORD,
}
PASSWORD_ENV = "BM_TEST_LIME_PASSWORD"
#: Noon in New York on an ordinary summer Monday.
NOON = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)
MARGIN = timedelta(minutes=5)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def et(month: int, day: int, hour: int, minute: int, second: int = 0, *, fold: int = 0) -> datetime:
    """Wall time in New York in 2026 (``fold=1``: the second 01:xx of the fall-back night)."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=ET, fold=fold)


# --------------------------------------------------------------------------- pure arithmetic


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(et(6, 15, 12, 0), et(6, 16, 3, 0), id="afternoon-next-day"),
        pytest.param(et(6, 15, 2, 59), et(6, 15, 3, 0), id="just-before-3am"),
        pytest.param(et(6, 15, 3, 0), et(6, 16, 3, 0), id="at-3am-is-the-next"),
        pytest.param(et(6, 15, 3, 1), et(6, 16, 3, 0), id="just-after-3am"),
        # Spring forward: 02:00 EST jumps to 03:00 EDT on Sunday 2026-03-08.
        pytest.param(utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 0), id="spring-forward-01:30-EST"),
        pytest.param(utc(2026, 3, 7, 8, 0), utc(2026, 3, 8, 7, 0), id="spring-forward-day-is-23h"),
        pytest.param(utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 7, 0), id="first-edt-3am"),
        # Fall back: 02:00 EDT goes back to 01:00 EST on Sunday 2026-11-01.
        pytest.param(utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8, 0), id="fall-back-01:30-EDT"),
        pytest.param(utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 8, 0), id="fall-back-01:30-EST"),
        pytest.param(et(11, 1, 1, 30, fold=1), et(11, 1, 3, 0), id="fall-back-fold-in-et"),
        pytest.param(utc(2026, 10, 31, 7, 0), utc(2026, 11, 1, 8, 0), id="fall-back-day-is-25h"),
    ],
)
def test_next_daily_expiry(moment: datetime, expected: datetime) -> None:
    """The first 03:00 America/New_York strictly after the moment, the same instant whatever
    the DST offset, in the moment's own time zone."""
    result = next_daily_expiry(moment)
    assert result == expected
    assert result.tzinfo is moment.tzinfo


@pytest.mark.parametrize(
    ("issued", "expires_in", "margin", "expected"),
    [
        pytest.param(NOON, 28800, MARGIN, NOON + timedelta(hours=8) - MARGIN, id="8h-by-day"),
        pytest.param(NOON, 3600, MARGIN, NOON + timedelta(minutes=55), id="shorter-than-3am"),
        pytest.param(NOON, None, MARGIN, NOON + timedelta(hours=8) - MARGIN, id="no-expires-in"),
        pytest.param(NOON, 0, MARGIN, NOON + timedelta(hours=8) - MARGIN, id="zero-is-unknown"),
        pytest.param(et(6, 15, 22, 0), 28800, MARGIN, et(6, 16, 2, 55), id="3am-comes-first"),
        pytest.param(et(6, 15, 2, 50), 28800, MARGIN, et(6, 15, 2, 55), id="before-3am"),
        pytest.param(et(6, 15, 3, 10), 28800, MARGIN, et(6, 15, 11, 5), id="after-3am"),
        pytest.param(
            et(6, 15, 2, 58),
            28800,
            MARGIN,
            et(6, 15, 2, 58, 12),
            id="3am-inside-margin-floor",
        ),
        # 22:00 EST Saturday to 03:00 EDT Sunday is four real hours, not five.
        pytest.param(
            utc(2026, 3, 8, 3, 0), 28800, MARGIN, utc(2026, 3, 8, 6, 55), id="spring-forward"
        ),
        # 22:00 EDT Saturday to 03:00 EST Sunday is six real hours, not five.
        pytest.param(
            utc(2026, 11, 1, 2, 0), 28800, MARGIN, utc(2026, 11, 1, 7, 55), id="fall-back"
        ),
        pytest.param(NOON, 3, timedelta(seconds=1), NOON + timedelta(seconds=2), id="3s-token"),
        pytest.param(NOON, 1, MARGIN, NOON + timedelta(seconds=0.1), id="tiny-floor"),
        pytest.param(NOON, 1e-6, MARGIN, NOON + timedelta(seconds=0.1), id="microsecond"),
        pytest.param(NOON, 60, MARGIN, NOON + timedelta(seconds=6), id="margin-over-life"),
        pytest.param(NOON, 10**12, MARGIN, et(6, 16, 2, 55), id="huge-expires-in"),
        pytest.param(NOON, float("inf"), MARGIN, et(6, 16, 2, 55), id="infinite"),
    ],
)
def test_renew_at(
    issued: datetime, expires_in: float | None, margin: timedelta, expected: datetime
) -> None:
    """Renew ``margin`` before the earlier of expires_in and 03:00 ET, but never sooner than a
    tenth of the token's life; an absent or absurd expires_in falls back to sane bounds."""
    assert renew_at(issued, expires_in, margin) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(60, 60.0, id="int"),
        pytest.param(Decimal("60.5"), 60.5, id="decimal"),
        pytest.param(" 60 ", 60.0, id="digit-string"),
        pytest.param(10**400, 172800.0, id="past-a-float-cut"),
        pytest.param(Decimal("1E+999999999"), 172800.0, id="huge-exponent-cut"),
        pytest.param(-(10**400), 0.0, id="huge-negative-is-zero"),
        pytest.param("9" * 5000, 172800.0, id="past-int-digits-cut"),
        pytest.param("\u00b2", None, id="superscript-digit"),
        pytest.param("-60", None, id="signed-string"),
        pytest.param(True, None, id="boolean"),
        pytest.param(Decimal("NaN"), None, id="nan"),
        pytest.param(None, None, id="absent"),
        pytest.param([60], None, id="array"),
    ],
)
def test_expires_in_seconds(value: object, seconds: float | None) -> None:
    """Any value as seconds within ``[0, MAX_LIFETIME]`` before it becomes a float, or None."""
    assert expires_in_seconds(value) == seconds


#: ``expires_in`` as a token endpoint may write it: any JSON value, numbers past a float's
#: range or Decimal's, digit strings that are not ASCII, nesting past the decoder's limit.
EXPIRES_IN = st.one_of(
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1E+999999999",
            "1e99999999999999999999",
            "1" + "0" * 400,
            "-" + "9" * 5000,
            "1e-400",
            "0",
            "-0",
            "60.5",
            '"60"',
            '" 60 "',
            '"\u00b2"',
            '"\u0661\u0662"',
            '"' + "9" * 400 + '"',
            "true",
            "null",
            "[]",
            "{}",
            "[" * 3000 + "]" * 3000,
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=8).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
)


@settings(max_examples=200, deadline=None)
@given(
    expires_in=EXPIRES_IN,
    issued=st.timedeltas(-timedelta(days=3650), timedelta(days=3650)).map(lambda d: NOON + d),
    margin=st.timedeltas(min_value=timedelta(0)),
)
def test_any_token_answer_gives_a_renewal_time_or_a_precise_error(
    expires_in: str, issued: datetime, margin: timedelta
) -> None:
    """Whatever ``expires_in`` holds (and whatever the margin), a 200 answer with a token is a
    renewal time within the token's longest life, or an AuthError saying what was wrong; never
    another exception."""
    body = f'{{"access_token": "t0k3n", "expires_in": {expires_in}}}'.encode()
    try:
        token, seconds = read_token_answer(body)
    except AuthError as exc:
        refused = str(exc)
    else:
        assert token.get_secret_value() == "t0k3n"
        assert issued <= renew_at(issued, seconds, margin) <= issued + MAX_LIFETIME
        return
    assert refused.startswith("token endpoint answered without a usable access_token: ")


# --------------------------------------------------------------------------- servers


@dataclass
class TokenEndpoint:
    """A token endpoint that records each form and answers as told (``hang``: never)."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"access_token": "rec-token", "expires_in": 60})
    text: str | None = None
    hang: bool = False
    forms: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.forms.append({k: str(v) for k, v in (await request.post()).items()})
        self.headers.append(dict(request.headers))
        if self.hang:
            await self.released.wait()
        if self.text is not None:
            return web.Response(status=self.status, text=self.text)
        return web.json_response(self.body, status=self.status)


@dataclass
class Servers:
    sim: Simulator
    server_time: ManualTime
    sim_server: BaseTestServer
    endpoint: TokenEndpoint
    endpoint_server: BaseTestServer
    session: aiohttp.ClientSession
    clock: ManualClock

    @property
    def accounts_url(self) -> str:
        return str(self.sim_server.make_url("/accounts"))

    def oauth(self, token_url: str | None = None, **overrides: Any) -> OAuthConfig:
        data: dict[str, Any] = {
            "token_url": token_url or str(self.sim_server.make_url("/connect/token")),
            "client_id": CREDENTIALS["client_id"],
            "client_secret": CREDENTIALS["client_secret"],
            "username": CREDENTIALS["username"],
            "password_env": PASSWORD_ENV,
            "renew_before": "1s",
            "timeout": "5s",
        }
        return OAuthConfig.model_validate(data | overrides)

    def tokens(self, config: OAuthConfig | None = None) -> OAuthTokens:
        config = config or self.oauth()
        return OAuthTokens(
            config, config.refs("api.oauth"), self.session, source="lime", clock=self.clock
        )

    def recorder(self, **overrides: Any) -> OAuthTokens:
        """Tokens from the recording endpoint instead of the simulator."""
        url = str(self.endpoint_server.make_url("/connect/token"))
        return self.tokens(self.oauth(url, **overrides))

    def source(self, tokens: OAuthTokens | StaticToken) -> BalancesSource:
        config = ApiConfig.model_validate({"url": self.accounts_url, "token": "unused"})
        return BalancesSource("lime", config, self.session, tokens)


@pytest.fixture
async def servers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Servers]:
    """The OAuth simulator (3 s tokens by its own manual clock) and a recording endpoint."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server_time = ManualTime(0.0)
    sim = Simulator(token="static", oauth={**CREDENTIALS, "expires_in": 3}, clock=server_time)
    endpoint = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/connect/token", endpoint.handle)
    async with (
        aiohttp.ClientSession() as session,
        TestServer(build_app(sim), host="127.0.0.1") as sim_server,
        TestServer(app, host="127.0.0.1") as endpoint_server,
    ):
        try:
            yield Servers(
                sim,
                server_time,
                sim_server,
                endpoint,
                endpoint_server,
                session,
                ManualClock(NOON),
            )
        finally:
            endpoint.released.set()


async def auth_error(tokens: OAuthTokens) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await tokens.token()
    return caught.value


def assert_no_secret(error: BaseException) -> None:
    text = " ".join([str(error), repr(error.args), repr(error.__cause__)])
    for secret in (PASSWORD, CLIENT_SECRET):
        assert secret not in text
        assert secret[:8] not in text


# --------------------------------------------------------------------------- OAuthTokens


async def test_the_password_grant_sends_the_four_secrets_form_encoded(servers: Servers) -> None:
    """One POST with grant_type=password and the four values, the password read from its
    environment variable; the answer's access_token is the token."""
    token = await servers.recorder().token()

    assert token.get_secret_value() == "rec-token"
    assert servers.endpoint.forms == [{"grant_type": "password", **CREDENTIALS}]
    [headers] = servers.endpoint.headers
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == http.USER_AGENT


async def test_a_token_is_cached_until_its_renew_time(servers: Servers) -> None:
    """Within renew_at (3 s token, 1 s margin: 2 s) every call returns the same token and the
    endpoint is asked once; at renew_at a new token is issued."""
    tokens = servers.tokens()
    first = await tokens.token()
    assert tokens.renew_time == NOON + timedelta(seconds=2)

    servers.clock.advance(1.999)
    assert await tokens.token() == first
    assert servers.sim.tokens_issued == 1

    servers.clock.advance(0.001)
    second = await tokens.token()
    assert second != first
    assert servers.sim.tokens_issued == 2
    assert tokens.issued == 2
    assert tokens.renew_time == NOON + timedelta(seconds=4)


async def test_each_renewed_token_reads_the_accounts_before_it_expires(
    servers: Servers,
) -> None:
    """With the server's clock moving alongside, polls across many renewals are never refused."""
    src = servers.source(servers.tokens())
    for _ in range(10):
        assert await src.fetch()
        servers.clock.advance(0.7)
        servers.server_time.advance(0.7)

    assert servers.sim.refused == 0
    assert servers.sim.tokens_issued == 4  # at 0, 2.1, 4.2 and 6.3 s


async def test_invalidate_leads_to_a_new_token(servers: Servers) -> None:
    """After invalidate() the next call asks for a new token even before the renew time."""
    tokens = servers.tokens()
    first = await tokens.token()

    tokens.invalidate()

    assert await tokens.token() != first
    assert servers.sim.tokens_issued == 2


async def test_concurrent_callers_share_one_request(servers: Servers) -> None:
    """Callers waiting at the same time get the same token from a single request."""
    tokens = servers.tokens()

    results = await asyncio.gather(*(tokens.token() for _ in range(5)))

    assert len(set(results)) == 1
    assert servers.sim.tokens_issued == 1


async def test_bad_credentials_are_a_clear_auth_error(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400 invalid_grant is an AuthError quoting the endpoint's error and description, with
    neither the password nor the client secret in it."""
    monkeypatch.setenv(PASSWORD_ENV, "wrong-" + PASSWORD)

    error = await auth_error(servers.tokens())

    assert str(error) == (
        "token request refused: HTTP 400 (invalid_grant: invalid client, username or password)"
    )
    assert error.status == 400
    assert_no_secret(error)
    assert servers.sim.tokens_issued == 0


async def test_an_endpoint_echoing_the_secrets_does_not_get_them_into_the_error(
    servers: Servers,
) -> None:
    """An error description that quotes the password and client secret has them cut out."""
    servers.endpoint.status = 400
    servers.endpoint.body = {
        "error": "invalid_grant",
        "error_description": f"user with password {PASSWORD} and secret {CLIENT_SECRET}",
    }

    error = await auth_error(servers.recorder())

    assert "invalid_grant" in str(error)
    assert str(error).count("<redacted>") == 2
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("status", "answer", "message"),
    [
        pytest.param(
            200,
            "<html>sign in</html>",
            "token endpoint answered without a usable access_token: the body is not JSON",
            id="not-json",
        ),
        pytest.param(
            200,
            {"token_type": "Bearer", "expires_in": 60},
            "token endpoint answered without a usable access_token: the answer has no access_token",
            id="no-access-token",
        ),
        pytest.param(
            200,
            {"access_token": "", "expires_in": 60},
            "token endpoint answered without a usable access_token: access_token is not a "
            "non-empty string",
            id="empty-access-token",
        ),
        pytest.param(
            200,
            {"access_token": "abc\r\nX-Injected: 1", "expires_in": 60},
            "token endpoint answered without a usable access_token: access_token has spaces, "
            "control or non-ASCII characters, which a header cannot carry",
            id="header-injection",
        ),
        pytest.param(
            200,
            [{"access_token": "x"}],
            "token endpoint answered without a usable access_token: the answer is not a JSON "
            "object",
            id="not-an-object",
        ),
        pytest.param(
            200,
            "[" * 100_000,
            "token endpoint answered without a usable access_token: the body is not JSON",
            id="nested-too-deep",
        ),
        pytest.param(
            400,
            "{" * 100_000,
            "token request refused: HTTP 400 (" + "{" * 200 + ")",
            id="refusal-nested-too-deep",
        ),
        pytest.param(
            503,
            "<html>\n  down   for maintenance</html>",
            "token request refused: HTTP 503 (<html> down for maintenance</html>)",
            id="503-html",
        ),
    ],
)
async def test_an_unusable_answer_is_an_auth_error(
    servers: Servers, status: int, answer: Any, message: str
) -> None:
    """An answer without a usable access_token, or a non-200, is an AuthError saying so."""
    servers.endpoint.status = status
    if isinstance(answer, str):
        servers.endpoint.text = answer
    else:
        servers.endpoint.body = answer

    error = await auth_error(servers.recorder())

    assert str(error) == message
    assert_no_secret(error)


async def test_expires_in_as_a_string_or_missing(servers: Servers) -> None:
    """expires_in "60" counts as 60 s; without it the token is assumed to live 8 hours."""
    servers.endpoint.body = {"access_token": "a", "expires_in": "60"}
    tokens = servers.recorder(renew_before="10s")
    await tokens.token()
    assert tokens.renew_time == NOON + timedelta(seconds=50)

    servers.endpoint.body = {"access_token": "b"}
    tokens = servers.recorder(renew_before="10s")
    await tokens.token()
    assert tokens.renew_time == NOON + timedelta(hours=8, seconds=-10)


@pytest.mark.parametrize(
    ("expires_in", "renew"),
    [
        pytest.param("1" + "0" * 400, et(6, 16, 2, 59, 59), id="too-large-for-a-float"),
        pytest.param("1e400", et(6, 16, 2, 59, 59), id="past-a-float-as-decimal"),
        pytest.param("-1" + "0" * 400, NOON + timedelta(hours=8, seconds=-1), id="huge-negative"),
        pytest.param('"\u00b2"', NOON + timedelta(hours=8, seconds=-1), id="superscript-digit"),
        pytest.param('"' + "9" * 400 + '"', et(6, 16, 2, 59, 59), id="huge-digit-string"),
    ],
)
async def test_a_hostile_expires_in_still_issues_a_token(
    servers: Servers, expires_in: str, renew: datetime
) -> None:
    """An ``expires_in`` no float holds, or a string of digits ``float()`` refuses, is cut to
    the longest life (the 03:00 expiry comes first) or taken as unknown (8 hours)."""
    servers.endpoint.text = f'{{"access_token": "a", "expires_in": {expires_in}}}'
    tokens = servers.recorder(renew_before="1s")
    assert (await tokens.token()).get_secret_value() == "a"
    assert tokens.renew_time == renew


async def test_a_silent_endpoint_times_out(servers: Servers) -> None:
    """No answer within oauth.timeout: AuthError says how long it waited."""
    servers.endpoint.hang = True

    error = await auth_error(servers.recorder(timeout="200ms"))

    assert str(error) == "token request timed out after 0.2s"


async def test_a_refused_connection_is_an_auth_error(servers: Servers) -> None:
    """Nothing listening at token_url: AuthError names the host, port and the socket's reason
    (as a failed balances request does), not a traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    error = await auth_error(servers.tokens(servers.oauth(f"http://127.0.0.1:{port}/token")))

    assert (
        str(error)
        == f"token request failed: cannot connect to 127.0.0.1:{port}: Connection refused"
    )


async def test_a_secret_gone_since_startup_is_an_auth_error(
    servers: Servers, tmp_path: Path
) -> None:
    """A password file removed while running fails the token request as an AuthError naming
    the key (a failed poll), not a crash."""
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD, encoding="utf-8")
    tokens = servers.tokens(servers.oauth(password_env=None, password_file=str(secret_file)))
    assert await tokens.token()
    secret_file.unlink()
    tokens.invalidate()

    error = await auth_error(tokens)

    assert str(error).startswith("token request not sent: api.oauth.password_file: cannot read")


async def test_token_issued_is_logged_without_the_token(servers: Servers) -> None:
    """token_issued names the source, expires_in and the renew time, never the token."""
    tokens = servers.tokens()
    with capture_logs() as logs:
        token = await tokens.token()

    [event] = [e for e in logs if e["event"] == "token_issued"]
    assert event["source"] == "lime"
    assert event["expires_in"] == 3
    assert event["renew_at"] == (NOON + timedelta(seconds=2)).isoformat()
    assert token.get_secret_value() not in repr(logs)


# --------------------------------------------------------------------------- BalancesSource


def unauthorized(count: int) -> Reply:
    return Reply(
        status=401,
        body=None,
        content_type="application/json",
        retry_after=None,
        delay=0,
        remaining=count,
    )


async def test_a_401_renews_once_and_retries_at_once(servers: Servers) -> None:
    """A revoked token: the 401 invalidates it, a new token is issued and the same poll is
    retried at once and succeeds."""
    src = servers.source(servers.tokens())
    assert await src.fetch()
    servers.sim.revoke_tokens()

    with capture_logs() as logs:
        assert await src.fetch()

    assert (servers.sim.requests, servers.sim.refused, servers.sim.tokens_issued) == (3, 1, 2)
    assert [e["event"] for e in logs] == ["token_refused", "token_issued"]


async def test_a_second_401_is_a_failed_poll(servers: Servers) -> None:
    """A 401 for the fresh token too is a FetchError with status 401; no third token."""
    src = servers.source(servers.tokens())
    servers.sim.queue(unauthorized(2))

    with pytest.raises(FetchError) as caught:
        await src.fetch()

    assert caught.value.status == 401
    assert (servers.sim.requests, servers.sim.tokens_issued) == (2, 2)


async def test_a_failed_token_request_fails_the_poll_without_calling_the_api(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad credentials: the fetch raises the AuthError, and /accounts is never asked."""
    monkeypatch.setenv(PASSWORD_ENV, "nope")
    src = servers.source(servers.tokens())

    with pytest.raises(AuthError, match="invalid_grant"):
        await src.fetch()

    assert servers.sim.requests == 0


async def test_a_static_token_never_retries(servers: Servers) -> None:
    """With a static token a 401 is a FetchError at once: one request, nothing renewed."""
    servers.sim.oauth = None  # back to static-token mode
    src = servers.source(StaticToken(SecretStr("static")))
    servers.sim.queue(unauthorized(1))

    with pytest.raises(FetchError) as caught:
        await src.fetch()

    assert caught.value.status == 401
    assert servers.sim.requests == 1


# --------------------------------------------------------------------------- redirects


@dataclass
class Origin:
    """An HTTP server on its own port (its own origin) that records every request it gets and
    answers each path as told: ``(status, headers, JSON body)``."""

    answers: dict[str, tuple[int, dict[str, str], Any]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # method, path and query, headers and body
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", errors="replace")
        self.seen.append(f"{request.method} {request.path_qs} {dict(request.headers)} {body}")
        status, headers, document = self.answers.get(request.path, (404, {}, {}))
        return web.json_response(document, status=status, headers=headers)


@pytest.fixture
async def origins() -> AsyncIterator[tuple[Origin, Origin]]:
    """Two recording servers on two ports of 127.0.0.1: two origins."""
    first, second = Origin(), Origin()
    servers = []
    for origin in (first, second):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", origin.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        origin.url = str(server.make_url("")).rstrip("/")
        servers.append(server)
    try:
        yield first, second
    finally:
        for server in servers:
            await server.close()


def assert_never_saw(origin: Origin, *secrets: str) -> None:
    for secret in secrets:
        assert not [request for request in origin.seen if secret in request]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_the_token_request_never_follows_a_redirect(
    servers: Servers, origins: tuple[Origin, Origin], status: int
) -> None:
    """A redirect from the token endpoint to another origin is not followed, so the client
    secret and password are never re-sent there: an AuthError names the status and the
    Location's origin, never its path or query."""
    endpoint, elsewhere = origins
    endpoint.answers["/connect/token"] = (
        status,
        {"Location": f"{elsewhere.url}/steal?code=q-s3cret-code"},
        {},
    )
    elsewhere.answers["/steal"] = (200, {}, {"access_token": "stolen", "expires_in": 60})

    error = await auth_error(servers.tokens(servers.oauth(f"{endpoint.url}/connect/token")))

    assert str(error) == (
        f"token request redirected: HTTP {status} to {elsewhere.url}; "
        "not followed (credentials are never re-sent)"
    )
    assert error.status == status
    assert elsewhere.seen == []
    assert len(endpoint.seen) == 1
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("location", "where"),
    [
        pytest.param("/elsewhere?code=q-s3cret-code", "{endpoint}", id="same-origin"),
        pytest.param(
            "https://me:pw-s3cret@example.org:8443/x?code=q-s3cret-code",
            "https://example.org:8443",
            id="credentials-in-location",
        ),
        pytest.param(None, "an unnamed place", id="no-location"),
        pytest.param("http://[::1/broken", "an unnamed place", id="unparsable-location"),
    ],
)
async def test_any_redirect_of_the_token_request_is_an_auth_error(
    servers: Servers, origins: tuple[Origin, Origin], location: str | None, where: str
) -> None:
    """Even to the same origin, or without a usable Location, a redirect is not followed."""
    endpoint, _ = origins
    headers = {"Location": location} if location is not None else {}
    endpoint.answers["/connect/token"] = (302, headers, {})
    endpoint.answers["/elsewhere"] = (200, {}, {"access_token": "t", "expires_in": 60})

    error = await auth_error(servers.tokens(servers.oauth(f"{endpoint.url}/connect/token")))

    assert str(error) == (
        f"token request redirected: HTTP 302 to {where.format(endpoint=endpoint.url)}; "
        "not followed (credentials are never re-sent)"
    )
    assert len(endpoint.seen) == 1
    assert "q-s3cret-code" not in str(error)
    assert "s3cret" not in str(error)


async def test_a_redirected_balances_request_never_takes_the_token_to_another_origin(
    servers: Servers, origins: tuple[Origin, Origin]
) -> None:
    """The token comes from the first origin, whose /accounts redirects to a second origin:
    the second origin sees neither the credentials nor the bearer token."""
    endpoint, elsewhere = origins
    endpoint.answers["/connect/token"] = (
        200,
        {},
        {"access_token": "b3arer-T0KEN", "expires_in": 60},
    )
    endpoint.answers["/accounts"] = (307, {"Location": f"{elsewhere.url}/accounts"}, {})
    elsewhere.answers["/accounts"] = (200, {}, [])
    tokens = servers.tokens(servers.oauth(f"{endpoint.url}/connect/token"))
    config = ApiConfig.model_validate({"url": f"{endpoint.url}/accounts", "token": "unused"})
    source = BalancesSource("lime", config, servers.session, tokens)

    assert await source.fetch() == b"[]"

    assert len(elsewhere.seen) == 1
    assert_never_saw(elsewhere, "b3arer-T0KEN", CLIENT_SECRET, PASSWORD, "Authorization")


# --------------------------------------------------------------------------- properties


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """JSON arrays and objects of ``inner`` values."""
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner)


#: What a token endpoint may put in ``access_token`` and ``expires_in``: the usual, the odd and
#: the hostile (control characters, the secrets echoed, numbers no float can hold).
TOKENS = st.one_of(
    st.sampled_from(["eyJhbGciOi.J9.x-_~+/=", "", " ", "a b", "tok\r\nX-Evil: 1", "\x00", "é"]),
    st.text(max_size=40),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=2),
)
EXPIRES = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=10**300, max_value=10**320),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from(["60", " 60 ", "²", "٣", "1e3", "-5", "", "9" * 400, True, None, 1e-9]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from([PASSWORD, CLIENT_SECRET, f"bad password {PASSWORD} for {CLIENT_SECRET}"]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    containers,
    max_leaves=12,
)
ANSWERS = st.one_of(
    st.fixed_dictionaries(
        {"access_token": TOKENS},
        optional={"expires_in": EXPIRES, "token_type": SCALARS, "error": SCALARS},
    ),
    st.fixed_dictionaries(
        {"error": SCALARS},
        optional={"error_description": JSON_VALUES, "message": JSON_VALUES},
    ),
    JSON_VALUES,
)
BODIES = st.one_of(
    ANSWERS.map(lambda value: encoding.dumps(value).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"[" * 100_000, b"{" * 50_000, b"", b"\xff\xfe", PASSWORD.encode()]),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/html", "text/plain", ""]
)
#: How each AuthError about an answer begins: the status, the redirect, the body.
AUTH_ERRORS = (
    "token request refused: HTTP ",
    "token request redirected: HTTP ",
    "token endpoint answered ",
)


@dataclass
class Scripted:
    """A token endpoint that answers whatever the current example says."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        if self.status in {204, 304} or 100 <= self.status < 200:
            return web.Response(status=self.status, headers=headers)
        return web.Response(status=self.status, body=self.body, headers=headers)


@pytest.fixture
async def scripted(servers: Servers) -> AsyncIterator[tuple[Scripted, str]]:
    endpoint = Scripted()
    app = web.Application()
    app.router.add_post("/token", endpoint.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield endpoint, str(server.make_url("/token"))


def assert_usable(token: SecretStr) -> None:
    """A token that can be sent in an Authorization header: visible ASCII, no spaces."""
    value = token.get_secret_value()
    assert value
    assert value.isascii()
    assert value.isprintable()
    assert " " not in value


def assert_sane(tokens: OAuthTokens, token: SecretStr) -> None:
    """A usable token, renewed after now and no later than 03:00 ET."""
    assert_usable(token)
    assert tokens.renew_time is not None
    assert NOON < tokens.renew_time <= next_daily_expiry(NOON)


def assert_precise(error: AuthError, *starts: str) -> None:
    """One line that says which kind of failure it was, without the secrets."""
    assert str(error).startswith(starts or AUTH_ERRORS)
    assert "\n" not in str(error)
    assert_no_secret(error)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(status=st.integers(min_value=200, max_value=599), body=BODIES, content_type=CONTENT_TYPES)
@example(200, b'{"access_token": "t", "expires_in": "\\u00b2"}', "application/json")
@example(200, b'{"access_token": "t", "expires_in": 1' + b"0" * 400 + b"}", "application/json")
@example(200, b'{"access_token": "t", "expires_in": 0.000001}', "application/json")
@example(200, b'{"access_token": "a\\nb", "expires_in": 60}', "application/json")
@example(200, b"[" * 100_000, "application/json")
@example(400, b"{" * 50_000, "application/json")
@example(400, b'{"error": ["pa55-W0RD-value\'s"]}', "application/json")
async def test_any_answer_of_a_token_endpoint_is_a_token_or_a_precise_auth_error(
    servers: Servers, scripted: tuple[Scripted, str], status: int, body: bytes, content_type: str
) -> None:
    """Whatever status, body and content type a real token endpoint answers with, the result is
    a usable token renewed at a sane time, or an AuthError that says what was wrong without a
    secret in it; never another exception."""
    endpoint, url = scripted
    endpoint.status, endpoint.body, endpoint.content_type = status, body, content_type
    tokens = servers.tokens(servers.oauth(url))

    try:
        token = await tokens.token()
    except AuthError as error:
        assert_precise(error)
    else:
        assert status == 200
        assert_sane(tokens, token)


#: Any JSON value as ``encoding.loads`` gives it: non-integers as ``Decimal``.
DECODED = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    containers,
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        DECODED,
        st.fixed_dictionaries({"access_token": TOKENS}, optional={"expires_in": EXPIRES}),
    ),
    margin=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
)
def test_any_decoded_answer_is_a_token_or_a_precise_auth_error(
    data: Any, margin: timedelta
) -> None:
    """The parser of a token answer, given any JSON value, returns a token that can be sent in
    a header and an expires_in that renew_at turns into a time after now and no later than
    03:00 ET, whatever the margin; or it raises an AuthError saying what is missing."""
    try:
        token, expires_in = token_answer(data)
    except AuthError as error:
        assert_precise(error, "token endpoint answered without a usable access_token: ")
        return
    assert_usable(token)
    assert NOON < renew_at(NOON, expires_in, margin) <= next_daily_expiry(NOON)
