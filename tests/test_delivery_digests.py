"""A digest in the outbox is delivered like a notification: in its sink's order, retried,
never grouped with notifications; a sink that cannot carry one fails it for good."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from sinks_helpers import make_digest, make_notification
from store_helpers import queue_notification

from monitor.config import DeliveryConfig
from monitor.delivery import Delivery
from monitor.models import Notification
from monitor.sinks.base import Sink
from monitor.store import Store
from monitor.testing import RecordingBatchSink, RecordingSink


def delivery(store: Store, sinks: Mapping[str, Sink], windows: Mapping[str, float]) -> Delivery:
    config = DeliveryConfig.model_validate(
        {"max_age": "1h", "initial_backoff": "10ms", "max_backoff": "10ms"}
    )
    return Delivery(store, sinks, config, rand=lambda: 1.0, windows=windows)


async def queue(store: Store, nid: str, sink: str) -> None:
    alert = make_notification(fingerprint=f"fp-{nid}").alert
    await queue_notification(store, "default", Notification(nid, alert), [sink], datetime.now(UTC))


async def queue_digest(store: Store, sink: str) -> None:
    digest = make_digest()
    await store.queue_digest(digest.payload(), [sink], summary="s", now=time.time())


async def test_a_digest_between_notifications_is_its_own_message(store: Store) -> None:
    """With a group window, the notifications before the digest go out, then the digest
    alone, then the rest: the sink's order is kept and nothing is lost."""
    sink = RecordingBatchSink("chat")
    await queue(store, "n1", "chat")
    await queue_digest(store, "chat")
    await queue(store, "n2", "chat")
    await queue(store, "n3", "chat")
    pending = await delivery(store, {"chat": sink}, {"chat": 0.01}).drain(time.time() + 5)
    assert pending == 0
    assert sink.ids == ["n1", "n2", "n3"]
    assert sink.batches == [sink.sent[1:]]
    assert [d.id for d in sink.digests] == ["d-1"]
    assert sink.digests[0] == make_digest()


async def test_a_digest_is_retried_after_a_retryable_failure(store: Store) -> None:
    sink = RecordingSink("hook")
    sink.fail_next(1)
    await queue_digest(store, "hook")
    pending = await delivery(store, {"hook": sink}, {}).drain(time.time() + 5)
    assert pending == 0
    assert len(sink.digests) == 1
    [record] = await store.notifications(since=0)
    assert (record.state, record.attempt_count) == ("delivered", 2)


class AlertOnly:
    """A sink with no ``send_digest`` (an alert API)."""

    name = "am"

    async def send(self, notification: Notification) -> None:
        raise AssertionError("not reached")

    async def aclose(self) -> None:
        return None


async def test_a_sink_that_cannot_carry_a_digest_fails_it_for_good(store: Store) -> None:
    await queue_digest(store, "am")
    pending = await delivery(store, {"am": AlertOnly()}, {}).drain(time.time() + 5)
    assert pending == 0
    [record] = await store.notifications(since=0)
    assert record.state == "failed"
    assert record.last_error == "sink 'am' cannot carry a digest"


async def test_a_failing_sink_leaves_the_digest_to_the_others(store: Store) -> None:
    """One sink down for good, one retrying: each sink's copy has its own fate."""
    down, flaky, fine = RecordingSink("down"), RecordingSink("flaky"), RecordingSink("fine")
    down.fail_next(-1, retryable=False)
    flaky.fail_next(2)
    digest = make_digest()
    await store.queue_digest(digest.payload(), ["down", "flaky", "fine"], summary="s",
                             now=time.time())  # fmt: skip
    sinks = {"down": down, "flaky": flaky, "fine": fine}
    assert await delivery(store, sinks, {}).drain(time.time() + 5) == 0
    assert [len(s.digests) for s in sinks.values()] == [0, 1, 1]
    records = {r.sink: (r.state, r.attempt_count) for r in await store.notifications(since=0)}
    assert records == {"down": ("failed", 1), "flaky": ("delivered", 3), "fine": ("delivered", 1)}
