"""Lifecycle: the scheduler polls what :func:`monitor.runtime.open_runtime` opened.

``run`` polls at once and then every ``schedule.interval`` (APScheduler, started inside the
running loop, ``max_instances=1`` and ``coalesce=True`` so a slow poll skips a tick instead of
piling up). SIGTERM and SIGINT set the stop event; shutdown lets an in-flight poll and in-flight
deliveries finish for a few seconds, leaves the rest queued in the outbox, and closes the store.
SIGHUP reloads the config file (rules, sinks, schedule, API, logging, HTTP endpoint); a bad new
file is refused and the old config stays in force. Under systemd ``Type=notify`` the daemon
reports READY, STATUS, WATCHDOG, RELOADING and STOPPING. ``once`` is the burst mode: one poll,
deliver within a deadline, exit.

With a PostgreSQL state (``[state] url``) several replicas run the same config: a
:class:`~monitor.replica.Replica` holds the leases of the sources this one polls (the poll job
of any other source does nothing), and of the singleton work (settling mute windows). A
source taken over is reloaded from the database and polled at once; SIGTERM hands every lease
over before the deliveries are let finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import __version__, heap
from monitor.api_actions import ActionsApi
from monitor.config import (
    Config,
    RuleConfig,
    SourceSpec,
    TelegramSinkConfig,
    describe_schedule,
    load_config,
    resolve_secret,
)
from monitor.control import CONTROL_CHECK
from monitor.delivery import Delivery, concurrency, group_windows, idle_recheck, release_held
from monitor.errors import ConfigError, ControlError, MonitorError
from monitor.exitcodes import Exit
from monitor.health import HealthServer, Readiness
from monitor.heartbeat import Heartbeat
from monitor.logs import configure as configure_logging
from monitor.metrics import Metrics
from monitor.mutes import window_at
from monitor.observe import missed_by_source, readiness, status_line
from monitor.pipeline import PollOutcome, SourcePipeline
from monitor.runtime import (
    Runtime,
    make_pipeline,
    open_runtime,
    require_secrets,
    token_provider,
    utcnow,
)
from monitor.schedule import make_trigger
from monitor.sdnotify import Notifier
from monitor.sinks.base import Sink
from monitor.sinks.registry import build_sinks
from monitor.source import BalancesSource
from monitor.streams import Streams
from monitor.web import WebContext

__all__ = [
    "MUTE_CHECK",
    "STOP_GRACE",
    "SUMMARY_DELAY",
    "Daemon",
    "Exit",  # defined in monitor.exitcodes, importable from here as before
    "install_signal_handlers",
    "run_daemon",
    "run_once",
]

log = structlog.get_logger("monitor.daemon")

#: Seconds an in-flight poll, then in-flight deliveries, may take to finish on shutdown.
STOP_GRACE = 4.0
#: How often held notifications are checked against the mute windows (seconds).
MUTE_CHECK = 15.0
#: How often the daemon prunes what retention no longer covers (finished outbox rows after
#: their week, ``[history] keep``) and expires notifications older than ``delivery.max_age``.
MAINTENANCE_EVERY = 3600.0
#: How long after a poll the alert gauges and the status line are brought up to date (seconds).
SUMMARY_DELAY = 1.0
#: How often the daemon looks for what time alone makes due before a source's next poll
#: (escalation steps, ``for`` waits, ``repeat`` reminders), in seconds: at most this late.
DUE_CHECK = 1.0
#: Seconds between two looks at whether a digest is due.
DIGEST_CHECK = 1.0
#: Seconds after start-up (and after a reload) when the heap is settled again (``monitor.heap``):
#: by then every source has made its first polls, whose accounts stay alive for months.
SETTLE_AFTER = 60.0


def install_signal_handlers(stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, _on_signal, reload, signal.SIGHUP)


def _on_signal(event: asyncio.Event, sig: signal.Signals) -> None:
    log.info("reload_requested" if sig == signal.SIGHUP else "stop_requested", signal=sig.name)
    event.set()


def _every(
    scheduler: AsyncIOScheduler,
    job: Callable[[], Awaitable[None]],
    seconds: float,
    ident: str,
    *,
    now: bool = False,
) -> None:
    """A periodic job of the daemon: never two runs at once, missed runs folded into one;
    ``now``: the first run at once rather than after ``seconds``."""
    scheduler.add_job(
        job,
        "interval",
        seconds=seconds,
        id=ident,
        max_instances=1,
        coalesce=True,
        **({"next_run_time": utcnow()} if now else {}),
    )


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
        self._rt: Runtime | None = None
        #: This process among the replicas of a PostgreSQL state (None: SQLite, alone).
        self.replica: Any = None
        self._scheduler: AsyncIOScheduler | None = None
        self._triggers: dict[str, Any] = {}
        #: When each source's poll job was added: missed polls count from there until a success.
        self._scheduled_at: dict[str, datetime] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._summary: asyncio.TimerHandle | None = None
        #: Whether the state database may hold notifications of mute windows (only windows
        #: hold them, so without windows one look at start-up or after a reload is enough).
        self._maybe_held = True
        #: The account streams, started and stopped with their source's poll job.
        self._streams: Streams | None = None
        self._heartbeat: Heartbeat | None = None
        #: The Telegram bots answering commands (sinks with ``commands = true``), each a task.
        self._bots: dict[asyncio.Task[None], asyncio.Event] = {}
        #: The (digest, local day, sink) this process has queued or found queued.
        self._digests_done: set[tuple[str, date, str]] = set()
        #: The exchange calendar of ``market_days`` (built at the first look; a reload resets it).
        self._digest_calendar: Container[date] | None = None

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None) -> Exit:
        """Poll on schedule until ``stop`` is set; reload whenever ``reload`` is set."""
        self._stop = stop
        heap.tune()
        async with open_runtime(self.config, self.metrics) as rt:
            self._rt = rt
            self._streams = Streams(self.metrics, rt.session, rt.store)
            self.metrics.declare_sinks(rt.sinks)
            self.metrics.declare_sources(rt.pipelines)
            self._start_replica(rt)
            self._start_bots(rt)
            self._update_firing(rt)  # the state on disk, before the first poll
            await self._start_health(self.config)  # before anything runs that must be stopped
            await rt.delivery.start()
            scheduler = AsyncIOScheduler(timezone=UTC)
            self._scheduler = scheduler
            for spec in self.config.all_sources():
                self._schedule(spec, rt.pipelines[spec.name], first=True)
            _every(scheduler, self._release_job, MUTE_CHECK, "mutes", now=True)
            self._start_heartbeat(rt, scheduler)
            _every(scheduler, self._control_job, CONTROL_CHECK, "control")
            _every(scheduler, self._due_job, DUE_CHECK, "due")
            self._start_digests(scheduler)
            _every(scheduler, self._maintenance_job, MAINTENANCE_EVERY, "maintenance")
            resync = self._resend_interval(rt)
            if self.replica is not None and resync is not None:
                _every(scheduler, self._resend_sync_job, resync, "resend-sync", now=True)
            self._settle_soon()
            scheduler.start()
            heap.settle()  # the config, the jobs and the state loaded: long-lived from here on
            rounds = asyncio.Event()
            leases = (
                asyncio.create_task(self.replica.run(rounds), name="leases")
                if self.replica is not None
                else None
            )
            watchdog = asyncio.create_task(self.notifier.run_watchdog(stop), name="watchdog")
            self._log_started(rt)
            self.notifier.ready(self.status_line())
            try:
                await self._serve(stop, reload)
            finally:
                stop.set()  # also when _serve raised: the watchdog must stop pinging
                self.notifier.stopping()
                rounds.set()
                await self._stop_bots()
                if leases is not None:
                    await leases
                await self._shutdown(rt, scheduler)
                await watchdog
                if self.health is not None:
                    await self.health.close()
                self.notifier.close()
        return Exit.OK

    def _start_replica(self, rt: Runtime) -> None:
        """With a PostgreSQL state: this process's :class:`~monitor.replica.Replica`."""
        state = self.config.state
        if not state.postgres:
            self.metrics.declare_replica(state.replica_name, "sqlite")
            self.metrics.sources_owned.set(len(rt.pipelines))
            return
        from monitor.replica import Replica

        self.metrics.declare_replica(state.replica_name, "postgresql")
        self.replica = Replica(
            rt.store,  # type: ignore[arg-type] # a PostgreSQL state opens a PostgresStore
            lease=state.lease.total_seconds(),
            sources=lambda: list(rt.pipelines),
            on_acquired=self._acquired,
            metrics=self.metrics,
            on_singleton=self._singleton_acquired,
            on_released=self._released,
        )
        for pipeline in rt.pipelines.values():
            pipeline.on_lost = self.replica.lost

    def _start_bots(self, rt: Runtime) -> None:
        """A task per Telegram sink with ``commands = true`` (:mod:`monitor.telegram_bot`)."""
        if not any(isinstance(s, TelegramSinkConfig) and s.commands for s in self.config.sinks):
            return
        from monitor.telegram_bot import bots_for  # imported only where a bot answers

        try:
            bots = bots_for(
                self.config,
                session=rt.session,
                store=rt.store,
                settings=lambda: self.config,
                changed=self._control_changed,
                digest=self._digest_html,
                singleton=lambda: self.replica is None or bool(self.replica.singleton),
                metrics=self.metrics,
            )
        except MonitorError as exc:  # a token that went away since the start's check
            log.error("telegram_bot_failed", error=str(exc))
            return
        for bot in bots:
            stop = asyncio.Event()
            task = asyncio.create_task(bot.run(stop), name=f"bot:{bot.name}")
            self._bots[task] = stop

    async def _digest_html(self, name: str | None) -> str:
        """The bots' ``/digest [name]``: the digest (the first one without a name) as of now,
        in Telegram HTML, from the stored snapshots; :class:`ControlError` says why not."""
        rt, config = self._rt, self.config
        if rt is None:
            raise ControlError("the monitor is starting or stopping: ask again in a moment")
        if not config.digests:
            raise ControlError("No digests configured ([[digests]] in the config).")
        from monitor import digest_render, digests

        try:
            digest = await digests.render_digest(
                rt.store,
                config,
                name if name is not None else config.digests[0].name,
                utcnow(),
                calendar=self._digest_calendar,
            )
        except ConfigError as exc:  # an unknown name: the message lists the names there are
            raise ControlError(str(exc)) from exc
        return digest_render.telegram_html(digest)

    async def _stop_bots(self) -> None:
        """Stop the bots: a long poll in flight ends at once, an update being handled is let
        finish (its offset kept) for up to the stop grace."""
        bots, self._bots = self._bots, {}
        for stop in bots.values():
            stop.set()
        if bots:
            _, running = await asyncio.wait(bots, timeout=STOP_GRACE)
            for task in running:
                task.cancel()
            await asyncio.gather(*bots, return_exceptions=True)

    async def _singleton_acquired(self) -> None:
        """This replica does the singleton work from now on: its jobs run at once."""
        if self._scheduler is None:
            return
        for job_id in ("resend-sync", "mutes", "digests"):
            job = self._scheduler.get_job(job_id)
            if job is not None:
                job.modify(next_run_time=utcnow())

    async def _acquired(self, source: str) -> None:
        """A source this replica took over: its state as the last owner left it, polled now."""
        rt = self._rt
        pipeline = rt.pipelines.get(source) if rt is not None else None
        if pipeline is None or self._scheduler is None:
            return
        try:
            await pipeline.load()
        except MonitorError as exc:  # the poll's own write will say more
            log.error("source_load_failed", source=source, error=str(exc))
        self._scheduled_at[source] = utcnow()
        job = self._scheduler.get_job(f"poll:{source}")
        if job is not None:
            job.modify(next_run_time=utcnow())
        spec = next((s for s in self.config.all_sources() if s.name == source), None)
        if self._streams is not None and spec is not None and source not in self._streams:
            self._streams.start(spec, pipeline)  # the stream follows the lease

    def _released(self, source: str) -> None:
        """A source another replica polls now: its stream here closes (its pushes would be
        fenced off anyway)."""
        if self._streams is not None and source in self._streams:
            task = asyncio.create_task(self._streams.hand_over(source))
            self._in_flight.add(task)  # the shutdown waits for it
            task.add_done_callback(self._in_flight.discard)

    def _owns(self, source: str) -> bool:
        """Whether this process polls ``source`` (always, without replicas)."""
        return self.replica is None or bool(self.replica.owns(source))

    def _owned(self, rt: Runtime) -> dict[str, SourcePipeline]:
        return {name: p for name, p in rt.pipelines.items() if self._owns(name)}

    def _schedule(self, spec: SourceSpec, pipeline: SourcePipeline, *, first: bool) -> None:
        """Add (or re-time) the source's poll job; a new job polls at once."""
        if self._scheduler is None:  # pragma: no cover - only called while running
            return
        pipeline.on_poll = functools.partial(self._polled, spec.name)
        trigger = make_trigger(self.config.schedule, spec.interval)
        self._triggers[spec.name] = trigger
        job_id = f"poll:{spec.name}"
        if not first and self._scheduler.get_job(job_id) is not None:
            self._scheduler.reschedule_job(job_id, trigger=trigger)
            return
        self._scheduled_at[spec.name] = utcnow()
        self._scheduler.add_job(
            self._poll_job,
            trigger,
            args=(spec.name,),
            id=job_id,
            next_run_time=utcnow(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        if self._streams is not None and self._owns(spec.name):  # its life is its poll job's
            self._streams.start(spec, pipeline)

    async def _unschedule(self, name: str) -> None:
        """Remove the source's poll job, and its stream with it."""
        if self._scheduler is not None and self._scheduler.get_job(f"poll:{name}"):
            self._scheduler.remove_job(f"poll:{name}")
        if self._streams is not None:
            await self._streams.stop(name)

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
        log.info(
            "started",
            version=__version__,
            sources={
                name: p.fetcher.where if isinstance(p.fetcher, BalancesSource) else None
                for name, p in rt.pipelines.items()
            },
            schedule=describe_schedule(self.config.schedule),
            rules=len(self.config.rules),
            sinks=sorted(rt.sinks),
            state=self.config.state.where(),
            replica=self.config.state.replica_name if self.config.state.postgres else None,
            http=self.health.url if self.health is not None else None,
            systemd=self.notifier.enabled,
        )

    async def _poll_job(self, source: str) -> None:
        rt = self._rt
        pipeline = rt.pipelines.get(source) if rt is not None else None
        if pipeline is None or not self._owns(source):
            return  # another replica polls it
        async with self._job("poll_cancelled", source=source):
            await pipeline.job()

    @contextlib.asynccontextmanager
    async def _job(self, cancelled: str, **context: str) -> AsyncIterator[None]:
        """Run a scheduled job as one the shutdown waits for (up to its grace) and may cancel."""
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if not self._stop.is_set() or task is None:
                raise
            # Cancelled by the shutdown below, after its grace: a poll is simply not recorded,
            # and the next run polls again. Re-raising would make APScheduler log a traceback
            # whose frames hold the request headers (the token).
            task.uncancel()
            log.warning(cancelled, grace=STOP_GRACE, **context)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _release_job(self) -> None:
        """Settle what mute windows held once they no longer cover the rule; never raises."""
        rt = self._rt
        if rt is None or not (self.config.mute or self._maybe_held or rt.control.state.silences):
            return  # no window, and nothing held since the last look: nothing to settle
        if self.replica is not None and not self.replica.singleton:
            return  # another replica does it
        async with self._job("mute_release_cancelled"):
            try:
                if await release_held(rt.store, self.config, utcnow(), rt.control.state):
                    rt.delivery.wake()
                self._maybe_held = await rt.store.held_count() > 0
            except MonitorError as exc:
                log.error("mute_release_failed", error=str(exc))

    async def _control_job(self) -> None:
        """Pick up silences and acks written by the CLI or the API (and silences that began
        or ended): settle what is held at once, and wake delivery for what an ack queued."""
        rt = self._rt
        if rt is None:
            return
        async with self._job("control_cancelled"):
            try:
                if await rt.control.refresh(rt.store, utcnow()):
                    state = rt.control.state
                    log.info(
                        "control_refreshed",
                        silences_active=len(state.active_silences(utcnow().timestamp())),
                        acks=len(state.acks),
                    )
                    self._maybe_held = True
                    rt.delivery.wake()
                    await self._release_job()
            except MonitorError as exc:
                log.error("control_refresh_failed", error=str(exc))

    async def _due_job(self) -> None:
        """Step the sources whose alerts time alone changed since their last poll: escalation
        steps, and with the stream connected ``for`` waits and ``repeat`` reminders (a source
        may then be polled minutes apart); never raises."""
        rt = self._rt
        if rt is None or not any(_timed(r) for r in self.config.rules):
            return
        now = utcnow()
        async with self._job("due_cancelled"):
            for name, pipeline in self._owned(rt).items():
                stream = self._streams.state(name) if self._streams is not None else None
                due = pipeline.due_at(waits=stream is not None and stream.connected)
                if due is not None and due <= now:
                    await pipeline.step_due()

    def _start_digests(self, scheduler: AsyncIOScheduler) -> None:
        """The digest job, checking every second, where ``[[digests]]`` has any (at a start
        or a reload: at once, so one due earlier today is caught up)."""
        if scheduler.get_job("digests") is not None:
            scheduler.remove_job("digests")
        if self.config.digests:
            _every(scheduler, self._digest_job, DIGEST_CHECK, "digests", now=True)

    async def _digest_job(self) -> None:
        """Queue the ``[[digests]]`` whose time has come today (at start: those due earlier
        today and not queued yet, once each source owned here has finished its first poll);
        never raises."""
        rt = self._rt
        if rt is None or not self.config.digests:
            return
        if self.replica is not None and not self.replica.singleton:
            return  # the replica doing singleton work queues them (the id makes a race harmless)
        if any(p.last_poll_at is None for p in self._owned(rt).values()):
            return  # at a start: a catch-up carries the first poll's figures, not none or old ones
        from monitor import digests  # imported only where there are digests

        async with self._job("digest_cancelled"):
            try:
                if self._digest_calendar is None:
                    self._digest_calendar = digests.holidays(self.config)
                queued = await digests.queue_due(
                    rt.store,
                    self.config,
                    utcnow(),
                    done=self._digests_done,
                    calendar=self._digest_calendar,
                )
                if queued:
                    rt.delivery.wake()
            except MonitorError as exc:
                log.error("digest_failed", error=str(exc))

    def _start_heartbeat(self, rt: Runtime, scheduler: AsyncIOScheduler) -> None:
        """Add (or re-time, or remove) the heartbeat job of ``[heartbeat]``."""
        config = self.config.heartbeat
        if scheduler.get_job("heartbeat") is not None:
            scheduler.remove_job("heartbeat")
        self._heartbeat = None
        if config is None:
            return
        self._heartbeat = Heartbeat(
            config,
            resolve_secret(config.url_ref()),
            rt.session,
            on_result=lambda result: self.metrics.heartbeats.labels(result).inc(),
        )
        _every(scheduler, self._heartbeat_job, config.every.total_seconds(), "heartbeat")

    async def _heartbeat_job(self) -> None:
        """One beat of ``[heartbeat]`` (:meth:`Heartbeat.beat`); never raises."""
        rt, beat = self._rt, self._heartbeat
        if rt is None or beat is None:
            return
        if self.replica is not None and not self.replica.singleton:
            return  # the replica doing singleton work beats, judging every replica's polls
        async with self._job("heartbeat_cancelled"):
            await beat.beat(rt.pipelines, rt.store, shared=self.replica is not None)

    def _control_changed(self) -> None:
        """A silence or an ack was written through the API: pick it up now."""
        if self._scheduler is not None and self._scheduler.get_job("control") is not None:
            self._scheduler.modify_job("control", next_run_time=utcnow())

    async def _maintenance_job(self) -> None:
        """Keep the database bounded while the daemon runs for months; never raises."""
        rt = self._rt
        if rt is None:
            return
        if self.replica is not None and not self.replica.singleton:
            return  # another replica does it
        async with self._job("maintenance_cancelled"):
            try:
                await rt.delivery.expire()
                keep = self.config.history.keep.total_seconds()
                await rt.store.compact_history(before=utcnow().timestamp())
                pruned = await rt.store.prune_history(before=utcnow().timestamp() - keep)
                if any(pruned.values()):
                    log.info("history_pruned", **pruned)
            except MonitorError as exc:
                log.error("maintenance_failed", error=str(exc))
            self._settle_job()

    def _settle_soon(self) -> None:
        """Settle the heap once the first polls are in (a one-off job)."""
        if self._scheduler is not None:
            self._scheduler.add_job(
                self._settle_job,
                "date",
                run_date=utcnow() + timedelta(seconds=SETTLE_AFTER),
                id="settle",
                replace_existing=True,
            )

    def _settle_job(self) -> None:
        """A full collection of the cyclic garbage, then freeze what is left (monitor.heap)."""
        seconds = heap.settle()
        log.debug("heap_settled", duration_ms=round(seconds * 1000, 1))

    @staticmethod
    def _resend_interval(rt: Runtime) -> float | None:
        """The shortest re-send interval of the sinks that re-send (Alertmanager), if any."""
        found = [i for s in rt.sinks.values() if (i := getattr(s, "resend_interval", None))]
        return min(found) if found else None

    async def _resend_sync_job(self) -> None:
        """With replicas: the sinks that re-send what fires (Alertmanager) do so on the replica
        doing singleton work, from the state database's view; never raises."""
        rt = self._rt
        if rt is None or self.replica is None:
            return
        async with self._job("resend_sync_cancelled"):
            singleton = bool(self.replica.singleton)
            for name, sink in list(rt.sinks.items()):
                sync = getattr(sink, "sync", None)
                if sync is None:
                    continue
                try:
                    firing = await rt.store.firing_deliveries(name) if singleton else []
                    await sync(firing, resend=singleton)
                except MonitorError as exc:
                    log.error("resend_sync_failed", sink=name, error=str(exc))

    async def _shutdown(self, rt: Runtime, scheduler: AsyncIOScheduler) -> None:
        scheduler.pause()
        if self._streams is not None:
            await self._streams.close(STOP_GRACE)
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        if self._in_flight:
            _, running = await asyncio.wait(self._in_flight, timeout=STOP_GRACE)
            for task in running:
                task.cancel()
            if running:  # let them unwind before the session and the store close
                await asyncio.wait(running)
        scheduler.shutdown(wait=False)
        if self.replica is not None:
            await self.replica.handover()  # the others take the sources over now
        await rt.delivery.stop(grace=STOP_GRACE)
        if self.replica is not None:
            with contextlib.suppress(MonitorError):  # unsent rows: no need to wait for expiry
                await rt.store.release_claims()  # type: ignore[attr-defined] # PostgresStore
        pending = await rt.store.pending()
        log.info("stopped", pending_notifications=pending)

    # ------------------------------------------------------------------ observation

    def _polled(self, source: str, outcome: PollOutcome) -> None:
        rt = self._rt
        if rt is None or source not in rt.pipelines:
            return
        if self._streams is not None:
            self._streams.polled(source)
        success = rt.pipelines[source].last_success
        self.metrics.observe_poll(
            source,
            ok=outcome.ok,
            duration=outcome.duration,
            accounts=outcome.accounts if outcome.ok else None,
            at=success.timestamp() if success is not None else 0.0,
        )
        # The firing gauges and the status line look at every source: with many sources,
        # doing that after each poll costs more than the polls. Once a second is enough (a
        # scrape of /metrics brings the gauges up to date itself).
        if self._summary is None:
            self._summary = asyncio.get_running_loop().call_later(SUMMARY_DELAY, self._summarise)

    def _summarise(self) -> None:
        """The alert gauges and systemd's status line, after the polls of the last second."""
        self._summary = None
        rt = self._rt
        if rt is None:
            return
        self._update_firing(rt)
        self.notifier.status(self.status_line())

    def _update_firing(self, rt: Runtime) -> None:
        severities = {r.name: r.severity.value for r in self.config.rules}
        self.metrics.set_firing(
            (a.rule, severities.get(a.rule, "critical"))
            for p in self._owned(rt).values()  # a replica counts what it polls
            for a in p.firing_alerts()
        )
        self.metrics.set_pending(
            a.rule for p in self._owned(rt).values() for a in p.pending_alerts()
        )

    def status_line(self) -> str:
        """One short human line for ``systemctl status``."""
        return status_line(self._owned(self._rt) if self._rt is not None else None)

    def readiness(self) -> Readiness:
        """Ready when every source polled successfully within its last three scheduled polls."""
        if self._rt is None:
            return Readiness(False, ["starting"])
        if self.replica is not None and self.replica.error is not None:
            return Readiness(
                False,
                [f"state database unreachable: {self.replica.error}"],
                {"replica": self.replica.name},
            )
        ready = readiness(self._owned(self._rt), self._triggers, utcnow())
        if self.replica is not None:
            ready.detail["replica"] = self.replica.name
            ready.detail["sources_owned"] = len(self.replica.owned)
        return ready

    async def _refresh_metrics(self) -> None:
        if self._rt is not None:
            self._update_firing(self._rt)
            store = self._rt.store
            self.metrics.outbox_pending.set(await store.pending())
            now = utcnow()
            self.metrics.set_mutes(
                ((m.name, window_at(m, now) is not None) for m in self.config.mute),
                held=await store.held_count(),
            )
            self.metrics.silences_active.set(
                len(self._rt.control.state.active_silences(now.timestamp()))
            )
            self.metrics.set_schedule(
                missed_by_source(self._owned(self._rt), self._triggers, self._scheduled_at, now),
                self._next_owned_polls(),
            )

    def _next_polls(self) -> dict[str, float]:
        """Unix time of each source's next scheduled poll (none while the scheduler stops)."""
        jobs = self._scheduler.get_jobs() if self._scheduler is not None else []
        return {
            job.id.removeprefix("poll:"): job.next_run_time.timestamp()
            for job in jobs
            if job.id.startswith("poll:") and job.next_run_time is not None
        }

    def _web_context(self) -> WebContext | None:
        """What the dashboard reads: the store, the config in force, the next polls."""
        if self._rt is None:
            return None
        return WebContext(self._rt.store, lambda: self.config, self._next_owned_polls, utcnow)

    def _next_owned_polls(self) -> dict[str, float]:
        """The next polls of the sources this process polls: with replicas, the job of a source
        another replica holds runs and does nothing, so its time says nothing (the page shows
        none rather than a wrong one)."""
        return {k: v for k, v in self._next_polls().items() if self._owns(k)}

    async def _start_health(self, config: Config) -> None:
        address = config.http.address
        if address is None:
            return
        ref = config.http.auth_token_ref()
        actions = ActionsApi(
            store=lambda: self._rt.store if self._rt is not None else None,
            config=lambda: self.config,
            changed=self._control_changed,
        )
        server = HealthServer(
            self.metrics,
            self.readiness,
            self._refresh_metrics,
            auth_token=resolve_secret(ref) if ref is not None else None,
            routes=[actions.add_routes],
            dashboard=self._web_context(),
            ui=config.http.ui,
        )
        try:
            await server.start(*address)
        except OSError as exc:  # in use, or not ours: a restart would meet it again (exit 2)
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
            if new.state != self.config.state:
                raise ConfigError("state: changing the state database needs a restart")
            old_specs = {s.name: s for s in self.config.all_sources()}
            tokens: dict[str, Any] = {}
            changed = []
            for spec in new.all_sources():
                old = old_specs.get(spec.name)
                pipeline = rt.pipelines.get(spec.name)
                fetcher = pipeline.fetcher if pipeline is not None else None
                if (
                    old is not None
                    and old.config == spec.config
                    and isinstance(fetcher, BalancesSource)
                ):
                    tokens[spec.name] = fetcher.tokens  # unchanged: keep the live token
                else:
                    changed.append(spec)
            require_secrets(  # every one that is missing, in one reload_rejected
                [ref for spec in changed for ref in spec.config.secret_refs_at(spec.key)]
                + [ref for i, sink in enumerate(new.sinks) for ref in sink.secret_refs(i)]
                + ([new.heartbeat.url_ref()] if new.heartbeat is not None else [])
            )
            for spec in changed:
                tokens[spec.name] = token_provider(spec, rt.session)
            sinks = build_sinks(new.sinks, rt.session)
        except MonitorError as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            log.error("reload_rejected", error=str(exc), problems=problems)
            self.notifier.ready(self.status_line())
            return False
        try:
            await self._apply(rt, new, tokens, sinks)
        finally:
            self.notifier.ready(self.status_line())
        self._maybe_held = True
        await self._release_job()  # a mute window removed or changed: settle what it held
        self._settle_soon()
        return True

    async def _apply(
        self, rt: Runtime, new: Config, tokens: dict[str, Any], sinks: dict[str, Sink]
    ) -> None:
        old = self.config
        configure_logging(new.log.level, new.log.format)
        await rt.delivery.stop(grace=STOP_GRACE)
        for sink in rt.sinks.values():
            await sink.aclose()
        rt.sinks = sinks
        rt.delivery = Delivery(
            rt.store,
            sinks,
            new.delivery,
            on_result=self.metrics.notification,
            windows=group_windows(new),
            idle_recheck=idle_recheck(new),
            retry_at_start=not new.state.postgres,
            concurrency=concurrency(new),
        )
        self.config = rt.config = new
        self._digest_calendar = None  # market_days or [schedule] may have changed
        specs = {s.name: s for s in new.all_sources()}
        reset: dict[str, list[str]] = {}
        for name in [n for n in rt.pipelines if n not in specs]:
            await self._unschedule(name)
            del rt.pipelines[name]
            self._triggers.pop(name, None)
            self._scheduled_at.pop(name, None)
        for name, spec in specs.items():
            pipeline = rt.pipelines.get(name)
            if pipeline is None:
                pipeline = make_pipeline(
                    spec,
                    new,
                    session=rt.session,
                    store=rt.store,
                    delivery=rt.delivery,
                    tokens=tokens[name],
                    control=rt.control,
                )
                await pipeline.load()
                if self.replica is not None:
                    pipeline.on_lost = self.replica.lost
                rt.pipelines[name] = pipeline
                self._schedule(spec, pipeline, first=True)
                continue
            fetcher = BalancesSource(name, spec.config, rt.session, tokens[name])
            dropped = await pipeline.reconfigure(
                new, new.rules_for(name), fetcher, spec.config.down_after
            )
            if dropped:
                reset[name] = dropped
            pipeline.on_queued = rt.delivery.wake
            if self._streams is not None and _source_of(old, name) != spec.config:
                await self._streams.stop(name)  # a new URL, token or stream setting
                if self._owns(name):
                    self._streams.start(spec, pipeline)
            if new.schedule != old.schedule or spec.interval != _interval_of(old, name):
                self._schedule(spec, pipeline, first=False)
        self.metrics.declare_sinks(sinks)
        self.metrics.declare_sources(rt.pipelines)
        self._update_firing(rt)
        await rt.delivery.start()
        await self._stop_bots()  # the sinks' chats, admins or tokens may have changed
        self._start_bots(rt)
        if self._scheduler is not None and new.heartbeat != old.heartbeat:
            self._start_heartbeat(rt, self._scheduler)
        if self._scheduler is not None:
            self._start_digests(self._scheduler)
        if new.http != old.http:
            if self.health is not None:
                await self.health.close()
                self.health = None
            try:
                await self._start_health(new)
            except MonitorError as exc:
                log.error("reload_http_failed", error=str(exc))
        log.info(
            "reloaded",
            sources=sorted(rt.pipelines),
            rules=len(new.rules),
            sinks=sorted(sinks),
            schedule=describe_schedule(new.schedule),
            rules_reset=reset,
        )


def _timed(rule: RuleConfig) -> bool:
    """Whether time alone changes the rule's alerts (``escalate``, ``for``, ``repeat``)."""
    for_ = getattr(rule, "for_", None)
    return bool(
        getattr(rule, "escalate", ())
        or getattr(rule, "repeat", None)
        or (for_ is not None and for_ > timedelta(0))
    )


def _source_of(config: Config, source: str) -> object:
    for spec in config.all_sources():
        if spec.name == source:
            return spec.config
    return None


def _interval_of(config: Config, source: str) -> timedelta | None:
    for spec in config.all_sources():
        if spec.name == source:
            return spec.interval
    return None


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
    """One poll of every source (concurrently), queue the digests due today and not queued yet,
    then deliver within ``delivery.once_deadline``.

    The outcome is the first failed source's, else a sum over all sources. A PostgreSQL state
    is for replicas that share the sources by leases: ``once`` holds none, so it is refused.
    """
    if config.state.postgres:
        raise ConfigError(
            "once: state.url is a PostgreSQL shared by replicas, each polling the sources it"
            " holds the lease of; use `run` (once would hold no lease and write nothing)"
        )
    async with open_runtime(config) as rt:
        outcomes = await asyncio.gather(*(p.poll() for p in rt.pipelines.values()))
        await release_held(rt.store, config, utcnow(), rt.control.state)
        if config.digests:  # a timer running `once` sends each digest once a day, too
            from monitor import digests

            await digests.queue_due(rt.store, config, utcnow(), done=set())
        deadline = time.time() + config.delivery.once_deadline.total_seconds()
        pending = await rt.delivery.drain(deadline)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        return Exit.SOURCE_FAILED, failed[0], pending
    total = PollOutcome(
        ok=True,
        accounts=sum(o.accounts for o in outcomes),
        changed=sum(o.changed for o in outcomes),
        notifications=sum(o.notifications for o in outcomes),
        duration=max((o.duration for o in outcomes), default=0.0),
    )
    if pending:
        return Exit.UNDELIVERED, total, pending
    return Exit.OK, total, pending
