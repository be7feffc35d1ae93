"""Helpers for the end-to-end tests: the real CLI as a subprocess, the simulator's control API,
a recording webhook receiver on 127.0.0.1, and config files written from a template.

Nothing here patches the product: the CLI runs as ``python -m monitor`` in its own process, talks
HTTP to a simulator and a receiver served by the test's event loop, and the tests read what it
printed (JSON log lines on stderr, since stderr is not a terminal) and what the receiver got.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
from aiohttp import web

from monitor.encoding import dumps

T = TypeVar("T")
#: Writes a config file (the ``make_config`` fixture): keyword arguments go to ``config_toml``.
MakeConfig = Callable[..., Path]

#: How long a test waits for something the daemon should do within a poll or two.
WAIT = 15.0
TOKEN_ENV = "BM_E2E_TOKEN"
VISION = "12345678@vision"
COR = "11111111@cor"
#: Every key of a notification's JSON document, in the documented order.
PAYLOAD_FIELDS = (
    "id",
    "fingerprint",
    "status",
    "rule",
    "type",
    "kind",
    "severity",
    "source",
    "account_number",
    "field",
    "previous",
    "current",
    "summary",
    "description",
    "labels",
    "observed_at",
    "started_at",
    "snapshot",
)
PAYLOAD_KEYS = frozenset(PAYLOAD_FIELDS)

LOW_CASH_RULE = """
[[rules]]
name = "low-cash-to-withdraw"
type = "threshold"
field = "cash_to_withdraw"
op = "<"
value = 1000
"""
RESTRICTION_RULE = """
[[rules]]
name = "restriction-changed"
type = "restriction_change"
severity = "critical"
"""


# --------------------------------------------------------------------------- accounts


def account(number: str = VISION, **fields: Any) -> dict[str, Any]:
    """A valid balances record (money as ``Decimal``), ``fields`` replacing its values."""
    record: dict[str, Any] = {
        "account_number": number,
        "trade_platform": "ETNA",
        "margin_type": "marginx2",
        "restriction": "none",
        "daytrades_count": 0,
        "account_value_total": Decimal("40410.28"),
        "cash": Decimal("2524.50"),
        "day_trading_buying_power": Decimal("10098.00"),
        "margin_buying_power": Decimal("5049.00"),
        "non_margin_buying_power": Decimal("2524.50"),
        "position_market_value": Decimal("37885.78"),
        "unsettled_cash": Decimal("0.00"),
        "cash_to_withdraw": Decimal("2524.50"),
    }
    record.update(fields)
    return record


def payload(body: bytes) -> dict[str, Any]:
    """A webhook body parsed with money as exact ``Decimal`` (never through float)."""
    value = json.loads(body, parse_float=Decimal)
    assert isinstance(value, dict), body
    return value


# --------------------------------------------------------------------------- waiting


async def eventually(check: Callable[[], T | None], *, what: str, timeout: float = WAIT) -> T:  # noqa: ASYNC109
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- webhook receiver


@dataclass(frozen=True)
class Post:
    """One request the receiver got, and the status it answered."""

    body: bytes
    id_header: str | None
    answered: int
    at: float  # time.monotonic()

    @property
    def payload(self) -> dict[str, Any]:
        return payload(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.answered < 300


@dataclass
class Hook:
    """A webhook receiver on 127.0.0.1 that records every POST.

    ``status`` is what it answers (set 503 to play a sink that is down), ``text`` the body;
    with ``hang`` it holds each request until :meth:`aclose`.
    """

    path: str = "/hook/e2e-path-secret"
    status: int = 200
    text: str = "ok"
    hang: bool = False
    posts: list[Post] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.status
        self.posts.append(
            Post(body, request.headers.get("X-Balance-Monitor-Id"), status, time.monotonic())
        )
        if self.hang:
            await self._release.wait()
        return web.Response(status=status, text=self.text)

    async def start(self) -> Hook:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.path}"
        return self

    async def aclose(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> list[dict[str, Any]]:
        """Payloads of the POSTs answered with 2xx, in order."""
        return [p.payload for p in self.posts if p.ok]

    def matching(self, **fields: Any) -> list[dict[str, Any]]:
        """Delivered payloads whose fields equal ``fields``."""
        return [p for p in self.delivered() if all(p.get(k) == v for k, v in fields.items())]


# --------------------------------------------------------------------------- simulator control


class SimControl:
    """The simulator's ``/_sim/`` control API over HTTP (in-process or a fake-api subprocess)."""

    def __init__(self, accounts_url: str, session: aiohttp.ClientSession) -> None:
        self.url = accounts_url
        self._base = accounts_url.removesuffix("/accounts") + "/_sim"
        self._session = session

    async def _call(self, method: str, path: str, body: str | None = None) -> Any:
        async with self._session.request(method, self._base + path, data=body) as response:
            text = await response.text()
            assert response.status in {200, 204}, f"{method} {path}: {response.status} {text}"
            return json.loads(text) if text else None

    async def set_accounts(self, records: Any) -> None:
        """Serve exactly ``records`` from now on."""
        await self._call("PUT", "/accounts", dumps(records))

    async def fail(self, **spec: Any) -> None:
        """Queue a failure (``status``, ``count``, ``retry_after``, ``body``, ``delay``)."""
        await self._call("POST", "/fail", dumps(spec))

    async def raw(self, **spec: Any) -> None:
        """Queue a raw 200 answer (``body``, ``count``, ``content_type``)."""
        await self._call("POST", "/raw", dumps(spec))

    async def clear_failures(self) -> None:
        await self._call("DELETE", "/fail")

    async def stats(self) -> dict[str, int]:
        """``requests``, ``step``, ``tokens_issued`` and ``refused`` (401s answered)."""
        stats: dict[str, int] = await self._call("GET", "/stats")
        return stats

    async def requests(self) -> int:
        """How many ``GET /accounts`` the simulator has seen."""
        return (await self.stats())["requests"]

    async def revoke(self) -> None:
        """Revoke every access token the simulator has issued (OAuth mode)."""
        await self._call("POST", "/revoke")

    async def wait_requests(self, at_least: int, *, timeout: float = WAIT) -> int:  # noqa: ASYNC109
        """Wait until the simulator has seen ``at_least`` requests; the count then."""
        deadline = time.monotonic() + timeout
        while (seen := await self.requests()) < at_least:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {seen} polls after {timeout:g}s, wanted {at_least}")
            await asyncio.sleep(0.05)
        return seen


# --------------------------------------------------------------------------- config files


def _q(text: str) -> str:
    """A TOML basic string (JSON's escaping is a subset of TOML's)."""
    return json.dumps(text)


def config_toml(
    *,
    api_url: str,
    hook_url: str,
    state: Path,
    rules: str = "",
    token: str | None = None,
    api: str = "",
    delivery: str = "",
    sink: str = "",
) -> str:
    """A complete config: 1 s polls, a webhook sink named ``hook``, fast retries.

    The token comes from ``$BM_E2E_TOKEN`` unless ``token`` puts one inline; ``api``,
    ``delivery`` and ``sink`` are extra lines for those tables.
    """
    token_line = f"token = {_q(token)}" if token is not None else f"token_env = {_q(TOKEN_ENV)}"
    return f"""\
[api]
url = {_q(api_url)}
{token_line}
timeout = "5s"
{api}

[schedule]
interval = "1s"

[state]
path = {_q(str(state))}

[delivery]
initial_backoff = "0.2s"
max_backoff = "1s"
{delivery}

[[sinks]]
name = "hook"
type = "webhook"
url = {_q(hook_url)}
{sink}
{rules}"""


# --------------------------------------------------------------------------- the CLI


def _open_for_child(path: Path) -> IO[bytes]:
    return path.open("wb")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@dataclass(frozen=True)
class Result:
    """A finished CLI run."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Proc:
    """A running ``python -m monitor ...``; its stdout and stderr go to files."""

    def __init__(self, process: asyncio.subprocess.Process, out: Path, err: Path) -> None:
        self.process = process
        self.out = out
        self.err = err

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    @property
    def stdout(self) -> str:
        return _read(self.out)

    @property
    def stderr(self) -> str:
        return _read(self.err)

    def events(self, name: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (``name``: only that event; ``fields``: equal values)."""
        found = []
        for line in self.stderr.splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line, parse_float=Decimal)
            except ValueError:
                continue  # a line still being written
            if name is not None and event.get("event") != name:
                continue
            if all(event.get(k) == v for k, v in fields.items()):
                found.append(event)
        return found

    async def wait_event(
        self,
        name: str,
        *,
        count: int = 1,
        timeout: float = WAIT,  # noqa: ASYNC109
        **fields: Any,
    ) -> dict[str, Any]:
        """The ``count``-th ``name`` event (matching ``fields``), once it has been logged."""

        def check() -> dict[str, Any] | None:
            found = self.events(name, **fields)
            if len(found) >= count:
                return found[count - 1]
            if not self.running:
                raise AssertionError(
                    f"exited {self.process.returncode} before logging {name}:\n{self.stderr}"
                )
            return None

        return await eventually(check, what=f"{name} {fields or ''} x{count}", timeout=timeout)

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float = WAIT) -> int:  # noqa: ASYNC109
        """The exit code; fail if the process is still running after ``timeout``."""
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"still running after {timeout:g}s:\n{self.stderr}") from None

    async def close(self) -> None:
        """Terminate (then kill) the process if it still runs, and reap it."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
        await self.process.wait()


class Cli:
    """Starts ``python -m monitor`` subprocesses and reaps every one of them in :meth:`aclose`."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self._procs: list[Proc] = []

    async def start(self, *args: str | Path) -> Proc:
        n = len(self._procs)
        out, err = self.workdir / f"cli-{n}.stdout", self.workdir / f"cli-{n}.stderr"
        stdout, stderr = _open_for_child(out), _open_for_child(err)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "monitor",
                *map(str, args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.workdir,
                env=self.env,
            )
        finally:
            stdout.close()
            stderr.close()
        proc = Proc(process, out, err)
        self._procs.append(proc)
        return proc

    async def run(self, *args: str | Path, timeout: float = 30.0) -> Result:  # noqa: ASYNC109
        """Run one command to completion."""
        proc = await self.start(*args)
        code = await proc.wait(timeout)
        return Result(code, proc.stdout, proc.stderr)

    async def aclose(self) -> None:
        for proc in self._procs:
            await proc.close()


def child_env() -> dict[str, str]:
    """The test's environment without variables that would change what the CLI reads."""
    env = dict(os.environ)
    for name in ("BALANCE_MONITOR_CONFIG", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", TOKEN_ENV):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def healthy() -> list[dict[str, Any]]:
    """The two documented accounts, nothing firing."""
    return [account(VISION), account(COR, trade_platform="transaq", margin_type="cash")]


def low_cash() -> list[dict[str, Any]]:
    """As healthy(), with 12345678@vision's cash_to_withdraw below 1,000."""
    return [account(VISION, cash_to_withdraw=Decimal("512.25")), healthy()[1]]
