"""Drains the outbox: one worker per sink, retries with backoff, nothing lost.

Each sink gets its own worker, so a slow or failing sink never delays another, nor polling.
A worker takes its sink's oldest pending notification (order per sink is kept: a ``resolved``
never overtakes its ``firing``), sends it, and records the outcome in the store:

* success: ``delivered``;
* retryable ``SinkError`` (connection, timeout, 5xx, 429): ``pending`` again, next attempt after
  an exponential backoff with jitter, never sooner than the receiver's ``Retry-After``;
* other ``SinkError`` (4xx): ``failed``, logged with the status;
* older than ``delivery.max_age``: ``expired``, logged as an error.

A chat sink with ``group_window`` waits that long after its oldest pending notification and
sends everything pending by then as one message (a market-wide drop is one message, not 200).
A sink that must keep re-telling its receiver what fires (Alertmanager) is handed, at start-up,
the last delivered firing notification of each alert still firing (``restore``).

A sink whose receiver keeps what an event opened until told otherwise (PagerDuty, an
:class:`~monitor.sinks.base.EventResolvingSink`) is owed a resolve of each event it delivered,
``resolve_events_after`` seconds after the trigger was delivered. The resolve is not a timer
that a restart would lose, nor an outbox row queued ahead of its time (it would hold back the
sink's queue, which is kept in order, and a restart makes every pending row due at once): it is
derived from the delivered trigger, which the store keeps for days. At start, at each ``once``
drain and whenever the sink's worker is idle (at least every :data:`IDLE_RECHECK` seconds),
:meth:`Delivery.resolve_events` queues a resolve for every such trigger that is due and has none
yet; from there it is an ordinary notification, retried like any other.

Notifications held by a ``[[mute]]`` window are settled by :func:`release_held` once the
window no longer covers their rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from monitor.config import Config, DeliveryConfig
from monitor.cycle import notification_id
from monitor.digest import Digest, is_digest_payload
from monitor.errors import SinkError, StoreError
from monitor.models import Notification, Status
from monitor.mutes import Held, muting, settle
from monitor.silences import EMPTY, ControlState
from monitor.sinks.base import BatchSink, DigestSink, EventResolvingSink, PacedSink, Sink
from monitor.store import Mark, OutboxRow, Store

log = structlog.get_logger("monitor.delivery")

#: How long a worker with nothing to do sleeps before it looks at the outbox again anyway.
IDLE_RECHECK = 60.0
#: How long a worker waits after a failure of the state database before it tries again.
STORE_RETRY = 5.0
#: At most this many notifications go into one grouped message.
BATCH_LIMIT = 100
#: ... and this many to a paced sink (a chat webhook), so that a storm of 10,000 is 20 long
#: messages (each headed by its count of firing and resolved) rather than 100 of them.
PACED_BATCH_LIMIT = 500
#: At most this many notifications are claimed at once for concurrent sends (a storm).
STORM_BATCH = 500


def backoff(
    attempts: int,
    config: DeliveryConfig,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling, capped, with jitter."""
    base = config.initial_backoff.total_seconds() * 2.0 ** min(attempts - 1, 30)
    delay = min(base, config.max_backoff.total_seconds()) * (0.5 + rand() / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class Delivery:
    """Owns the per-sink workers. ``wake()`` after queueing; ``drain()`` for ``once``."""

    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        config: DeliveryConfig,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        on_result: Callable[[str, str], None] | None = None,
        windows: Mapping[str, float] | None = None,
        idle_recheck: float = IDLE_RECHECK,
        retry_at_start: bool = True,
        concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        #: Whether start() makes every waiting retry due at once: a restart of the one process,
        #: not of one replica among several sharing the outbox (and its backoff).
        self.retry_at_start = retry_at_start
        #: How long an idle worker sleeps before it looks at the outbox again anyway.
        self.idle_recheck = idle_recheck
        #: How many notifications may be in flight to each sink (1 when not given).
        self.concurrency = dict(concurrency or {})
        #: Seconds each grouping sink waits to collect notifications into one message.
        self.windows = {k: v for k, v in (windows or {}).items() if v > 0}
        #: Told (sink, result) after each attempt at one notification (delivered, retry or
        #: failed) and when one expires (expired): every notification ends in exactly one of
        #: delivered, failed and expired (a grouped message is one attempt at each of its rows).
        self.on_result = on_result
        self.sinks = dict(sinks)
        self.config = config
        self.clock = clock
        self.rand = rand
        self._wake = {name: asyncio.Event() for name in self.sinks}
        #: When (``time.monotonic()``) each paced sink may take its next message.
        self._next_send: dict[str, float] = {}
        #: Each paced sink's ``min_interval`` (an isinstance of a Protocol is slow: once here).
        self._pace = {n: s.min_interval for n, s in self.sinks.items() if isinstance(s, PacedSink)}
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    # ------------------------------------------------------------------ daemon mode

    async def start(self) -> None:
        for name in self.sinks:  # before expire() prunes old delivered rows
            await self.resolve_events(name)
        await self.expire()
        if self.retry_at_start:
            await self.store.retry_now(self.clock())
        await self.restore()
        for name in await self.store.outbox_sinks():
            if name not in self.sinks:
                log.warning("outbox_sink_unknown", sink=name)
        self._tasks = [
            asyncio.create_task(self._worker(name, until=None), name=f"delivery:{name}")
            for name in self.sinks
        ]

    async def stop(self, grace: float) -> None:
        """Let in-flight sends finish for up to ``grace`` seconds; the rest stay queued."""
        self._stopping = True
        self.wake()
        if not self._tasks:
            return
        _, running = await asyncio.wait(self._tasks, timeout=grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if running:
            log.info("delivery_interrupted", sinks=sorted(t.get_name() for t in running))

    # ------------------------------------------------------------------ once mode

    async def drain(self, deadline: float) -> int:
        """Deliver until nothing is due before ``deadline`` (a ``time.time()`` value).

        Returns how many notifications are still pending for the configured sinks.
        """
        for name in self.sinks:
            await self.resolve_events(name)
        await self.expire()
        await self.store.retry_now(self.clock())
        await asyncio.gather(*(self._worker(name, until=deadline) for name in self.sinks))
        return await self.store.pending(self.sinks)

    # ------------------------------------------------------------------ workers

    async def expire(self) -> None:
        now = self.clock()
        for row in await self.store.expire(
            older_than=now - self.config.max_age.total_seconds(),
            now=now,
            keep_finished=self.config.keep_finished.total_seconds(),
        ):
            log.error(
                "notification_expired",
                sink=row.sink,
                source=row.source,
                id=row.id,
                rule=row.payload.get("rule"),
                account=row.payload.get("account_number"),
                attempts=row.attempts,
                max_age=str(self.config.max_age),
            )
            self._report(row.sink, "expired")

    def _report(self, sink: str, result: str) -> None:
        if self.on_result is not None:
            self.on_result(sink, result)

    async def resolve_events(self, name: str) -> int:
        """Queue the resolves that sink ``name`` is owed for the events it delivered (if it is
        an :class:`EventResolvingSink`); return how many were queued."""
        sink = self.sinks[name]
        if not isinstance(sink, EventResolvingSink):
            return 0
        now = self.clock()
        owed = await self.store.unresolved_events(
            name, delivered_before=now - sink.resolve_events_after
        )
        if not owed:
            return 0
        # Queued like a mute window's release: one row per notification and sink, never twice.
        await self.store.release(
            [(event_resolution(n), name, n.alert.source) for n in owed], [], now
        )
        log.info("event_resolves_queued", sink=name, count=len(owed))
        return len(owed)

    async def restore(self) -> None:
        """Hand each sink that asks for it the alerts it was told are firing."""
        for name, sink in self.sinks.items():
            restore = getattr(sink, "restore", None)
            if restore is None:
                continue
            firing = await self.store.firing_deliveries(name)
            if firing:
                await restore(firing)
                log.info("sink_restored", sink=name, firing=len(firing))

    async def _worker(self, name: str, *, until: float | None) -> None:
        """One sink's worker: a StoreError is logged and retried, it never ends the worker
        (in once mode it ends this sink's part of the drain; its rows stay pending)."""
        while not self._stopping:
            try:
                await self._deliver(name, until=until)
            except StoreError as exc:
                log.error("delivery_store_failed", sink=name, error=str(exc))
                if until is not None:
                    return
                await _wait(self._wake[name], STORE_RETRY)
            else:
                return

    async def _deliver(self, name: str, *, until: float | None) -> None:
        sink = self.sinks[name]
        wake = self._wake[name]
        while not self._stopping:
            wake.clear()
            row = await self.store.next_pending(name)
            if row is None:
                if await self.resolve_events(name):
                    continue
                if until is not None:
                    return
                await _wait(wake, self.idle_recheck)
                continue
            now = self.clock()
            # The same comparison as Store.expire's, or a row could be too old here and not
            # old enough there, and the worker would spin.
            if row.created_at < now - self.config.max_age.total_seconds():
                await self.expire()
                continue
            if until is not None and now >= until:
                return  # once mode: no new attempt starts after the deadline
            if row.next_attempt_at > now:
                if until is not None and row.next_attempt_at > until:
                    return
                await _wait(wake, row.next_attempt_at - now, interruptible=until is None)
                continue
            if not await self._paced(sink, until):
                return
            window = self.windows.get(name)
            if window is None or not isinstance(sink, BatchSink):
                limit = 1 if name in self._pace else self.concurrency.get(name, 1)
                if limit <= 1:
                    await self._attempt(sink, row)
                    continue
                rows = await self.store.next_batch(name, limit=STORM_BATCH, now=now)
                await self._attempt_many(sink, rows or [row], limit, until)
                continue
            ready = row.created_at + window
            if ready > now and (until is None or ready < until):
                await asyncio.sleep(ready - now)  # let the rest of the group arrive
            most = PACED_BATCH_LIMIT if name in self._pace else BATCH_LIMIT
            rows = await self.store.next_batch(name, limit=most, now=self.clock())
            if rows:
                await self._attempt_batch(sink, rows)

    async def _attempt_batch(self, sink: BatchSink, rows: Sequence[OutboxRow]) -> None:
        """Send ``rows`` as one message; they succeed or fail together. A digest is a message
        of its own: the notifications before it go first, as one message."""
        digests = [i for i, row in enumerate(rows) if is_digest_payload(row.payload)]
        if digests:
            rows = rows[: digests[0]] or rows[:1]
        if len(rows) == 1:
            await self._attempt(sink, rows[0])
            return
        context = {"sink": sink.name, "ids": [r.id for r in rows], "count": len(rows)}
        attempt = max(r.attempts for r in rows) + 1
        await self._deliver_rows(
            sink, rows, lambda: sink.send_batch([r.notification() for r in rows]), context, attempt
        )

    async def _paced(self, sink: Sink, until: float | None) -> bool:
        """Wait until a paced sink (a chat webhook) may take its next message; False when that
        is past ``until`` (once mode), when nothing is sent."""
        if sink.name not in self._pace:
            return True
        wait = self._next_send.get(sink.name, 0.0) - time.monotonic()
        if wait <= 0:
            return True
        if until is not None and self.clock() + wait >= until:
            return False
        await asyncio.sleep(wait)
        return True

    def _sent(self, sink: Sink) -> None:
        """Note a message to a paced sink: the next one waits its ``min_interval``."""
        interval = self._pace.get(sink.name)
        if interval is not None:
            self._next_send[sink.name] = time.monotonic() + interval

    async def _attempt_many(
        self, sink: Sink, rows: Sequence[OutboxRow], limit: int, until: float | None
    ) -> None:
        """Send ``rows`` with up to ``limit`` in flight: those of one account one after another,
        in order (after a retryable failure the account's later rows wait for it), those of
        different accounts at the same time.

        A row delivered (or failed for good) is recorded before its slot is free for the next
        send: whoever records writes every outcome settled meanwhile in one transaction (a
        group commit), so a crash leaves at most ``limit`` rows sent and unrecorded, the ones
        in flight (the promise of README's High availability). The rows that failed and will
        be retried are written at the end, all due again together at the latest of their
        backoffs, so no account's later row can overtake its retried one."""
        accounts: dict[tuple[str, Any], list[OutboxRow]] = {}
        for row in rows:
            accounts.setdefault((row.source, row.payload.get("account_number")), []).append(row)
        gate = asyncio.Semaphore(limit)
        recording = asyncio.Lock()
        settled: list[Mark] = []
        retried: list[tuple[OutboxRow, _Outcome]] = []
        broken: list[BaseException] = []  # the store failed: no new send starts

        async def record() -> None:
            async with recording:
                if not settled or broken:
                    return
                marks = settled[:]
                settled.clear()
                try:
                    await self.store.mark_many(marks, now=self.clock())
                except Exception as exc:  # raised once every send in flight has ended
                    broken.append(exc)

        async def one_account(queue: list[OutboxRow]) -> None:
            for row in queue:
                if broken or self._stopping or (until is not None and self.clock() >= until):
                    return
                async with gate:
                    outcome = await self._outcome(sink, [row], *self._single(sink, row))
                    self._report(
                        sink.name, "retry" if outcome.state == "pending" else outcome.state
                    )
                    if outcome.state == "pending":
                        retried.append((row, outcome))
                        return
                    settled.append(Mark(row.seq, outcome.state, error=outcome.error))
                    await record()

        await asyncio.gather(*(one_account(q) for q in accounts.values()))
        if broken:
            raise broken[0]
        delays = [o.delay for _, o in retried if o.delay is not None]
        now = self.clock()
        retry_at = now + max(delays) if delays else None
        marks = [
            Mark(row.seq, o.state, error=o.error, next_attempt_at=retry_at) for row, o in retried
        ]
        if marks:
            await self.store.mark_many(marks, now=now)

    def _single(
        self, sink: Sink, row: OutboxRow
    ) -> tuple[Callable[[], Awaitable[None]], dict[str, Any], int]:
        """How to send one row, with its log context and attempt number."""
        payload = row.payload
        if is_digest_payload(payload):
            context = {"sink": sink.name, "id": row.id, "digest": payload.get("name")}
            return lambda: send_digest(sink, row), context, row.attempts + 1
        context = {
            "sink": sink.name,
            "source": row.source,
            "id": row.id,
            "rule": payload.get("rule"),
            "account": payload.get("account_number"),
            "status": payload.get("status"),
        }
        return lambda: sink.send(row.notification()), context, row.attempts + 1

    async def _attempt(self, sink: Sink, row: OutboxRow) -> None:
        send, context, attempt = self._single(sink, row)
        await self._deliver_rows(sink, [row], send, context, attempt)

    async def _deliver_rows(
        self,
        sink: Sink,
        rows: Sequence[OutboxRow],
        send: Callable[[], Awaitable[None]],
        context: dict[str, Any],
        attempt: int,
    ) -> None:
        """Make one attempt at ``rows`` (one notification or a group) and record its outcome for
        each of them: delivered, retried after a backoff, or failed."""
        outcome = await self._outcome(sink, rows, send, context, attempt)
        await self._mark(sink, rows, outcome.state, error=outcome.error, delay=outcome.delay)

    async def _outcome(
        self,
        sink: Sink,
        rows: Sequence[OutboxRow],
        send: Callable[[], Awaitable[None]],
        context: dict[str, Any],
        attempt: int,
    ) -> _Outcome:
        """Make one attempt at ``rows`` and log it; what to record for each of them."""
        try:
            try:
                await send()
            finally:
                self._sent(sink)
        except SinkError as exc:
            if exc.retryable:
                delay = backoff(attempt, self.config, retry_after=exc.retry_after, rand=self.rand)
                log.warning(
                    "delivery_retry",
                    **context,
                    attempt=attempt,
                    error=str(exc),
                    retry_in=round(delay, 2),
                )
                return _Outcome("pending", str(exc), delay)
            log.error(
                "delivery_failed",
                **context,
                attempt=attempt,
                error=str(exc),
                http_status=exc.status,
            )
            return _Outcome("failed", str(exc))
        except Exception as exc:  # a sink bug must not kill the worker: retry like a 5xx
            log.error(
                "delivery_crashed", **context, attempt=attempt, error=repr(exc), exc_info=True
            )
            return _Outcome("pending", repr(exc), backoff(attempt, self.config, rand=self.rand))
        event = "digest_delivered" if "digest" in context else "notification_delivered"
        log.info(event, **context, attempt=attempt, grouped=len(rows) > 1)
        return _Outcome("delivered")

    async def _mark(
        self,
        sink: Sink,
        rows: Sequence[OutboxRow],
        state: str,
        *,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        now = self.clock()
        result = "retry" if state == "pending" else state
        for row in rows:
            await self.store.mark(
                row.seq,
                state,
                now=now,
                error=error,
                next_attempt_at=now + delay if delay is not None else None,
            )
            self._report(sink.name, result)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one attempt comes to: the row's next state, the error, the backoff (retries)."""

    state: str
    error: str | None = None
    delay: float | None = None


async def send_digest(sink: Sink, row: OutboxRow) -> None:
    """Send the digest of outbox ``row``; a sink that cannot carry one fails it for good."""
    if not isinstance(sink, DigestSink):
        raise SinkError(f"sink '{sink.name}' cannot carry a digest", retryable=False)
    await sink.send_digest(Digest.from_payload(row.payload))


def event_resolution(trigger: Notification) -> Notification:
    """The resolved notification that ends an event's ``trigger`` at a receiver that keeps it
    open: the same alert (fingerprint, hence PagerDuty's dedup_key) resolved, with an id of its
    own that is the same whenever it is made."""
    alert = replace(trigger.alert, status=Status.RESOLVED)
    return Notification(notification_id(alert), alert)


async def _wait(event: asyncio.Event, seconds: float, *, interruptible: bool = True) -> None:
    """Sleep up to ``seconds``, sooner when ``event`` is set (if ``interruptible``)."""
    if not interruptible:
        await asyncio.sleep(max(seconds, 0))
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0)):
            await event.wait()


async def release_held(
    store: Store, config: Config, now: datetime, control: ControlState = EMPTY
) -> int:
    """Queue (or summarise, or drop) what mute windows and silences held for alerts no longer
    muted nor silenced; return how many notifications were queued."""
    rows = await store.held()
    if not rows:
        return 0
    held = [Held(r.seq, r.sink, r.source, r.mute, r.notification()) for r in rows]

    def drop_resolved(rule: str) -> bool:
        found = config.rule(rule)
        return found is not None and found.mute_resolved == "drop"

    outcome = settle(
        held,
        still_muted=lambda row: (
            muting(config.mute, row.notification.alert.rule, now) is not None
            or control.silencing(row.notification.alert, now) is not None
        ),
        drop_resolved=drop_resolved,
    )
    if not outcome.settled:
        return 0
    configured = {s.name for s in config.sinks}
    release = [item for item in outcome.release if item[1] in configured]
    await store.release(release, outcome.settled, now.timestamp())
    log.info(
        "mute_released",
        queued=len(release),
        settled=len(outcome.settled),
        dropped_unknown_sinks=len(outcome.release) - len(release),
    )
    return len(release)


def idle_recheck(config: Config) -> float:
    """How often an idle worker looks at the outbox: with replicas sharing a PostgreSQL, at
    least once a ``lease``, so a row another replica claimed and never sent (it was killed) is
    sent soon after its claim expires."""
    if config.state.postgres:
        return min(IDLE_RECHECK, config.state.lease.total_seconds())
    return IDLE_RECHECK


def concurrency(config: Config) -> dict[str, int]:
    """Each sink's ``max_concurrency``."""
    return {s.name: s.max_concurrency for s in config.sinks}


def group_windows(config: Config) -> dict[str, float]:
    """Each grouping sink's ``group_window`` in seconds."""
    return {
        s.name: window.total_seconds()
        for s in config.sinks
        if (window := getattr(s, "group_window", None)) is not None
    }
