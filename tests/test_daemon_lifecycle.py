"""Daemon lifecycle edge cases, in-process against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor import simulator
from monitor.config import Config, config_from_dict
from monitor.daemon import Daemon
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
