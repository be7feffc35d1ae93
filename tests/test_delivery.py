"""Draining the outbox: order, retries with backoff, failures, expiry, shutdown.

A real store in tmp_path, RecordingSinks and a ManualTime clock; ``rand`` is fixed so that every
backoff is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from store_helpers import notification, queue_notification, sqlite_query
from structlog.testing import capture_logs

from monitor.config import DeliveryConfig
from monitor.delivery import Delivery, backoff
from monitor.sinks.base import Sink
from monitor.store import Store
from monitor.testing import EPOCH, ManualTime, RecordingSink

SOURCE = "default"
MAX_AGE = 3600.0


def delivery_config(**changes: Any) -> DeliveryConfig:
    """2s initial backoff, 5 minutes cap, one hour max age, unless ``changes`` say otherwise."""
    values: dict[str, Any] = {"max_age": "1h", "initial_backoff": "2s", "max_backoff": "5m"}
    return DeliveryConfig.model_validate(values | changes)


@pytest.fixture
def clock() -> ManualTime:
    return ManualTime(EPOCH)


def make_delivery(
    store: Store, sinks: Mapping[str, Sink], clock: ManualTime, **changes: Any
) -> Delivery:
    return Delivery(store, sinks, delivery_config(**changes), clock=clock, rand=lambda: 1.0)


async def enqueue(store: Store, clock: ManualTime, *ids: str, sinks: tuple[str, ...]) -> None:
    for nid in ids:
        await queue_notification(store, SOURCE, notification(nid), sinks, clock.as_datetime())


async def outbox(store: Store) -> list[tuple[Any, ...]]:
    """``(id, sink, state, attempts, next_attempt_at, last_error)`` of every row, oldest first."""
    return await sqlite_query(
        store,
        "SELECT id, sink, state, attempts, next_attempt_at, last_error FROM outbox ORDER BY seq",
    )


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("attempts", "rand", "retry_after", "expected"),
    [
        pytest.param(1, 1.0, None, 2.0, id="first-retry-is-the-initial-backoff"),
        pytest.param(2, 1.0, None, 4.0, id="doubles"),
        pytest.param(3, 1.0, None, 8.0, id="doubles-again"),
        pytest.param(8, 1.0, None, 256.0, id="just-under-the-cap"),
        pytest.param(9, 1.0, None, 300.0, id="capped-at-max-backoff"),
        pytest.param(10_000, 1.0, None, 300.0, id="no-overflow-after-many-attempts"),
        pytest.param(1, 0.0, None, 1.0, id="jitter-low-end-is-half"),
        pytest.param(1, 0.5, None, 1.5, id="jitter-middle"),
        pytest.param(9, 0.0, None, 150.0, id="jitter-applies-to-the-cap"),
        pytest.param(1, 0.0, 30.0, 30.0, id="retry-after-is-a-floor"),
        pytest.param(9, 1.0, 10.0, 300.0, id="retry-after-never-shortens"),
        pytest.param(1, 1.0, 0.0, 2.0, id="retry-after-zero"),
        pytest.param(1, 1.0, 3600.0, 3600.0, id="retry-after-beyond-the-cap"),
    ],
)
def test_backoff_table(
    attempts: int, rand: float, retry_after: float | None, expected: float
) -> None:
    """Doubling from the initial backoff, capped, jittered in [50%, 100%], never below
    Retry-After."""
    config = delivery_config()
    assert backoff(attempts, config, retry_after=retry_after, rand=lambda: rand) == expected


@pytest.mark.parametrize("attempts", [1, 2, 5, 9, 40])
def test_backoff_jitter_stays_within_bounds(attempts: int) -> None:
    """With the real random source the delay stays between half and all of the capped backoff."""
    config = delivery_config()
    capped = min(2.0 * 2 ** (attempts - 1), 300.0)
    for _ in range(200):
        assert capped / 2 <= backoff(attempts, config) <= capped


# --------------------------------------------------------------------------- once mode


async def test_delivers_in_fifo_order_per_sink(store: Store, clock: ManualTime) -> None:
    """Each sink receives its notifications in the order they were queued."""
    a, b = RecordingSink("a"), RecordingSink("b")
    await enqueue(store, clock, "n1", "n2", sinks=("a", "b"))
    await enqueue(store, clock, "n3", sinks=("b",))
    await enqueue(store, clock, "n4", sinks=("a", "b"))
    delivery = make_delivery(store, {"a": a, "b": b}, clock)

    assert await delivery.drain(clock() + 60) == 0

    assert a.ids == ["n1", "n2", "n4"]
    assert b.ids == ["n1", "n2", "n3", "n4"]
    assert {row[2] for row in await outbox(store)} == {"delivered"}


async def test_a_retryable_error_leaves_the_row_pending_with_backoff(
    store: Store, clock: ManualTime
) -> None:
    """A retryable SinkError counts an attempt, schedules the next one after the backoff, and
    logs a warning; a later drain delivers it."""
    sink = RecordingSink("a")
    sink.fail_next(retryable=True, status=503)
    await enqueue(store, clock, "n1", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)
    now = clock()

    with capture_logs() as logs:
        assert await delivery.drain(now + 1) == 1

    assert await outbox(store) == [("n1", "a", "pending", 1, now + 2.0, "sink 'a' told to fail")]
    [retry] = events(logs, "delivery_retry")
    assert retry["log_level"] == "warning"
    assert (retry["sink"], retry["id"], retry["attempt"], retry["retry_in"]) == ("a", "n1", 1, 2.0)

    clock.advance(2)
    assert await delivery.drain(clock() + 1) == 0
    assert sink.ids == ["n1"]
    assert len(sink.attempts) == 2


async def test_retry_after_from_the_sink_delays_the_next_attempt(
    store: Store, clock: ManualTime
) -> None:
    """A receiver's Retry-After longer than the backoff sets the next attempt."""
    sink = RecordingSink("a")
    sink.fail_next(retryable=True, status=429, retry_after=120)
    await enqueue(store, clock, "n1", sinks=("a",))
    now = clock()

    assert await make_delivery(store, {"a": sink}, clock).drain(now + 60) == 1

    [row] = await outbox(store)
    assert row[4] == now + 120


async def test_backoff_grows_with_each_failed_attempt(store: Store, clock: ManualTime) -> None:
    """The n-th consecutive failure of a row waits twice as long as the one before."""
    sink = RecordingSink("a")
    sink.fail_next(-1)
    await enqueue(store, clock, "n1", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)
    waits = []
    for _ in range(4):
        now = clock()
        await delivery.drain(now + 1)
        [row] = await outbox(store)
        waits.append(row[4] - now)
        clock.advance(row[4] - now)
    assert waits == [2.0, 4.0, 8.0, 16.0]


async def test_a_permanent_error_fails_the_row_without_retrying(
    store: Store, clock: ManualTime
) -> None:
    """A non-retryable SinkError marks the row failed, logs an error with the status, and the
    next notification of the sink goes out."""
    sink = RecordingSink("a")
    sink.fail_next(retryable=False, status=400)
    await enqueue(store, clock, "n1", "n2", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)

    with capture_logs() as logs:
        assert await delivery.drain(clock() + 60) == 0
    clock.advance(3600)
    assert await delivery.drain(clock() + 60) == 0

    assert [n.id for n in sink.attempts] == ["n1", "n2"]
    assert [(row[0], row[2], row[3]) for row in await outbox(store)] == [
        ("n1", "failed", 1),
        ("n2", "delivered", 1),
    ]
    [failed] = events(logs, "delivery_failed")
    assert (failed["log_level"], failed["id"], failed["http_status"]) == ("error", "n1", 400)


async def test_an_unexpected_exception_in_a_sink_is_retried(
    store: Store, clock: ManualTime
) -> None:
    """A sink bug (any exception) is logged and retried like a 5xx; the worker survives."""
    sink = RecordingSink("a")
    sink.fail_next(error=RuntimeError("bug in the sink"))
    await enqueue(store, clock, "n1", "n2", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)
    now = clock()

    with capture_logs() as logs:
        assert await delivery.drain(now + 1) == 2

    assert (await outbox(store))[0] == (
        "n1",
        "a",
        "pending",
        1,
        now + 2.0,
        "RuntimeError('bug in the sink')",
    )
    [crashed] = events(logs, "delivery_crashed")
    assert crashed["log_level"] == "error"
    clock.advance(2)
    assert await delivery.drain(clock() + 1) == 0
    assert sink.ids == ["n1", "n2"]


async def test_rows_older_than_max_age_expire_with_an_error(
    store: Store, clock: ManualTime
) -> None:
    """A notification still pending after ``max_age`` is expired, never sent, and logged."""
    sink = RecordingSink("a")
    await enqueue(store, clock, "n1", sinks=("a",))
    clock.advance(MAX_AGE + 1)
    await enqueue(store, clock, "n2", sinks=("a",))

    with capture_logs() as logs:
        assert await make_delivery(store, {"a": sink}, clock).drain(clock() + 60) == 0

    assert sink.ids == ["n2"]
    assert [(row[0], row[2]) for row in await outbox(store)] == [
        ("n1", "expired"),
        ("n2", "delivered"),
    ]
    [expired] = events(logs, "notification_expired")
    assert expired["log_level"] == "error"
    assert (expired["id"], expired["sink"], expired["max_age"]) == ("n1", "a", "1:00:00")


async def test_a_failing_sink_does_not_delay_another(store: Store, clock: ManualTime) -> None:
    """One sink failing on every attempt keeps its rows pending; the other gets all of its own."""
    bad, good = RecordingSink("bad"), RecordingSink("good")
    bad.fail_next(-1)
    await enqueue(store, clock, "n1", "n2", "n3", sinks=("bad", "good"))

    pending = await make_delivery(store, {"bad": bad, "good": good}, clock).drain(clock() + 1)

    assert pending == 3
    assert good.ids == ["n1", "n2", "n3"]
    assert [n.id for n in bad.attempts] == ["n1"]
    assert await store.pending(["bad"]) == 3


async def test_drain_counts_only_the_configured_sinks(store: Store, clock: ManualTime) -> None:
    """Rows left for a sink that is no longer configured are not counted (nor sent)."""
    sink = RecordingSink("a")
    await enqueue(store, clock, "n1", sinks=("a", "gone"))
    assert await make_delivery(store, {"a": sink}, clock).drain(clock() + 60) == 0
    assert await store.pending() == 1


async def test_drain_starts_no_attempt_after_its_deadline(store: Store, clock: ManualTime) -> None:
    """Once the deadline has passed, drain returns what is pending without sending more."""
    sink = RecordingSink("a")
    await enqueue(store, clock, "n1", "n2", sinks=("a",))
    assert await make_delivery(store, {"a": sink}, clock).drain(clock() - 1) == 2
    assert sink.attempts == []


async def test_drain_retries_until_the_deadline_then_returns(store: Store) -> None:
    """With the real clock, a sink that keeps failing is retried until the deadline, then
    drain returns the pending count promptly."""
    sink = RecordingSink("a")
    sink.fail_next(-1)
    await queue_notification(store, SOURCE, notification("n1"), ["a"], datetime.now(tz=UTC))
    config = delivery_config(initial_backoff="50ms", max_backoff="50ms")
    delivery = Delivery(store, {"a": sink}, config, rand=lambda: 1.0)
    started = time.monotonic()

    pending = await delivery.drain(time.time() + 0.5)

    elapsed = time.monotonic() - started
    assert pending == 1
    assert 0.4 <= elapsed < 1.5
    assert 4 <= len(sink.attempts) <= 11


# --------------------------------------------------------------------------- daemon mode


async def test_start_delivers_what_is_queued_and_wake_what_comes_later(
    store: Store, clock: ManualTime
) -> None:
    """Workers deliver the backlog at start, and a wake() after queueing delivers at once."""
    sink = RecordingSink("a")
    await enqueue(store, clock, "n1", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)
    await delivery.start()
    try:
        await sink.wait_for(sent=1)
        await enqueue(store, clock, "n2", sinks=("a",))
        delivery.wake()
        await sink.wait_for(sent=2, timeout=2)
    finally:
        await delivery.stop(grace=1)
    assert sink.ids == ["n1", "n2"]


async def test_start_makes_waiting_retries_due_at_once(store: Store, clock: ManualTime) -> None:
    """A row waiting for its next attempt is retried right away after a restart."""
    sink = RecordingSink("a")
    await enqueue(store, clock, "n1", sinks=("a",))
    row = await store.next_pending("a")
    assert row is not None
    await store.mark(row.seq, "pending", now=clock(), next_attempt_at=clock() + 3000)
    delivery = make_delivery(store, {"a": sink}, clock)
    await delivery.start()
    try:
        await sink.wait_for(sent=1, timeout=2)
    finally:
        await delivery.stop(grace=1)


async def test_a_replica_s_start_keeps_the_shared_backoff(store: Store, clock: ManualTime) -> None:
    """With replicas sharing the outbox, one replica's start is no reason to retry a receiver
    every replica is backing off from: the row stays due when it was."""
    sink = RecordingSink("a")
    await enqueue(store, clock, "n1", sinks=("a",))
    row = await store.next_pending("a")
    assert row is not None
    await store.mark(row.seq, "pending", now=clock(), next_attempt_at=clock() + 3000)
    delivery = Delivery(
        store, {"a": sink}, delivery_config(), clock=clock, rand=lambda: 1.0, retry_at_start=False
    )
    await delivery.start()
    try:
        await asyncio.sleep(0.3)
        assert sink.ids == []
        [(*_, due, _)] = await outbox(store)
        assert due == clock() + 3000
    finally:
        await delivery.stop(grace=1)


async def test_stop_leaves_undelivered_rows_pending(store: Store, clock: ManualTime) -> None:
    """stop(grace) cancels a send still in flight after the grace period; nothing is lost:
    every undelivered row stays pending, and the next start delivers them in order."""
    sink = RecordingSink("a")
    sink.block()
    await enqueue(store, clock, "n1", "n2", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)
    await delivery.start()
    await sink.wait_for(attempts=1)
    started = time.monotonic()

    await delivery.stop(grace=0.1)

    assert time.monotonic() - started < 1
    assert [(row[0], row[2], row[3]) for row in await outbox(store)] == [
        ("n1", "pending", 0),
        ("n2", "pending", 0),
    ]
    assert sink.sent == []

    sink.unblock()
    again = make_delivery(store, {"a": sink}, clock)
    await again.start()
    try:
        await sink.wait_for(sent=2)
    finally:
        await again.stop(grace=1)
    assert sink.ids == ["n1", "n2"]


async def test_stop_does_not_wait_for_a_retry_backoff(store: Store, clock: ManualTime) -> None:
    """A worker sleeping until its next retry stops at once; the row stays pending."""
    sink = RecordingSink("a")
    sink.fail_next(-1)
    await enqueue(store, clock, "n1", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock, initial_backoff="1h", max_backoff="1h")
    await delivery.start()
    await sink.wait_for(attempts=1)
    started = time.monotonic()
    await delivery.stop(grace=5)
    assert time.monotonic() - started < 1
    assert await store.pending() == 1


async def test_a_failing_sink_does_not_delay_another_while_running(
    store: Store, clock: ManualTime
) -> None:
    """In daemon mode too, a sink stuck in its retries leaves the other sink's worker alone."""
    bad, good = RecordingSink("bad"), RecordingSink("good")
    bad.block()
    await enqueue(store, clock, "n1", "n2", "n3", sinks=("bad", "good"))
    delivery = make_delivery(store, {"bad": bad, "good": good}, clock)
    await delivery.start()
    try:
        await good.wait_for(sent=3)
    finally:
        await delivery.stop(grace=0.1)
    assert [n.id for n in bad.attempts] == ["n1"]
    assert await store.pending(["bad"]) == 3


async def test_a_row_that_grows_too_old_while_waiting_expires(
    store: Store, clock: ManualTime
) -> None:
    """A running worker expires a row whose retries outlived ``max_age``."""
    sink = RecordingSink("a")
    sink.fail_next(-1)
    await enqueue(store, clock, "n1", sinks=("a",))
    delivery = make_delivery(store, {"a": sink}, clock)
    with capture_logs() as logs:
        await delivery.start()
        try:
            await sink.wait_for(attempts=1)
            clock.advance(MAX_AGE + 1)
            delivery.wake()
            async with asyncio.timeout(2):
                while await store.pending():  # noqa: ASYNC110 - the store has no event to wait on
                    await asyncio.sleep(0.01)
        finally:
            await delivery.stop(grace=1)
    assert [(row[0], row[2]) for row in await outbox(store)] == [("n1", "expired")]
    assert [e["id"] for e in events(logs, "notification_expired")] == ["n1"]


async def test_start_warns_about_rows_for_unknown_sinks(store: Store, clock: ManualTime) -> None:
    """Pending rows for a sink no longer in the config are reported once at start."""
    await enqueue(store, clock, "n1", sinks=("gone",))
    delivery = make_delivery(store, {"a": RecordingSink("a")}, clock)
    with capture_logs() as logs:
        await delivery.start()
        await delivery.stop(grace=1)
    [unknown] = events(logs, "outbox_sink_unknown")
    assert (unknown["log_level"], unknown["sink"]) == ("warning", "gone")
    assert await store.pending() == 1


async def test_a_store_error_does_not_end_a_worker(store: Store, clock: ManualTime) -> None:
    """A worker that cannot read the outbox logs the StoreError and tries again later (or
    when woken) instead of dying silently."""
    delivery = make_delivery(store, {"a": RecordingSink("a")}, clock)
    await delivery.start()
    await store.close()
    with capture_logs() as logs:
        for count in (1, 2):
            delivery.wake()
            async with asyncio.timeout(2):
                while len(events(logs, "delivery_store_failed")) < count:  # noqa: ASYNC110 - waits for a log entry
                    await asyncio.sleep(0.01)
        started = time.monotonic()
        await delivery.stop(grace=1)
    assert time.monotonic() - started < 0.5
    failed = events(logs, "delivery_store_failed")
    assert {(e["log_level"], e["sink"]) for e in failed} == {("error", "a")}
    assert "closed" in failed[0]["error"]


async def test_stop_without_start_is_harmless(store: Store, clock: ManualTime) -> None:
    """Stopping a delivery that never started returns at once."""
    await make_delivery(store, {"a": RecordingSink("a")}, clock).stop(grace=1)


def test_recording_sink_is_a_sink() -> None:
    """The test fake satisfies the Sink protocol."""
    assert isinstance(RecordingSink("a"), Sink)
    assert timedelta(seconds=MAX_AGE) == delivery_config().max_age
