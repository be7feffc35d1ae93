"""Chat sinks paced to their documented rate limits: one message per ``min_interval`` to a
sink, and a storm to a grouping chat sink is a few long messages, not a 429 loop."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from store_helpers import notification, queue_notification

from monitor.config import DeliveryConfig
from monitor.delivery import PACED_BATCH_LIMIT, Delivery
from monitor.models import Notification
from monitor.sinks.base import ChatSink, PacedSink
from monitor.sinks.discord import DiscordSink
from monitor.sinks.msteams import MsTeamsSink
from monitor.sinks.slack import SlackSink
from monitor.sinks.telegram import TelegramSink
from monitor.store import Store


class PacedFake:
    """A paced batch sink: notes when each message arrived and how many it carried."""

    def __init__(self, interval: float) -> None:
        self.min_interval = interval
        self.messages: list[tuple[float, int]] = []

    @property
    def name(self) -> str:
        return "chat"

    async def send(self, notification: Notification) -> None:
        await self.send_batch([notification])

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        self.messages.append((time.monotonic(), len(notifications)))

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("sink", "seconds"),
    [(SlackSink, 1.0), (DiscordSink, 2.0), (TelegramSink, 3.0), (MsTeamsSink, 0.25)],
)
def test_chat_sinks_declare_their_documented_rate(sink: type[ChatSink], seconds: float) -> None:
    assert seconds == sink.MIN_INTERVAL


def test_the_fake_is_a_paced_sink() -> None:
    assert isinstance(PacedFake(0.1), PacedSink)


async def enqueue(store: Store, count: int) -> None:
    """Queued now (the deliveries here run on the real clock)."""
    for i in range(count):
        await queue_notification(
            store, "default", notification(f"n{i:05d}"), ["chat"], datetime.now(UTC)
        )


def make_delivery(store: Store, sink: PacedFake, window: float | None = None) -> Delivery:
    config = DeliveryConfig.model_validate({})
    windows = {"chat": window} if window else None
    # Several in flight would be allowed, but a paced sink takes one message at a time.
    return Delivery(store, {"chat": sink}, config, windows=windows, concurrency={"chat": 8})


async def test_a_paced_sink_gets_one_message_per_interval(store: Store) -> None:
    """Three notifications, no grouping: three messages, min_interval apart."""
    sink = PacedFake(0.1)
    await enqueue(store, 3)

    assert await make_delivery(store, sink).drain(time.time() + 30) == 0

    times = [at for at, _ in sink.messages]
    assert len(times) == 3
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(times))


async def test_a_storm_to_a_grouping_chat_sink_is_a_few_long_messages(store: Store) -> None:
    """1,200 notifications within the group window: three messages of at most
    PACED_BATCH_LIMIT, paced, every notification in exactly one of them."""
    sink = PacedFake(0.05)
    await enqueue(store, 1200)

    assert await make_delivery(store, sink, window=0.01).drain(time.time() + 30) == 0

    sizes = [n for _, n in sink.messages]
    assert sizes == [PACED_BATCH_LIMIT, PACED_BATCH_LIMIT, 1200 - 2 * PACED_BATCH_LIMIT]
