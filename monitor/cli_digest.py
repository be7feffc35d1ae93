"""``balance-monitor digest NAME [--print]``: a digest now, from the stored state (no API call).

``--print`` writes the plain text to standard output and sends nothing. Without it the digest
is queued for its sinks with an id of its own (it never stands in for the scheduled one): a
running daemon delivers it within a second or so (the queueing moves the control version its
control job watches); with none running (SQLite: the state's lock is free) it is delivered
here and now (for up to ``[delivery] once_deadline``), and each sink's outcome printed; a
sink that did not take it leaves it queued for the daemon and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import MonitorError, StateLockedError
from monitor.exitcodes import Exit

if TYPE_CHECKING:  # the parser is built for every command: the rest is imported when run
    from monitor.config import Config


def add_arguments(commands: Any, config_help: str) -> None:
    """The ``digest`` command."""
    digest = commands.add_parser(
        "digest",
        help="Render a [[digests]] digest now: print it, or queue and deliver it.",
        description="Render a [[digests]] digest now, from the stored state (no API call).",
    )
    digest.add_argument("--config", default=argparse.SUPPRESS, type=Path, help=config_help)
    digest.add_argument("name", metavar="NAME", help="the digest's name in [[digests]]")
    digest.add_argument(
        "--print", dest="print_", action="store_true", help="write it to stdout, send nothing"
    )


async def run_digest(config: Config, args: argparse.Namespace, out: Any) -> int:
    from monitor import digest_render, digests
    from monitor.store import open_store

    digests.find(config, args.name)  # an unknown name: a ConfigError listing the names
    now = datetime.now(tz=UTC)
    if args.print_:
        if not config.state.postgres and not config.state.path.exists():
            raise MonitorError(
                f"no state database at {config.state.path} yet: the monitor has not run"
            )
        store = await open_store(config.state, readonly=True)
        try:
            digest = await digests.render_digest(store, config, args.name, now)
        finally:
            await store.close()
        out(digest_render.text(digest))
        return Exit.OK
    store = await open_store(config.state, control=True)
    try:
        digest = await digests.queue_now(store, config, args.name, now)
    finally:
        await store.close()
    sinks = ", ".join(digests.find(config, args.name).sinks)
    if config.state.postgres:
        out(f"queued digest '{args.name}' ({digest.id}) for {sinks}; the daemon delivers it")
        return Exit.OK
    try:
        owned = await open_store(config.state)
    except StateLockedError:
        out(f"queued digest '{args.name}' ({digest.id}) for {sinks}; the running daemon sends it")
        return Exit.OK
    try:
        return await _deliver(owned, config, args.name, digest.id, out)
    finally:
        await owned.close()


async def _deliver(store: Any, config: Config, name: str, ident: str, out: Any) -> int:
    """Deliver what is pending for the digest's sinks here; report the digest's outcome."""
    import aiohttp

    from monitor import digests
    from monitor.delivery import Delivery, concurrency
    from monitor.runtime import require_secrets
    from monitor.sinks.registry import build_sink

    wanted = digests.find(config, name).sinks
    chosen = [(i, s) for i, s in enumerate(config.sinks) if s.name in wanted]
    for index, sink_config in chosen:
        require_secrets(sink_config.secret_refs(index))
    async with aiohttp.ClientSession() as session:
        sinks = {s.name: build_sink(s, index=i, session=session) for i, s in chosen}
        try:
            delivery = Delivery(store, sinks, config.delivery, concurrency=concurrency(config))
            await delivery.drain(time.time() + config.delivery.once_deadline.total_seconds())
        finally:
            for sink in sinks.values():
                await sink.aclose()
    records = [
        r
        for r in await store.notifications(since=time.time() - 3600, limit=100000)
        if r.id == ident
    ]
    failed = False
    for record in sorted(records, key=lambda r: r.sink):
        error = f": {record.last_error}" if record.last_error else ""
        out(f"digest '{name}' to sink '{record.sink}': {record.state}{error}")
        failed = failed or record.state != "delivered"
    if failed:
        sys.stderr.write("error: the digest was not delivered to every sink; it stays queued\n")
        return Exit.SOURCE_FAILED
    return Exit.OK
