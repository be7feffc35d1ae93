"""A push of the account stream through :meth:`SourcePipeline.push`: committed to a real store
like a poll (and only when it changed something), serialized with the polls, never counted as
a poll."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from store_helpers import sqlite_query
from test_pipeline import Harness, account, make_config, started

from monitor import encoding
from monitor.cycle import PollWrite
from monitor.models import ParseResult
from monitor.parse import parse_body
from monitor.silences import ControlState, Silence
from monitor.store import SqliteStore


class CountingStore(SqliteStore):
    """A real store that counts its commits."""

    commits = 0

    async def commit(self, write: PollWrite) -> None:
        self.commits += 1
        await super().commit(write)


def pushed(h: Harness, *records: dict[str, Any]) -> ParseResult:
    return parse_body(encoding.dumps(list(records)).encode(), h.pipeline.accounts)


async def open_counting(tmp_path: Path) -> CountingStore:
    store = await CountingStore.open(tmp_path / "state.db")
    assert isinstance(store, CountingStore)
    return store


async def test_a_pushed_change_is_committed_and_queued_but_is_no_poll(tmp_path: Path) -> None:
    store = await open_counting(tmp_path)
    try:
        h = await started(make_config(tmp_path), store)
        await h.poll([account("A"), account("B")])
        h.clock.advance(5)
        alerts = await h.pipeline.push(pushed(h, account("A", cash="500.00")))
        polls = await sqlite_query(store, "SELECT polls, account_count FROM sources")
        outbox = await h.outbox()
        await h.restart()  # what was pushed is on disk
        restarted = h.pipeline.accounts
    finally:
        await store.close()
    assert alerts == 1
    assert outbox == [("low-cash", "firing", "ops", "A")]
    assert polls == [(1, 2)]
    assert len(h.outcomes) == 1  # on_poll is for polls
    assert restarted is not None
    assert restarted["A"].get("cash") == Decimal("500.00")
    assert set(restarted) == {"A", "B"}


async def test_a_push_equal_to_the_stored_records_is_not_written(tmp_path: Path) -> None:
    store = await open_counting(tmp_path)
    try:
        h = await started(make_config(tmp_path), store)
        await h.poll([account("A"), account("B")])
        before = store.commits
        for _ in range(3):
            await h.pipeline.push(pushed(h, account("A"), account("B")))
    finally:
        await store.close()
    assert store.commits == before
    assert h.queued == 0


async def test_a_push_before_the_first_poll_is_ignored(tmp_path: Path) -> None:
    store = await open_counting(tmp_path)
    try:
        h = await started(make_config(tmp_path), store)
        assert await h.pipeline.push(pushed(h, account("A", cash="1.00"))) == 0
    finally:
        await store.close()
    assert store.commits == 0
    assert h.pipeline.accounts is None


class Gate:
    """A fetcher that answers only once ``open`` is set."""

    def __init__(self, answer: list[dict[str, Any]]) -> None:
        self.answer = answer
        self.open = asyncio.Event()
        self.started = asyncio.Event()

    async def fetch(self) -> bytes:
        self.started.set()
        await self.open.wait()
        return encoding.dumps(self.answer).encode()


async def test_a_push_waits_for_the_poll_in_flight(tmp_path: Path) -> None:
    """Polls and pushes of a source run one at a time: a push that arrives during a poll is
    applied after it, on the poll's state (so the poll cannot overwrite it)."""
    store = await open_counting(tmp_path)
    try:
        h = await started(make_config(tmp_path), store)
        await h.poll([account("A"), account("B")])
        gate = Gate([account("A"), account("B")])
        h.pipeline.fetcher = gate
        poll = asyncio.create_task(h.pipeline.poll())
        await gate.started.wait()
        push = asyncio.create_task(h.pipeline.push(pushed(h, account("A", cash="500.00"))))
        await asyncio.sleep(0.05)
        assert not push.done()
        gate.open.set()
        await poll
        assert await push == 1
        assert h.pipeline.accounts is not None
        assert h.pipeline.accounts["A"].get("cash") == Decimal("500.00")
    finally:
        await store.close()


async def test_a_silence_holds_a_pushed_alert_as_it_holds_a_polled_one(tmp_path: Path) -> None:
    """Pushes see the silences in force: an alert a push fires under a silence is held for the
    silence, not queued."""
    store = await open_counting(tmp_path)
    try:
        h = await started(make_config(tmp_path), store)
        now = h.clock().timestamp()
        silence = Silence("s1", now - 60, now + 3600, rule="low-cash")
        h.pipeline.control = lambda: ControlState(silences=(silence,))
        await h.poll([account("A"), account("B")])
        h.clock.advance(5)
        await h.pipeline.push(pushed(h, account("A", cash="500.00")))
        outbox = await h.outbox()
        held = await store.held()
    finally:
        await store.close()
    assert outbox == []
    assert [(row.mute, row.sink) for row in held] == [("silence:s1", "ops")]
