"""Serving an aiohttp application on a TCP port, for the health endpoints and the simulator."""

from __future__ import annotations

from aiohttp import web


async def serve_app(
    app: web.Application, host: str, port: int, *, handler_cancellation: bool = False
) -> tuple[web.AppRunner, str]:
    """Start ``app`` on ``host:port`` (0: any free port); the runner and its base URL.

    The caller owns the runner and must ``await runner.cleanup()``, which waits at most a
    second for requests in flight. A failed bind cleans up and re-raises the ``OSError``.
    """
    runner = web.AppRunner(
        app, handler_cancellation=handler_cancellation, shutdown_timeout=1.0, access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{shown}:{bound_port}"
