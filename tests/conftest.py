"""Shared fixtures: for the end-to-end modules the simulator, a webhook receiver, the CLI and
config files; for the others a state database and an HTTP session.

An end-to-end module sets ``TOKEN``, the API token the simulator accepts and the CLI gets
through ``TOKEN_ENV``; a module may define its own fixture of the same name instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
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

from monitor.simulator import Simulator, start
from monitor.store import Store


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist workers, the end-to-end tests first.

    They are few, and most of their time is spent waiting on real one-second polls; started
    first and handed out one by one (``--maxschedchunk 1`` in the Makefile), they spread over
    the workers and overlap with each other and with the fast tests, instead of one worker
    ending the run alone with a block of them. Every worker sorts the same way (a stable sort on
    the marker), as xdist requires; a run without xdist keeps pytest's order.
    """
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def _token(request: pytest.FixtureRequest) -> str:
    token: str = request.module.TOKEN
    return token


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A new state database in the test's folder, closed afterwards."""
    opened = await Store.open(tmp_path / "state.db")
    try:
        yield opened
    finally:
        await opened.close()
