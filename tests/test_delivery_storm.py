"""Draining a storm: many notifications to one sink, several in flight at once (its
``max_concurrency``), those of one account in order, each outcome recorded before its slot
takes the next (a group commit), so a crash re-sends at most what was in flight.

A real store in tmp_path, a ManualTime clock and a hand-written sink that counts what is in
flight and fails the notifications it is told to.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from store_helpers import notification, queue_notification, sqlite_query

from monitor.config import DeliveryConfig
from monitor.delivery import Delivery
from monitor.errors import SinkError
from monitor.models import Notification
from monitor.store import Mark, Store
from monitor.testing import EPOCH, ManualTime

SOURCE = "default"


class CountingSink:
    """Sends take ``seconds`` (real time); counts the most in flight; fails listed ids once."""

    def __init__(self, name: str = "hook", *, seconds: float = 0.0) -> None:
        self._name = name
        self.seconds = seconds
        self.in_flight = 0
        self.most = 0
        self.sent: list[str] = []
        self.fail: dict[str, float | None] = {}  # id -> retry_after

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.seconds)
            if notification.id in self.fail:
                retry_after = self.fail.pop(notification.id)
                raise SinkError("told to fail", retryable=True, retry_after=retry_after)
            self.sent.append(notification.id)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def note(nid: str, account: str) -> Notification:
    n = notification(nid)
    return replace(n, alert=replace(n.alert, account_number=account))


async def enqueue(store: Store, clock: ManualTime, *notes: Notification) -> None:
    for n in notes:
        await queue_notification(store, SOURCE, n, ["hook"], clock.as_datetime())


def make_delivery(store: Store, sink: CountingSink, clock: ManualTime, limit: int) -> Delivery:
    config = DeliveryConfig.model_validate({"initial_backoff": "2s", "max_backoff": "5m"})
    return Delivery(
        store, {"hook": sink}, config, clock=clock, rand=lambda: 1.0, concurrency={"hook": limit}
    )


async def outbox(store: Store) -> list[tuple[Any, ...]]:
    return await sqlite_query(
        store, "SELECT id, state, attempts, next_attempt_at FROM outbox ORDER BY seq"
    )


async def test_up_to_max_concurrency_notifications_are_in_flight(store: Store) -> None:
    """Twelve accounts' notifications: four at a time, every one delivered once."""
    clock = ManualTime(EPOCH)
    sink = CountingSink(seconds=0.02)
    await enqueue(store, clock, *(note(f"n{i:02d}", f"A{i:02d}") for i in range(12)))

    assert await make_delivery(store, sink, clock, 4).drain(clock() + 60) == 0

    assert sink.most == 4
    assert sorted(sink.sent) == [f"n{i:02d}" for i in range(12)]
    assert {(state, attempts) for _, state, attempts, _ in await outbox(store)} == {
        ("delivered", 1)
    }


async def test_one_accounts_notifications_go_in_order_and_wait_for_its_retry(
    store: Store,
) -> None:
    """A's first notification fails: A's later ones wait (not even tried), B's go; once the
    retry is due, A's go in their order."""
    clock = ManualTime(EPOCH)
    sink = CountingSink()
    sink.fail["a1"] = None
    await enqueue(
        store, clock, note("a1", "A"), note("b1", "B"), note("a2", "A"), note("b2", "B"),
        note("a3", "A"),
    )  # fmt: skip
    delivery = make_delivery(store, sink, clock, 4)

    assert await delivery.drain(clock() + 1) == 3

    assert sink.sent == ["b1", "b2"]
    rows = {nid: (state, attempts) for nid, state, attempts, _ in await outbox(store)}
    assert rows == {
        "a1": ("pending", 1),
        "b1": ("delivered", 1),
        "a2": ("pending", 0),
        "b2": ("delivered", 1),
        "a3": ("pending", 0),
    }
    clock.advance(2.0)
    assert await delivery.drain(clock() + 1) == 0
    assert sink.sent == ["b1", "b2", "a1", "a2", "a3"]


async def test_the_retries_of_one_batch_are_due_together_at_the_latest_backoff(
    store: Store,
) -> None:
    """Two accounts fail, one with Retry-After 30 s: both are due again in 30 s, so neither
    account's later notification can overtake its retried one."""
    clock = ManualTime(EPOCH)
    sink = CountingSink()
    sink.fail.update({"a1": None, "b1": 30.0})
    await enqueue(store, clock, note("a1", "A"), note("b1", "B"), note("b2", "B"))

    await make_delivery(store, sink, clock, 4).drain(clock() + 1)

    due = {nid: at for nid, state, _, at in await outbox(store) if state == "pending"}
    assert due["a1"] == due["b1"] == clock() + 30.0
    assert sink.sent == []


async def test_mark_many_writes_every_outcome(store: Store) -> None:
    clock = ManualTime(EPOCH)
    await enqueue(store, clock, note("a1", "A"), note("b1", "B"), note("c1", "C"))
    rows = await store.next_batch("hook", limit=10, now=clock())
    now = clock()
    await store.mark_many(
        [
            Mark(rows[0].seq, "delivered"),
            Mark(rows[1].seq, "pending", error="503", next_attempt_at=now + 5),
            Mark(rows[2].seq, "failed", error="400"),
        ],
        now=now,
    )
    assert await outbox(store) == [
        ("a1", "delivered", 1, rows[0].next_attempt_at),
        ("b1", "pending", 1, now + 5),
        ("c1", "failed", 1, rows[2].next_attempt_at),
    ]


async def test_a_crash_in_a_storm_leaves_unrecorded_only_what_was_in_flight(
    store: Store,
) -> None:
    """The promise across a crash (README, High availability): only the notifications in
    flight may be sent twice. The process dies (its drain cancelled, as by kill -9) after 20
    of 40 deliveries: every notification the receiver has, but for at most ``max_concurrency``
    in flight, is recorded delivered, so another process does not send it again."""
    clock = ManualTime(EPOCH)
    sink = CountingSink(seconds=0.002)
    await enqueue(store, clock, *(note(f"n{i:02d}", f"A{i:02d}") for i in range(40)))
    crashed = asyncio.Event()
    deliver = sink.send

    async def send(notification: Notification) -> None:
        await deliver(notification)
        if len(sink.sent) >= 20:
            crashed.set()
            await asyncio.sleep(3600)  # still "in flight" when the process dies

    sink.send = send  # type: ignore[method-assign] # the receiver's side of the crash
    drain = asyncio.create_task(make_delivery(store, sink, clock, 4).drain(clock() + 60))
    await crashed.wait()
    drain.cancel()
    await asyncio.gather(drain, return_exceptions=True)

    recorded = {nid for nid, state, _, _ in await outbox(store) if state == "delivered"}
    unrecorded = set(sink.sent) - recorded
    assert len(sink.sent) >= 20
    assert len(unrecorded) <= 4, sorted(unrecorded)
