"""The processes a benchmark run starts and talks to: a child with parsed JSON output, the fake
API (:mod:`fakeapi`) with its control endpoints, and the loopback webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

ROOT: Final = Path(__file__).resolve().parent.parent
BENCH: Final = ROOT / "bench"
PYTHON: Final = sys.executable


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A run that could not be measured; the message says why."""


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    """A process we started, its JSON output lines parsed as they come."""

    name: str
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, name: str, argv: Sequence[str]) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        child = cls(name, process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                child._readers.append(asyncio.create_task(child._read(stream)))
        return child

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if isinstance(event, dict):
                self.events.append(event)
            else:
                self.tail.append(text)

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.get("event") == event)

    def problem(self) -> str:
        """What the process said last, for an error message."""
        lines = list(self.tail) + [json.dumps(e) for e in self.events[-5:]]
        return "\n".join(lines[-15:])

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """``sig``, then SIGKILL after 20 s; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return self.process.returncode if self.process.returncode is not None else -1


class FakeApiProcess:
    """``bench/fakeapi.py`` in a process of its own, and its control endpoints."""

    def __init__(self, child: Child, port: int, session: aiohttp.ClientSession) -> None:
        self.child = child
        self.base = f"http://127.0.0.1:{port}"
        self.session = session

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        *,
        accounts: int,
        polls: int,
        change_rate: float,
        trips: int,
        warmup: int = 0,
        storm: bool = False,
    ) -> AsyncIterator[FakeApiProcess]:
        argv = [
            PYTHON,
            str(BENCH / "fakeapi.py"),
            f"--accounts={accounts}",
            f"--polls={polls}",
            f"--change-rate={change_rate}",
            f"--trips={trips}",
            f"--warmup={warmup}",
            *(["--storm"] if storm else []),
        ]
        child = await Child.start("fakeapi", argv)
        try:
            port = await _wait_for_port(child)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as s:
                yield cls(child, port, s)
        finally:
            await child.stop()

    def url(self, client: str) -> str:
        return f"{self.base}/{client}/accounts"

    async def _get(self, path: str, **query: str | int | float) -> Any:
        params = {k: str(v) for k, v in query.items()}
        async with self.session.get(self.base + path, params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(self.base + path, json=body) as response:
            response.raise_for_status()

    async def plan(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/_bench/plan")
        return result

    async def expect(self, client: str) -> None:
        await self._post("/_bench/expect", {"client": client})

    async def watch(self, client: str, pid: int, files: Sequence[Path]) -> None:
        await self._post(
            "/_bench/watch", {"client": client, "pid": pid, "files": list(map(str, files))}
        )

    async def wait(self, client: str, requests: int, seconds: float) -> int:
        """Until the client made ``requests`` requests or ``seconds`` passed; how many it made."""
        result = await self._get("/_bench/wait", client=client, requests=requests, timeout=seconds)
        return int(result["requests"])

    async def stats(self, client: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/_bench/stats", client=client)
        return result

    async def requests(self) -> dict[str, int]:
        result: dict[str, int] = (await self._get("/_bench/stats"))["requests"]
        return result

    async def arrivals(self) -> dict[str, list[float]]:
        """When each client's requests arrived (``time.time()``)."""
        result: dict[str, list[float]] = (await self._get("/_bench/stats", arrivals=1))["arrivals"]
        return result

    async def release(self, client: str) -> None:
        await self._post("/_bench/release", {"client": client})


async def _wait_for_port(child: Child) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for event in child.events:
            if "port" in event:
                return int(event["port"])
        if child.process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise BenchError(f"the fake API did not start:\n{child.problem()}")


@dataclass(frozen=True)
class Hit:
    at: float
    payload: dict[str, Any]


class Receiver:
    """The webhook receiver: notes when each notification arrives (``time.time()``)."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.hits.append(Hit(time.time(), json.loads(body)))
        self.arrived.set()
        return web.Response(status=204)
