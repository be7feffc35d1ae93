"""The daemon's digest job (:func:`monitor.digests.queue_due`) with a fake clock and a real
SQLite store: due today and not queued yet is queued, once, whoever asks; a day that has
passed is not sent late; a manual digest has an id of its own."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest
from config_helpers import BASE_DIR, config

from monitor import digests
from monitor.config import Config, config_from_dict
from monitor.delivery import Delivery, release_held
from monitor.digest_schedule import digest_id
from monitor.errors import ConfigError
from monitor.mutes import muting
from monitor.silences import ControlState, Silence
from monitor.store import Store
from monitor.testing import RecordingSink

# Tuesday 1 December 2026, 21:15 UTC is 16:15 in New York.
DUE = datetime(2026, 12, 1, 21, 15, tzinfo=UTC)


def with_digests(*, mute: list[dict[str, object]] | None = None, **fields: object) -> Config:
    table = {"name": "close", "at": "16:15", "sinks": ["ops", "chat"], **fields}
    sections: dict[str, object] = {"digests": [table]}
    if mute is not None:
        sections["mute"] = mute
    return config_from_dict(config(**sections), base_dir=BASE_DIR)


async def test_due_is_queued_once_for_each_sink(store: Store) -> None:
    cfg = with_digests()
    assert await digests.queue_due(store, cfg, DUE - timedelta(seconds=1), done=set()) == []
    assert await digests.queue_due(store, cfg, DUE, done=set()) == ["close"]
    # A restart (a new ``done``) or a second replica: the same id, nothing more queued.
    assert await digests.queue_due(store, cfg, DUE + timedelta(minutes=5), done=set()) == []
    ident = digest_id("close", DUE.date())
    assert await store.digest_queued(ident) == {"ops", "chat"}
    assert await store.pending(None) == 2


async def test_a_digest_missed_while_down_is_caught_up_that_day_only(store: Store) -> None:
    cfg = with_digests()
    later_that_day = DUE + timedelta(hours=2)  # 18:15 in New York
    assert await digests.queue_due(store, cfg, later_that_day, done=set()) == ["close"]
    next_morning = DUE + timedelta(hours=12)  # 04:15 on Wednesday: Tuesday's has passed
    other = await store.pending(None)
    assert await digests.queue_due(store, cfg, next_morning, done=set()) == []
    assert await store.pending(None) == other


async def test_a_sink_added_by_a_reload_gets_todays_digest_too(store: Store) -> None:
    """The same process (the same ``done``) before and after the reload."""
    done: set[tuple[str, date, str]] = set()
    await digests.queue_due(store, with_digests(sinks=["ops"]), DUE, done=done)
    queued = await digests.queue_due(store, with_digests(), DUE, done=done)
    assert queued == ["close"]
    assert await store.digest_queued(digest_id("close", DUE.date())) == {"ops", "chat"}


async def test_a_manual_digest_does_not_stand_in_for_the_scheduled_one(store: Store) -> None:
    cfg = with_digests()
    manual = await digests.queue_now(store, cfg, "close", DUE - timedelta(hours=1))
    assert manual.id != digest_id("close", DUE.date())
    assert await digests.queue_due(store, cfg, DUE, done=set()) == ["close"]
    assert await store.pending(None) == 4


async def test_an_unknown_name_lists_the_digests(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"no digest named 'x' in \[\[digests\]\] \(close\)"):
        await digests.render_digest(store, with_digests(), "x", DUE)


async def test_a_delivered_digest_pruned_from_the_outbox_is_not_sent_again(store: Store) -> None:
    """``[delivery] keep_finished = "1h"`` drops the delivered row from the outbox; a restart
    later that day finds the digest in the notification record and queues nothing."""
    cfg = with_digests()
    assert await digests.queue_due(store, cfg, DUE, done=set()) == ["close"]
    for sink in ("ops", "chat"):
        row = await store.next_pending(sink)
        assert row is not None
        await store.mark(row.seq, "delivered", now=DUE.timestamp())
    later = DUE + timedelta(hours=2)
    await store.expire(older_than=0, now=later.timestamp(), keep_finished=3600)
    assert await store.next_pending("ops") is None
    assert await store.deliveries(limit=10) == []  # the outbox rows are gone
    assert await digests.queue_due(store, cfg, later, done=set()) == []
    assert await store.pending(None) == 0


async def test_a_digest_is_held_by_no_mute_window_nor_silence(store: Store) -> None:
    """Mute windows and silences quiet alerts; the digest (its all clear too) goes at its time,
    and releasing what they held neither touches nor repeats it."""
    cfg = with_digests(mute=[{"name": "always", "timezone": "UTC"}])
    assert muting(cfg.mute, "close", DUE) is not None  # a window open now, on every rule
    forever = Silence("s-all", starts_at=0, ends_at=DUE.timestamp() + 86400, account="*")
    await store.add_silence(forever)
    assert await digests.queue_due(store, cfg, DUE, done=set()) == ["close"]
    assert await store.held() == []
    control = ControlState(silences=(forever,))
    assert await release_held(store, cfg, DUE, control) == 0
    sinks = {"ops": RecordingSink("ops"), "chat": RecordingSink("chat")}
    delivery = Delivery(store, sinks, cfg.delivery, rand=lambda: 1.0)
    assert await delivery.drain(time.time() + 5) == 0
    assert [len(s.digests) for s in sinks.values()] == [1, 1]
    assert [s.sent for s in sinks.values()] == [[], []]
