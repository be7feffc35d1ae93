"""The sd_notify datagram protocol, spoken directly: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

When ``NOTIFY_SOCKET`` is unset (not under systemd ``Type=notify``) every call does nothing.
The watchdog ping is sent from a task on the daemon's own event loop, so a wedged loop stops
pinging and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("monitor.sdnotify")


class Notifier:
    """Sends state changes to the service manager; a no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if address.startswith("@"):
            self._address = b"\0" + address[1:].encode()  # abstract namespace socket
        elif address.startswith("/"):
            self._address = address
        self._socket: socket.socket | None = None
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> None:
        """Send ``KEY=value`` lines as one datagram; failures are logged, never raised."""
        if self._address is None:
            return
        message = "\n".join(fields).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=exc.strerror or type(exc).__name__)

    def ready(self, status: str | None = None) -> None:
        fields = ["READY=1"]
        if status:
            fields.append(f"STATUS={status}")
        fields.append(f"MAINPID={os.getpid()}")
        self.send(*fields)

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload.
        self.send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    async def run_watchdog(
        self, stop: asyncio.Event, on_ping: Callable[[], None] | None = None
    ) -> None:
        """Ping every half of ``WATCHDOG_USEC`` until ``stop`` is set (nothing if not asked)."""
        if self.watchdog_interval is None or not self.enabled:
            return
        while not stop.is_set():
            self.watchdog()
            if on_ping is not None:
                on_ping()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.watchdog_interval):
                    await stop.wait()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, if the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None
