"""Daemon lifecycle edge cases, in-process against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor import simulator
from monitor.config import Config, config_from_dict
from monitor.daemon import Daemon, run_once
from monitor.errors import StateLockedError
from monitor.sdnotify import Notifier
from monitor.simulator import DEMO_TOKEN, Simulator


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    runner, url = await simulator.start(Simulator(scenario="static"))
    try:
        yield url
    finally:
        await runner.cleanup()


def make_config(url: str, tmp_path: Path) -> Config:
    data = {
        "api": {"url": url, "token": DEMO_TOKEN},
        "schedule": {"interval": "1s"},
        "state": {"path": str(tmp_path / "state.db")},
        "sinks": [{"name": "console", "type": "log"}],
    }
    return config_from_dict(data, base_dir=tmp_path)


class BrokenReload(Daemon):
    async def reload(self) -> bool:
        raise RuntimeError("reload blew up")


async def test_a_crash_in_the_serve_loop_ends_run_and_stops_the_watchdog(
    api_url: str, tmp_path: Path
) -> None:
    """An unexpected error while serving ends run() with that error instead of hanging with the
    watchdog still pinging (systemd would then never restart the wedged daemon)."""
    folder = tempfile.mkdtemp(dir="/tmp")  # AF_UNIX paths are limited to 108 bytes
    address = f"{folder}/notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    daemon = BrokenReload(
        make_config(api_url, tmp_path), config_path=tmp_path / "unused.toml", notifier=notifier
    )
    stop, reload = asyncio.Event(), asyncio.Event()
    try:
        run = asyncio.create_task(daemon.run(stop, reload))
        await asyncio.sleep(0.5)
        reload.set()
        with pytest.raises(RuntimeError, match="reload blew up"):
            await asyncio.wait_for(run, timeout=10)
        assert stop.is_set()
        messages = []
        while True:
            try:
                messages.append(receiver.recv(4096).decode())
            except BlockingIOError:
                break
        assert any("STOPPING=1" in m for m in messages)
        await asyncio.sleep(0.3)  # a still-running watchdog would ping within 0.1 s
        with pytest.raises(BlockingIOError):
            receiver.recv(4096)
    finally:
        receiver.close()
        shutil.rmtree(folder)


async def test_a_reload_names_every_missing_secret_and_keeps_the_old_config(
    api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file whose secrets are missing is refused in one ``reload_rejected`` listing each
    of them (not the first only), and the old config stays in force."""
    monkeypatch.delenv("BM_RELOAD_TOKEN", raising=False)
    monkeypatch.delenv("BM_RELOAD_HOOK", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[api]\nurl = "{api_url}"\ntoken_env = "BM_RELOAD_TOKEN"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nurl_env = "BM_RELOAD_HOOK"\n',
        encoding="utf-8",
    )
    config = make_config(api_url, tmp_path)
    daemon = Daemon(config, config_path=path)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.sleep(0.5)
        with capture_logs() as logs:
            assert await daemon.reload() is False
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)

    (rejected,) = [e for e in logs if e["event"] == "reload_rejected"]
    assert rejected["problems"] == [
        "api.token_env: environment variable BM_RELOAD_TOKEN is not set",
        "sinks[0] (hook).url_env: environment variable BM_RELOAD_HOOK is not set",
    ]
    assert daemon.config is config


async def test_once_next_to_a_running_daemon_is_refused(api_url: str, tmp_path: Path) -> None:
    """``once`` on the state database of a running daemon raises StateLockedError before it
    polls: two writers would queue one change twice under two ids."""
    config = make_config(api_url, tmp_path)
    stop = asyncio.Event()
    run = asyncio.create_task(Daemon(config).run(stop))
    try:
        await asyncio.sleep(0.5)
        with pytest.raises(StateLockedError, match="is in use by another balance-monitor"):
            await run_once(config)
    finally:
        stop.set()
        await asyncio.wait_for(run, timeout=10)
    code, outcome, _ = await run_once(config)  # and once the daemon has stopped, it runs
    assert outcome.ok, outcome
    assert code == 0
