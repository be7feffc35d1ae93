"""Shared fixtures: for the end-to-end modules the simulator, a webhook receiver, the CLI and
config files; for the others a state database, an HTTP session and (sink tests) an HTTP receiver.

An end-to-end module sets ``TOKEN``, the API token the simulator accepts and the CLI gets
through ``TOKEN_ENV``; a module may define its own fixture of the same name instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pg_helpers
import pytest
import structlog
from bot_helpers import FakeBotApi
from e2e_helpers import (
    TOKEN_ENV,
    Cli,
    Hook,
    MakeConfig,
    SimControl,
    child_env,
    config_toml,
    healthy,
)
from sinks_helpers import SECRET_PATH, SECRET_QUERY, Receiver, serving
from store_helpers import BACKENDS, Backend

from monitor.simulator import Simulator, start
from monitor.store import SqliteStore, Store


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Each test starts from structlog's defaults: a test before it in the same worker that
    configured logging (at info) would otherwise filter the debug lines ``capture_logs`` checks."""
    structlog.reset_defaults()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist workers, the end-to-end tests (and the ``slow`` in-process ones) first.

    They are few, and most of their time is spent waiting on real one-second polls; started
    first and handed out one by one (``--maxschedchunk 1`` in the Makefile), they spread over
    the workers and overlap with each other and with the fast tests, instead of one worker
    ending the run alone with a block of them. Every worker sorts the same way (a stable sort on
    the marker), as xdist requires; a run without xdist keeps pytest's order.
    """
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in ("e2e", "slow")))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Leave the run's PostgreSQL (the last process out stops it: ``tests/pg_helpers.py``)."""
    pg_helpers.leave()


def _token(request: pytest.FixtureRequest) -> str:
    token: str = request.module.TOKEN
    return token


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def static_api() -> AsyncIterator[tuple[Simulator, str]]:
    """The simulator in this process with its unchanging scenario, and its URL."""
    simulator = Simulator(scenario="static")
    runner, url = await start(simulator)
    try:
        yield simulator, url
    finally:
        await runner.cleanup()


@pytest.fixture
async def sim(
    request: pytest.FixtureRequest, session: aiohttp.ClientSession
) -> AsyncIterator[SimControl]:
    """The simulator in this process, serving two healthy accounts until told otherwise."""
    runner, url = await start(Simulator(token=_token(request)))
    try:
        control = SimControl(url, session)
        await control.set_accounts(healthy())
        yield control
    finally:
        await runner.cleanup()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = await Hook().start()
    try:
        yield receiver
    finally:
        await receiver.aclose()


@pytest.fixture
async def cli(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cli]:
    """Starts CLI subprocesses with the API token in the environment; reaps them all."""
    runner = Cli(tmp_path, child_env() | {TOKEN_ENV: _token(request)})
    try:
        yield runner
    finally:
        await runner.aclose()


@pytest.fixture
def make_config(tmp_path: Path, sim: SimControl, hook: Hook) -> MakeConfig:
    """Writes a config for ``sim`` and ``hook``; keyword arguments go to ``config_toml``."""

    def make(name: str = "config.toml", **options: Any) -> Path:
        options.setdefault("api_url", sim.url)
        options.setdefault("hook_url", hook.url)
        options.setdefault("state", tmp_path / "state.db")
        path = tmp_path / name
        path.write_text(config_toml(**options), encoding="utf-8")
        return path

    return make


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend of the state store in turn, with a new database: the Store suite
    (``test_store.py``, ``test_status.py``) runs on every one of them."""
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A new SQLite state database in the test's folder, closed afterwards (for tests of what
    uses the store; the Store suite's own ``store`` runs on every ``backend``)."""
    opened = await SqliteStore.open(tmp_path / "state.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotApi]:
    """A fake Telegram Bot API on 127.0.0.1 (getUpdates, sendMessage, answerCallbackQuery)."""
    fake = await FakeBotApi().start()
    try:
        yield fake
    finally:
        await fake.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """For the sink tests: a recording HTTP receiver on 127.0.0.1 whose URL ends in the secret
    ``SECRET_PATH?SECRET_QUERY`` of ``sinks_helpers`` (a module may define its own)."""
    async with serving(f"{SECRET_PATH}?{SECRET_QUERY}") as served:
        yield served
