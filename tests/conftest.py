"""Fixtures shared by the end-to-end modules: the simulator, a webhook receiver, the CLI.

A module that uses them sets ``TOKEN``, the API token the simulator accepts and the CLI gets
through ``TOKEN_ENV``; a module may define its own fixture of the same name instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from e2e_helpers import TOKEN_ENV, Cli, Hook, SimControl, child_env, healthy

from monitor.simulator import Simulator, start


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
