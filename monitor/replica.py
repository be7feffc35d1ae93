"""This process among the replicas sharing a PostgreSQL: its lease rounds and what it owns.

Every ``tick`` (a third of ``lease``, at most a second) :class:`Replica` runs one round
(:meth:`~monitor.store.postgres.PostgresStore.lease_round`): heartbeat, read the leases with
the database's clock, decide with :func:`monitor.leases.plan`, renew, take and give up. A
source's lease is renewed about three times per ``lease``, so a replica that stops renewing
(killed, paused, cut off) loses its sources within ``lease`` and a live one never does.

What it takes, it reports (``on_acquired``: the daemon reloads the source's state, written by
another replica, and polls it at once); what it loses (a renewal refused, or a poll's commit
fenced off: :meth:`lost`) it logs as ``source_lost`` and stops polling. A clean stop
(:meth:`handover`) frees every lease at once, so the others take over at their next round.

A round that cannot reach the database is logged once (``state_database_unreachable``), makes
the replica not ready and is tried again every tick; the recovery is logged too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from monitor.errors import StoreError
from monitor.leases import SINGLETON, Lease, Plan, lease_source, plan, source_lease
from monitor.metrics import Metrics
from monitor.store.postgres import PostgresStore

log = structlog.get_logger("monitor.replica")

#: The longest time between two rounds (seconds): a clean stop's handover is seen this soon.
MAX_TICK = 1.0


class Replica:
    """The lease rounds of one replica, and the sources it owns between them."""

    def __init__(
        self,
        store: PostgresStore,
        *,
        lease: float,
        sources: Callable[[], Sequence[str]],
        on_acquired: Callable[[str], Awaitable[None]],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_singleton: Callable[[], Awaitable[None]] | None = None,
        on_released: Callable[[str], None] | None = None,
    ) -> None:
        #: Told a source this replica no longer polls (lost, rebalanced): its stream stops.
        self.on_released = on_released
        #: Told when this replica takes the singleton lease (its periodic work starts now).
        self.on_singleton = on_singleton
        self.store = store
        self.name = store.replica
        self.lease = lease
        self.tick = min(lease / 3, MAX_TICK)
        self.sources = sources
        self.on_acquired = on_acquired
        self.metrics = metrics
        self.clock = clock
        self.owned: set[str] = set()
        self.singleton = False
        #: Why the last round failed (the database unreachable), or None.
        self.error: str | None = None
        self.live: list[str] = []
        self._last_ok: float | None = None
        self._stopped = False

    def owns(self, source: str) -> bool:
        return source in self.owned

    def _decide(self, live: Sequence[str], leases: dict[str, Lease], now: float) -> Plan:
        wanted = [source_lease(s) for s in self.sources()]
        return plan(self.name, live, wanted, leases, now)

    async def round(self) -> None:
        """One lease round; never raises a StoreError (it is logged and kept in ``error``)."""
        started = self.clock()
        try:
            done = await self.store.lease_round(self.lease, self._decide)
        except StoreError as exc:
            self._unreachable(str(exc), started)
            return
        if self._stopped:
            return
        if self.error is not None:
            log.info("state_database_reachable", replica=self.name)
            self.error = None
        self._last_ok = started
        self.live = done.live
        for name in done.lost:
            self._drop(name, "lost")
        for name in done.released:
            self._drop(name, "rebalanced")
        for name, reason in sorted(done.acquired.items()):
            self._count(reason)
            source = lease_source(name)
            if name == SINGLETON:
                self.singleton = True
                log.info("singleton_acquired", replica=self.name, epoch=done.held[name])
                if self.on_singleton is not None:
                    await self.on_singleton()
            elif source is not None:
                self.owned.add(source)
                log.info(
                    "source_acquired",
                    source=source,
                    replica=self.name,
                    epoch=done.held[name],
                    reason=reason,
                )
                await self.on_acquired(source)
        self._gauge()

    def _unreachable(self, error: str, started: float) -> None:
        if error != self.error:
            log.error("state_database_unreachable", replica=self.name, error=error)
            self.error = error
        # Past the lease, another replica may hold what this one held: stop polling it (a
        # poll's commit would be refused anyway) until a round takes it again.
        if self._last_ok is None or started - self._last_ok > self.lease:
            for source in sorted(self.owned):
                self._drop(source_lease(source), "lost")
            if self.singleton:
                self._drop(SINGLETON, "lost")

    def _drop(self, name: str, reason: str) -> None:
        source = lease_source(name)
        self._count(reason)
        if name == SINGLETON:
            self.singleton = False
            log.info("singleton_released", replica=self.name, reason=reason)
            return
        if source is None or source not in self.owned:
            return
        self.owned.discard(source)
        self.store.holding.pop(name, None)
        if self.on_released is not None:
            self.on_released(source)
        if reason == "lost":
            log.warning(
                "source_lost",
                source=source,
                replica=self.name,
                reason="another replica holds its lease now",
            )
        else:
            log.info("source_released", source=source, replica=self.name, reason=reason)
        self._gauge()

    def lost(self, source: str) -> None:
        """A poll's commit was fenced off: another replica took ``source`` over."""
        if source in self.owned:
            self._drop(source_lease(source), "lost")

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.lease_changes.labels(reason=reason).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.sources_owned.set(len(self.owned))

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``tick`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.round()
            except Exception as exc:  # the job's one broad except: a bug must not end the rounds
                log.error("lease_round_crashed", replica=self.name, error=repr(exc), exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick):
                    await stop.wait()

    async def handover(self) -> None:
        """Give every lease up at once (SIGTERM): the others take over at their next round."""
        self._stopped = True
        handed = sorted(self.owned)
        if self.metrics is not None and handed:
            self.metrics.lease_changes.labels(reason="handover").inc(len(handed))
        self.owned.clear()
        self.singleton = False
        self._gauge()
        try:
            await self.store.release_leases()
            await self.store.release_claims()
        except StoreError as exc:
            log.error("handover_failed", replica=self.name, error=str(exc))
            return
        log.info("sources_handed_over", replica=self.name, sources=len(handed))
