"""Lifecycle: one exit stack owns the store, the HTTP session and the sinks; the scheduler polls.

``run`` polls at once and then every ``schedule.interval`` (APScheduler, started inside the
running loop, ``max_instances=1`` and ``coalesce=True`` so a slow poll skips a tick instead of
piling up). SIGTERM and SIGINT set an event; shutdown lets an in-flight poll and in-flight
deliveries finish for a few seconds, leaves the rest queued in the outbox, and closes the store.
``once`` is the burst mode: one poll, deliver within a deadline, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import __version__
from monitor.config import Config, format_duration, resolve_secret
from monitor.delivery import Delivery
from monitor.models import DEFAULT_SOURCE
from monitor.pipeline import PollOutcome, SourcePipeline
from monitor.sinks.base import Sink
from monitor.sinks.registry import build_sinks
from monitor.source import BalancesSource
from monitor.store import Store

log = structlog.get_logger("monitor.daemon")

#: Seconds an in-flight poll, then in-flight deliveries, may take to finish on shutdown.
STOP_GRACE = 4.0


class Exit(IntEnum):
    OK = 0
    SOURCE_FAILED = 1
    CONFIG = 2
    UNDELIVERED = 3


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Runtime:
    config: Config
    store: Store
    sinks: dict[str, Sink]
    delivery: Delivery
    pipeline: SourcePipeline


@contextlib.asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    """Open everything a poll needs; close it all in reverse order, whatever happens."""
    token = resolve_secret(config.api.token_ref)  # a ConfigError before anything is opened
    async with AsyncExitStack() as stack:
        store = await Store.open(config.state.path)
        stack.push_async_callback(store.close)
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        sinks = build_sinks(config.sinks, session)
        for sink in sinks.values():
            stack.push_async_callback(sink.aclose)
        delivery = Delivery(store, sinks, config.delivery)
        pipeline = SourcePipeline(
            source=DEFAULT_SOURCE,
            config=config,
            rules=config.rules,
            fetcher=BalancesSource(DEFAULT_SOURCE, config.api, session, token),
            store=store,
            on_queued=delivery.wake,
            clock=utcnow,
        )
        await pipeline.load()
        yield Runtime(config, store, sinks, delivery, pipeline)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stop_requested", signal=sig.name)
    stop.set()


async def run_daemon(config: Config, stop: asyncio.Event) -> Exit:
    """Poll on schedule until ``stop`` is set."""
    async with open_runtime(config) as rt:
        await rt.delivery.start()
        scheduler = AsyncIOScheduler(timezone=UTC)
        in_flight: set[asyncio.Task[None]] = set()

        async def poll_job() -> None:
            task = asyncio.current_task()
            if task is not None:
                in_flight.add(task)
            try:
                await rt.pipeline.job()
            except asyncio.CancelledError:
                if not stop.is_set() or task is None:
                    raise
                # Cancelled by the shutdown below, after its grace: the poll is simply not
                # recorded, and the next run polls again. Re-raising would make APScheduler log
                # a traceback whose frames hold the request headers (the token).
                task.uncancel()
                log.warning("poll_cancelled", source=DEFAULT_SOURCE, grace=STOP_GRACE)
            finally:
                if task is not None:
                    in_flight.discard(task)

        scheduler.add_job(
            poll_job,
            IntervalTrigger(
                seconds=config.schedule.interval.total_seconds(),
                jitter=config.schedule.jitter.total_seconds() or None,
                timezone=UTC,
            ),
            id=f"poll:{DEFAULT_SOURCE}",
            next_run_time=utcnow(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.start()
        log.info(
            "started",
            version=__version__,
            source=DEFAULT_SOURCE,
            url=rt.pipeline.fetcher.where
            if isinstance(rt.pipeline.fetcher, BalancesSource)
            else None,
            interval=format_duration(config.schedule.interval),
            rules=len(config.rules),
            sinks=sorted(rt.sinks),
            state=str(config.state.path),
        )
        try:
            await stop.wait()
        finally:
            scheduler.pause()
            if in_flight:
                _, running = await asyncio.wait(in_flight, timeout=STOP_GRACE)
                for task in running:
                    task.cancel()
                if running:  # let them unwind before the session and the store close
                    await asyncio.wait(running)
            scheduler.shutdown(wait=False)
            await rt.delivery.stop(grace=STOP_GRACE)
            pending = await rt.store.pending()
            log.info("stopped", pending_notifications=pending)
    return Exit.OK


async def run_once(config: Config) -> tuple[Exit, PollOutcome, int]:
    """One poll, then deliver what is queued within ``delivery.once_deadline``."""
    async with open_runtime(config) as rt:
        outcome = await rt.pipeline.poll()
        deadline = time.time() + config.delivery.once_deadline.total_seconds()
        pending = await rt.delivery.drain(deadline)
    if not outcome.ok:
        return Exit.SOURCE_FAILED, outcome, pending
    if pending:
        return Exit.UNDELIVERED, outcome, pending
    return Exit.OK, outcome, pending
