"""Grouped delivery (``group_window``) and sinks that restore what fires at start-up.

A real store in tmp_path, a :class:`RecordingBatchSink` (a BatchSink) or a plain
:class:`RecordingSink`; ``rand`` is fixed so every backoff is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sinks_helpers import make_notification
from store_helpers import commit_poll, queue_notification, sqlite_query

from monitor.config import DeliveryConfig, config_from_dict
from monitor.cycle import PollRecord
from monitor.delivery import Delivery, group_windows
from monitor.models import ActiveAlert, Notification, Status
from monitor.rules import SourceHealth
from monitor.sinks.base import BatchSink, Sink
from monitor.store import Store
from monitor.testing import EPOCH, ManualTime, RecordingBatchSink, RecordingSink, RestoringSink

SOURCE = "default"
WINDOW = 0.3


def note(nid: str, fp: str | None = None, status: Status = Status.FIRING) -> Notification:
    alert = make_notification(fingerprint=fp or f"fp-{nid}", status=status).alert
    return Notification(nid, alert)


def make_delivery(
    store: Store,
    sinks: Mapping[str, Sink],
    *,
    windows: Mapping[str, float],
    clock: ManualTime | None = None,
) -> Delivery:
    config = DeliveryConfig.model_validate(
        {"max_age": "1h", "initial_backoff": "2s", "max_backoff": "5m"}
    )
    return Delivery(
        store,
        sinks,
        config,
        clock=clock or time.time,
        rand=lambda: 1.0,
        windows=windows,
    )


async def enqueue(store: Store, *ids: str, sink: str = "chat", at: datetime | None = None) -> None:
    for nid in ids:
        await queue_notification(store, SOURCE, note(nid), [sink], at or datetime.now(tz=UTC))


async def outbox(store: Store) -> list[tuple[str, str, int]]:
    """``(id, state, attempts)`` of every row, oldest first."""
    return await sqlite_query(store, "SELECT id, state, attempts FROM outbox ORDER BY seq")


def test_the_recording_sinks_are_what_they_fake() -> None:
    """The batch fake is a BatchSink; the plain one and the restoring one are not."""
    assert isinstance(RecordingBatchSink("chat"), BatchSink)
    assert not isinstance(RecordingSink("a"), BatchSink)
    assert isinstance(RestoringSink("am"), Sink)
    assert not isinstance(RestoringSink("am"), BatchSink)


# --------------------------------------------------------------------------- grouping


async def test_notifications_queued_within_the_window_go_out_as_one_batch(store: Store) -> None:
    """Five notifications queued together reach a grouping sink in one ``send_batch`` call,
    in the order they were queued; all five are delivered."""
    sink = RecordingBatchSink("chat")
    delivery = make_delivery(store, {"chat": sink}, windows={"chat": WINDOW})
    await enqueue(store, "n1")
    await delivery.start()
    try:
        await asyncio.sleep(0.05)  # the worker waits for the rest of the group
        await enqueue(store, "n2", "n3", "n4", "n5")
        delivery.wake()
        await sink.wait_for(sent=5, timeout=2)
    finally:
        await delivery.stop(grace=1)

    assert [[n.id for n in batch] for batch in sink.batches] == [["n1", "n2", "n3", "n4", "n5"]]
    assert await outbox(store) == [(f"n{i}", "delivered", 1) for i in range(1, 6)]


async def test_drain_waits_for_the_window_when_the_deadline_allows(store: Store) -> None:
    """In ``once`` mode a grouping sink also waits out its window before sending."""
    sink = RecordingBatchSink("chat")
    await enqueue(store, "n1", "n2", "n3", "n4", "n5")
    started = time.monotonic()

    pending = await make_delivery(store, {"chat": sink}, windows={"chat": WINDOW}).drain(
        time.time() + 5
    )

    assert pending == 0
    assert time.monotonic() - started >= WINDOW - 0.05
    assert [len(batch) for batch in sink.batches] == [5]


async def test_drain_with_a_deadline_before_the_window_still_delivers(store: Store) -> None:
    """A deadline sooner than the window: no waiting, what is queued goes out at once."""
    clock = ManualTime(EPOCH)
    sink = RecordingBatchSink("chat")
    await enqueue(store, "n1", "n2", "n3", at=clock.as_datetime())
    delivery = make_delivery(store, {"chat": sink}, windows={"chat": 600.0}, clock=clock)
    started = time.monotonic()

    assert await delivery.drain(clock() + 1) == 0

    assert time.monotonic() - started < 1
    assert [[n.id for n in batch] for batch in sink.batches] == [["n1", "n2", "n3"]]


async def test_a_sink_that_cannot_group_gets_them_one_by_one(store: Store) -> None:
    """A window on a sink without ``send_batch`` changes nothing: one ``send`` each."""
    sink = RecordingSink("chat")
    await enqueue(store, "n1", "n2", "n3")
    assert (
        await make_delivery(store, {"chat": sink}, windows={"chat": WINDOW}).drain(time.time() + 5)
        == 0
    )
    assert sink.ids == ["n1", "n2", "n3"]


async def test_without_a_window_a_batch_sink_gets_them_one_by_one(store: Store) -> None:
    """No ``group_window`` (or 0): a grouping sink is sent one notification per call."""
    sink = RecordingBatchSink("chat")
    await enqueue(store, "n1", "n2")
    assert (
        await make_delivery(store, {"chat": sink}, windows={"chat": 0.0}).drain(time.time() + 5)
        == 0
    )
    assert sink.batches == []
    assert sink.ids == ["n1", "n2"]


async def test_a_single_notification_goes_through_send(store: Store) -> None:
    """A group of one is an ordinary message, not a batch."""
    sink = RecordingBatchSink("chat")
    clock = ManualTime(EPOCH)
    await enqueue(store, "n1", at=EPOCH - timedelta(seconds=10))  # its window is over
    delivery = make_delivery(store, {"chat": sink}, windows={"chat": WINDOW}, clock=clock)
    assert await delivery.drain(clock() + 5) == 0
    assert sink.batches == []
    assert sink.ids == ["n1"]


async def test_a_failed_batch_is_retried_as_a_whole(store: Store) -> None:
    """A retryable failure leaves every row of the batch pending with one more attempt and
    the same next attempt; after the backoff they go out together."""
    clock = ManualTime(EPOCH)
    sink = RecordingBatchSink("chat")
    sink.fail_next(retryable=True, status=503)
    await enqueue(store, "n1", "n2", "n3", at=clock.as_datetime())
    delivery = make_delivery(store, {"chat": sink}, windows={"chat": 0.05}, clock=clock)

    assert await delivery.drain(clock() + 1) == 3

    rows = await sqlite_query(
        store, "SELECT state, attempts, next_attempt_at, last_error FROM outbox"
    )
    assert rows == [("pending", 1, clock() + 2.0, "sink 'chat' told to fail")] * 3
    assert sink.sent == []

    clock.advance(2)
    assert await delivery.drain(clock() + 1) == 0
    assert [[n.id for n in batch] for batch in sink.batches] == [["n1", "n2", "n3"]] * 2
    assert await outbox(store) == [(f"n{i}", "delivered", 2) for i in (1, 2, 3)]


async def test_a_permanently_failed_batch_fails_every_row(store: Store) -> None:
    clock = ManualTime(EPOCH)
    sink = RecordingBatchSink("chat")
    sink.fail_next(retryable=False, status=400)
    await enqueue(store, "n1", "n2", at=clock.as_datetime())
    delivery = make_delivery(store, {"chat": sink}, windows={"chat": 0.05}, clock=clock)
    assert await delivery.drain(clock() + 1) == 0
    assert await outbox(store) == [("n1", "failed", 1), ("n2", "failed", 1)]


async def test_a_crashing_batch_sink_is_retried(store: Store) -> None:
    """Any other exception from ``send_batch`` is retried like a 5xx, never lost."""
    clock = ManualTime(EPOCH)
    sink = RecordingBatchSink("chat")
    sink.fail_next(error=RuntimeError("bug"))
    await enqueue(store, "n1", "n2", at=clock.as_datetime())
    delivery = make_delivery(store, {"chat": sink}, windows={"chat": 0.05}, clock=clock)
    assert await delivery.drain(clock() + 1) == 2
    assert await outbox(store) == [("n1", "pending", 1), ("n2", "pending", 1)]


def test_group_windows_reads_each_grouping_sink(tmp_path: Path) -> None:
    """``group_window`` in seconds for the sinks that have the key; Delivery ignores 0."""
    sinks: list[dict[str, Any]] = [
        {"type": "log", "name": "log"},
        {"type": "slack", "name": "chat", "url": "https://hooks.invalid/x", "group_window": "30s"},
        {"type": "slack", "name": "quiet", "url": "https://hooks.invalid/y"},
    ]
    config = config_from_dict(
        {"api": {"url": "http://127.0.0.1:9/", "token": "t"}, "sinks": sinks},
        base_dir=tmp_path,
    )
    assert group_windows(config) == {"chat": 30.0, "quiet": 0.0}


# --------------------------------------------------------------------------- restore


async def test_start_restores_the_sinks_that_ask_with_what_still_fires(store: Store) -> None:
    """``Delivery.start`` hands a sink with ``restore`` the last delivered firing notification
    of each alert still firing; a sink without it is left alone."""
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(EPOCH, ok=True),
        health=SourceHealth(),
        active={("low-cash", "A1"): ActiveAlert("low-cash", "A1", "fp-1", EPOCH)},
    )
    for nid, sink in (("first", "am"), ("repeat", "am"), ("other", "plain")):
        await queue_notification(store, SOURCE, note(nid, "fp-1"), [sink], EPOCH)
    for (seq,) in await sqlite_query(store, "SELECT seq FROM outbox"):
        await store.mark(seq, "delivered", now=EPOCH.timestamp())
    am, plain = RestoringSink("am"), RecordingSink("plain")
    delivery = make_delivery(store, {"am": am, "plain": plain}, windows={})

    await delivery.start()
    await delivery.stop(grace=1)

    assert [[n.id for n in batch] for batch in am.restored] == [["repeat"]]
    assert am.restored[0][0] == note("repeat", "fp-1")


async def test_start_restores_nothing_when_nothing_fires(store: Store) -> None:
    am = RestoringSink("am")
    await queue_notification(store, SOURCE, note("n1"), ["am"], EPOCH)
    delivery = make_delivery(store, {"am": am}, windows={})
    await delivery.start()
    await delivery.stop(grace=1)
    assert am.restored == []
