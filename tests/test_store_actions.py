"""The Store's silences, acknowledgements and notification record, on every ``backend``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sinks_helpers import make_notification
from store_helpers import Backend, commit_poll, queue_notification

from monitor.cycle import PollRecord
from monitor.models import ActiveAlert, Notification, Status
from monitor.rules import SourceHealth
from monitor.silences import Ack, Silence
from monitor.store import AttemptRow, Store, open_store

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0.timestamp()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


def note(nid: str, fp: str = "fp-1", status: Status = Status.FIRING) -> Notification:
    return replace(
        make_notification(fingerprint=fp, status=status, observed_at=T0, started_at=T0), id=nid
    )


async def test_silences_are_kept_listed_and_expired(store: Store) -> None:
    """A new silence is listed while it has not ended; expiring it ends it now and bumps the
    control version (what the daemon watches); ``include_ended`` still lists it."""
    before = await store.control_version()
    s = Silence("abc", NOW, NOW + 3600, rule="low-cash", labels={"team": "risk"}, author="al")
    await store.add_silence(s)
    assert await store.control_version() > before
    assert await store.silences(now=NOW + 1) == [s]

    version = await store.control_version()
    ended = await store.expire_silence("abc", now=NOW + 60)
    assert ended is not None
    assert (ended.expired_at, ended.ends_at) == (NOW + 60, NOW + 60)
    assert not ended.active(NOW + 61)
    assert await store.control_version() > version
    assert await store.silences(now=NOW + 61) == []
    assert await store.silences(include_ended=True, now=NOW + 61) == [ended]
    assert await store.expire_silence("nope", now=NOW) is None


async def test_an_ack_is_kept_once_and_queues_what_it_is_given(store: Store) -> None:
    firing = note("n1")
    await queue_notification(store, SOURCE, firing, ["pd", "chat"], T0)
    ack = Ack("fp-1", "low-cash", "A1", SOURCE, NOW + 5, "alice", "on it", "n1")
    event = replace(firing, id="n1-ack")
    assert await store.add_ack(ack, [(event, "pd", SOURCE)])
    assert not await store.add_ack(replace(ack, author="bob"), [])
    assert await store.acks() == [ack]
    records = await store.notifications(since=0)
    assert [(r.id, r.sink) for r in records] == [("n1-ack", "pd"), ("n1", "chat"), ("n1", "pd")]
    assert {r.ack for r in records} == {ack}  # every notification of the episode says so


async def test_an_alert_is_found_by_notification_id_fingerprint_or_rule_and_account(
    store: Store,
) -> None:
    alert = ActiveAlert("low-cash", "12345678@vision", "fp-1", T0)
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True, account_count=1),
        health=SourceHealth(),
        active={("low-cash", "12345678@vision"): alert},
        outbox=[(note("n1"), ["pd"])],
    )
    by_id = await store.find_alert("n1")
    assert by_id is not None
    assert (by_id.fingerprint, by_id.firing, by_id.notification_id) == ("fp-1", True, "n1")
    by_fp = await store.find_alert("fp-1")
    assert by_fp is not None
    assert (by_fp.rule, by_fp.notification_id) == ("low-cash", None)
    found = await store.find_firing("low-cash", "12345678@vision")
    assert [f.fingerprint for f in found] == ["fp-1"]
    assert await store.find_alert("unknown") is None
    assert [n.id for n, _, _ in await store.last_firing("fp-1")] == ["n1"]


async def test_the_record_keeps_every_attempt_of_a_notification(store: Store) -> None:
    """Two failed attempts then a delivery: the record says delivered, with three attempts
    and their errors, in order; filters by state, sink and rule."""
    await queue_notification(store, SOURCE, note("n1"), ["hook"], T0)
    row = await store.next_pending("hook")
    assert row is not None
    await store.mark(row.seq, "pending", now=NOW + 1, error="HTTP 503", next_attempt_at=NOW + 2)
    await store.mark(row.seq, "pending", now=NOW + 3, error="timeout", next_attempt_at=NOW + 4)
    await store.mark(row.seq, "delivered", now=NOW + 5)

    [record] = await store.notifications(since=NOW - 1)
    assert (record.id, record.sink, record.state, record.attempt_count) == (
        "n1",
        "hook",
        "delivered",
        3,
    )
    assert record.attempts == (
        AttemptRow(NOW + 1, "retry", "HTTP 503"),
        AttemptRow(NOW + 3, "retry", "timeout"),
        AttemptRow(NOW + 5, "delivered", None),
    )
    assert await store.notifications(since=NOW - 1, state="failed") == []
    assert await store.notifications(since=NOW - 1, sink="other") == []
    assert len(await store.notifications(since=NOW - 1, rule=record.rule)) == 1
    assert await store.notifications(since=NOW + 1) == []


async def test_the_record_is_read_for_one_account_of_one_source(store: Store) -> None:
    """The dashboard's account page reads one account's notifications (no other account's,
    no other source's account of the same number), however many others came after."""
    mine = replace(make_notification(account_number="A-1", observed_at=T0), id="mine")
    await queue_notification(store, SOURCE, mine, ["hook"], T0)
    for i in range(5):
        other = replace(make_notification(account_number=f"B-{i}", observed_at=T0), id=f"o{i}")
        await queue_notification(store, SOURCE, other, ["hook"], T0)
    twin = replace(make_notification(account_number="A-1", observed_at=T0), id="twin")
    await queue_notification(store, "other-source", twin, ["hook"], T0)

    found = await store.notifications(since=0, source=SOURCE, account_number="A-1", limit=1)
    assert [r.id for r in found] == ["mine"]
    both = await store.notifications(since=0, account_number="A-1")
    assert sorted(r.id for r in both) == ["mine", "twin"]
    assert len(await store.notifications(since=0, source="other-source")) == 1


async def test_held_notifications_are_recorded_and_released_or_settled(store: Store) -> None:
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True, account_count=1),
        health=SourceHealth(),
        held=[(note("n1"), ["hook"], "silence:abc"), (note("n2", "fp-2"), ["hook"], "night")],
    )
    assert {r.id: r.state for r in await store.notifications(since=0)} == {
        "n1": "held",
        "n2": "held",
    }
    rows = {r.id: r.seq for r in await store.held()}
    await store.release([(note("n1"), "hook", SOURCE)], [rows["n1"], rows["n2"]], NOW + 9)
    assert {r.id: r.state for r in await store.notifications(since=0)} == {
        "n1": "pending",
        "n2": "settled",
    }


async def test_history_pruning_covers_the_record(store: Store) -> None:
    await queue_notification(store, SOURCE, note("n1"), ["hook"], T0)
    await store.add_silence(Silence("s", NOW, NOW + 10, rule="r"))
    pruned = await store.prune_history(before=NOW + 3600)
    assert pruned["notification_log"] == 1
    assert pruned["silences"] == 1
    assert await store.notifications(since=0) == []


async def test_a_control_open_writes_next_to_a_running_writer(tmp_path: Path) -> None:
    """With the writer's lock held (a daemon runs), ``control=True`` still opens the database
    and its silence is seen by the writer; without one it opens (and creates) normally."""
    path = tmp_path / "state.db"
    daemon = await open_store(path)
    try:
        cli = await open_store(path, control=True)
        try:
            await cli.add_silence(Silence("x", NOW, NOW + 60, rule="r"))
        finally:
            await cli.close()
        assert [s.id for s in await daemon.silences(now=NOW)] == ["x"]
    finally:
        await daemon.close()
    alone = await open_store(tmp_path / "other.db", control=True)
    await alone.close()
    assert (tmp_path / "other.db").exists()


async def test_a_control_open_of_a_current_database_never_blocks_a_starting_daemon(
    tmp_path: Path,
) -> None:
    """While ``silence`` or ``ack`` has a database at this schema open, a daemon can still
    start (take the writer's lock): the control open takes no lock on it."""
    path = tmp_path / "state.db"
    await (await open_store(path)).close()  # a database the daemon made
    cli = await open_store(path, control=True)
    try:
        daemon = await open_store(path)
        await daemon.close()
    finally:
        await cli.close()


async def test_pruning_keeps_the_ack_of_an_alert_still_firing(store: Store) -> None:
    """``[history] keep`` prunes old acks, but not the ack of an episode still firing (an
    account restricted for months, acknowledged on day one): dropping it would start its
    reminders and escalation again."""
    alert = ActiveAlert("low-cash", "A1", "fp-1", T0)
    await commit_poll(
        store,
        SOURCE,
        poll=PollRecord(T0, ok=True, account_count=1),
        health=SourceHealth(),
        active={("low-cash", "A1"): alert},
        outbox=[(note("n1"), ["pd"])],
    )
    firing = Ack("fp-1", "low-cash", "A1", SOURCE, NOW + 5, "alice", "on it", "n1")
    ended = Ack("fp-old", "low-cash", "A2", SOURCE, NOW + 5, "bob", "", None)
    assert await store.add_ack(firing, [])
    assert await store.add_ack(ended, [])
    pruned = await store.prune_history(before=NOW + 90 * 86400)
    assert pruned["acks"] == 1
    assert await store.acks() == [firing]
