"""Lifecycle: one exit stack owns the store, the HTTP session and the sinks; the scheduler polls.

``run`` polls at once and then every ``schedule.interval`` (APScheduler, started inside the
running loop, ``max_instances=1`` and ``coalesce=True`` so a slow poll skips a tick instead of
piling up). SIGTERM and SIGINT set the stop event; shutdown lets an in-flight poll and in-flight
deliveries finish for a few seconds, leaves the rest queued in the outbox, and closes the store.
SIGHUP reloads the config file (rules, sinks, schedule, API, logging, HTTP endpoint); a bad new
file is refused and the old config stays in force. Under systemd ``Type=notify`` the daemon
reports READY, STATUS, WATCHDOG, RELOADING and STOPPING. ``once`` is the burst mode: one poll,
deliver within a deadline, exit.
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
from pathlib import Path

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr

from monitor import __version__
from monitor.config import Config, format_duration, load_config, resolve_secret
from monitor.delivery import Delivery
from monitor.errors import ConfigError, MonitorError
from monitor.health import HealthServer, Readiness
from monitor.logs import configure as configure_logging
from monitor.metrics import Metrics
from monitor.models import DEFAULT_SOURCE
from monitor.pipeline import PollOutcome, SourcePipeline
from monitor.sdnotify import Notifier
from monitor.sinks.base import Sink
from monitor.sinks.registry import build_sinks
from monitor.source import BalancesSource
from monitor.store import Store

log = structlog.get_logger("monitor.daemon")

#: Seconds an in-flight poll, then in-flight deliveries, may take to finish on shutdown.
STOP_GRACE = 4.0
#: /readyz fails when the last successful poll is older than this many intervals.
READY_INTERVALS = 3


class Exit(IntEnum):
    OK = 0
    SOURCE_FAILED = 1
    CONFIG = 2
    UNDELIVERED = 3


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


def _trigger(config: Config) -> IntervalTrigger:
    return IntervalTrigger(
        seconds=config.schedule.interval.total_seconds(),
        jitter=config.schedule.jitter.total_seconds() or None,
        timezone=UTC,
    )


@dataclass
class Runtime:
    config: Config
    store: Store
    session: aiohttp.ClientSession
    sinks: dict[str, Sink]
    delivery: Delivery
    pipeline: SourcePipeline


@contextlib.asynccontextmanager
async def open_runtime(config: Config, metrics: Metrics | None = None) -> AsyncIterator[Runtime]:
    """Open everything a poll needs; close it all in reverse order, whatever happens."""
    token = resolve_secret(config.api.token_ref)  # a ConfigError before anything is opened
    async with AsyncExitStack() as stack:
        store = await Store.open(config.state.path)
        stack.push_async_callback(store.close)
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        sinks = build_sinks(config.sinks, session)
        delivery = Delivery(
            store,
            sinks,
            config.delivery,
            on_result=metrics.notification if metrics is not None else None,
        )
        pipeline = SourcePipeline(
            source=DEFAULT_SOURCE,
            config=config,
            rules=config.rules,
            fetcher=BalancesSource(DEFAULT_SOURCE, config.api, session, token),
            store=store,
            on_queued=delivery.wake,
            clock=utcnow,
        )
        runtime = Runtime(config, store, session, sinks, delivery, pipeline)
        stack.push_async_callback(_close_sinks, runtime)  # those in force at exit (reloads)
        await pipeline.load()
        yield runtime


async def _close_sinks(runtime: Runtime) -> None:
    for sink in runtime.sinks.values():
        await sink.aclose()


def install_signal_handlers(stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, _on_signal, reload, signal.SIGHUP)


def _on_signal(event: asyncio.Event, sig: signal.Signals) -> None:
    log.info("reload_requested" if sig == signal.SIGHUP else "stop_requested", signal=sig.name)
    event.set()


class Daemon:
    """The long-running monitor: scheduler, delivery workers, health server, sd_notify."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier if notifier is not None else Notifier()
        self.metrics = metrics if metrics is not None else Metrics()
        self.health: HealthServer | None = None
        self.started_at = utcnow()
        self._rt: Runtime | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self.job_id = f"poll:{DEFAULT_SOURCE}"

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None) -> Exit:
        """Poll on schedule until ``stop`` is set; reload whenever ``reload`` is set."""
        self._stop = stop
        async with open_runtime(self.config, self.metrics) as rt:
            self._rt = rt
            rt.pipeline.on_poll = self._polled
            self.metrics.declare_sinks(rt.sinks)
            await rt.delivery.start()
            await self._start_health(self.config)
            scheduler = AsyncIOScheduler(timezone=UTC)
            self._scheduler = scheduler
            scheduler.add_job(
                self._poll_job,
                _trigger(self.config),
                id=self.job_id,
                next_run_time=utcnow(),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            scheduler.start()
            watchdog = asyncio.create_task(self.notifier.run_watchdog(stop), name="watchdog")
            self._log_started(rt)
            self.notifier.ready(self.status_line())
            try:
                await self._serve(stop, reload)
            finally:
                self.notifier.stopping()
                await self._shutdown(rt, scheduler)
                await watchdog
                if self.health is not None:
                    await self.health.close()
                self.notifier.close()
        return Exit.OK

    async def _serve(self, stop: asyncio.Event, reload: asyncio.Event | None) -> None:
        if reload is None:
            await stop.wait()
            return
        while not stop.is_set():
            waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(reload.wait())}
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if reload.is_set() and not stop.is_set():
                reload.clear()
                await self.reload()

    def _log_started(self, rt: Runtime) -> None:
        fetcher = rt.pipeline.fetcher
        log.info(
            "started",
            version=__version__,
            source=DEFAULT_SOURCE,
            url=fetcher.where if isinstance(fetcher, BalancesSource) else None,
            interval=format_duration(self.config.schedule.interval),
            rules=len(self.config.rules),
            sinks=sorted(rt.sinks),
            state=str(self.config.state.path),
            http=self.health.url if self.health is not None else None,
            systemd=self.notifier.enabled,
        )

    async def _poll_job(self) -> None:
        rt = self._rt
        if rt is None:
            return
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await rt.pipeline.job()
        except asyncio.CancelledError:
            if not self._stop.is_set() or task is None:
                raise
            # Cancelled by the shutdown below, after its grace: the poll is simply not
            # recorded, and the next run polls again. Re-raising would make APScheduler log
            # a traceback whose frames hold the request headers (the token).
            task.uncancel()
            log.warning("poll_cancelled", source=DEFAULT_SOURCE, grace=STOP_GRACE)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _shutdown(self, rt: Runtime, scheduler: AsyncIOScheduler) -> None:
        scheduler.pause()
        if self._in_flight:
            _, running = await asyncio.wait(self._in_flight, timeout=STOP_GRACE)
            for task in running:
                task.cancel()
            if running:  # let them unwind before the session and the store close
                await asyncio.wait(running)
        scheduler.shutdown(wait=False)
        await rt.delivery.stop(grace=STOP_GRACE)
        pending = await rt.store.pending()
        log.info("stopped", pending_notifications=pending)

    # ------------------------------------------------------------------ observation

    def _polled(self, outcome: PollOutcome) -> None:
        rt = self._rt
        if rt is None:
            return
        success = rt.pipeline.last_success
        self.metrics.observe_poll(
            DEFAULT_SOURCE,
            ok=outcome.ok,
            duration=outcome.duration,
            accounts=outcome.accounts if outcome.ok else None,
            at=success.timestamp() if success is not None else 0.0,
        )
        self._update_firing(rt)
        self.notifier.status(self.status_line())

    def _update_firing(self, rt: Runtime) -> None:
        severities = {r.name: r.severity.value for r in self.config.rules}
        self.metrics.set_firing(
            (a.rule, severities.get(a.rule, "critical")) for a in rt.pipeline.firing_alerts()
        )

    def status_line(self) -> str:
        """One short human line for ``systemctl status``."""
        rt = self._rt
        if rt is None or rt.pipeline.last is None:
            return "started, first poll pending"
        last = rt.pipeline.last
        when = utcnow().strftime("%H:%M:%SZ")
        if last.ok:
            head = f"last poll {when} ok, {last.accounts} accounts"
        else:
            head = f"last poll {when} FAILED: {last.error}"
        return f"{head}; {rt.pipeline.firing} alerts firing"

    def readiness(self) -> Readiness:
        rt = self._rt
        limit = self.config.schedule.interval * READY_INTERVALS
        if rt is None:
            return Readiness(False, ["starting"])
        success = rt.pipeline.last_success
        detail = {
            "source": DEFAULT_SOURCE,
            "last_success_at": success.isoformat() if success is not None else None,
            "max_age_seconds": limit.total_seconds(),
        }
        if success is None:
            return Readiness(False, [f"source {DEFAULT_SOURCE}: no successful poll yet"], detail)
        if utcnow() - success > limit:
            last = rt.pipeline.last
            why = f"source {DEFAULT_SOURCE}: no successful poll for over {format_duration(limit)}"
            if last is not None and not last.ok:
                why += f" (last error: {last.error})"
            return Readiness(False, [why], detail)
        return Readiness(True, [], detail)

    async def _refresh_metrics(self) -> None:
        if self._rt is not None:
            self.metrics.outbox_pending.set(await self._rt.store.pending())

    async def _start_health(self, config: Config) -> None:
        address = config.http.address
        if address is None:
            return
        server = HealthServer(self.metrics, self.readiness, self._refresh_metrics)
        try:
            await server.start(*address)
        except OSError as exc:
            raise ConfigError(
                f"http.listen: cannot listen on {config.http.listen}: {exc.strerror}"
            ) from exc
        self.health = server

    # ------------------------------------------------------------------ reload

    async def reload(self) -> bool:
        """Load the config file again and apply it; on any problem keep the old one."""
        rt = self._rt
        if rt is None or self.config_path is None:
            log.warning("reload_ignored", reason="no config file to reload")
            return False
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            token = resolve_secret(new.api.token_ref)
            if new.state.path != self.config.state.path:
                raise ConfigError("state.path: changing the state database needs a restart")
            sinks = build_sinks(new.sinks, rt.session)
        except MonitorError as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            log.error("reload_rejected", error=str(exc), problems=problems)
            self.notifier.ready(self.status_line())
            return False
        try:
            await self._apply(rt, new, token, sinks)
        finally:
            self.notifier.ready(self.status_line())
        return True

    async def _apply(
        self, rt: Runtime, new: Config, token: SecretStr, sinks: dict[str, Sink]
    ) -> None:
        old = self.config
        configure_logging(new.log.level, new.log.format)
        await rt.delivery.stop(grace=STOP_GRACE)
        for sink in rt.sinks.values():
            await sink.aclose()
        rt.sinks = sinks
        rt.delivery = Delivery(rt.store, sinks, new.delivery, on_result=self.metrics.notification)
        fetcher = BalancesSource(DEFAULT_SOURCE, new.api, rt.session, token)
        reset = await rt.pipeline.reconfigure(new, new.rules, fetcher)
        rt.pipeline.on_queued = rt.delivery.wake
        rt.config = new
        self.config = new
        self.metrics.declare_sinks(sinks)
        self._update_firing(rt)
        await rt.delivery.start()
        if self._scheduler is not None and new.schedule != old.schedule:
            self._scheduler.reschedule_job(self.job_id, trigger=_trigger(new))
        if new.http != old.http:
            if self.health is not None:
                await self.health.close()
                self.health = None
            try:
                await self._start_health(new)
            except ConfigError as exc:
                log.error("reload_http_failed", error=str(exc))
        log.info(
            "reloaded",
            rules=len(new.rules),
            sinks=sorted(sinks),
            interval=format_duration(new.schedule.interval),
            rules_reset=reset,
        )


async def run_daemon(
    config: Config,
    stop: asyncio.Event,
    reload: asyncio.Event | None = None,
    *,
    config_path: Path | None = None,
) -> Exit:
    """Poll on schedule until ``stop`` is set (kept for callers of the v1 API)."""
    return await Daemon(config, config_path=config_path).run(stop, reload)


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
