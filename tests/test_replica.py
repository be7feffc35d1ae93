"""The Replica (monitor/replica.py) on a real PostgreSQL: what it takes it reports and polls,
what it loses it logs and stops polling, a database it cannot reach it says so; and a
pipeline whose write is fenced off (monitor/pipeline.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pg_helpers
import pytest
from cycle_helpers import SOURCE
from structlog.testing import capture_logs

from monitor.config import config_from_dict
from monitor.metrics import Metrics
from monitor.parse import parse_body
from monitor.pipeline import SourcePipeline
from monitor.replica import Replica
from monitor.store.postgres import PostgresStore
from monitor.testing import FakeFetcher, ManualClock

SOURCES = ["s1", "s2", "s3", "s4"]


@pytest.fixture
async def stores() -> AsyncIterator[dict[str, PostgresStore]]:
    """Stores of replicas ``a`` and ``b`` on a new schema."""
    cluster = pg_helpers.cluster()
    url = cluster.url(cluster.new_schema())
    opened = {name: await PostgresStore.open(url, cluster.password, replica=name) for name in "ab"}
    yield opened
    for store in opened.values():
        await store.close()


def replica(
    store: PostgresStore, acquired: list[str], metrics: Metrics | None = None, lease: float = 1.0
) -> Replica:
    async def on_acquired(source: str) -> None:
        acquired.append(source)

    return Replica(
        store, lease=lease, sources=lambda: SOURCES, on_acquired=on_acquired, metrics=metrics
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_replica_reports_what_it_takes_and_counts_it(
    stores: dict[str, PostgresStore],
) -> None:
    acquired: list[str] = []
    metrics = Metrics()
    a = replica(stores["a"], acquired, metrics)
    with capture_logs() as logs:
        await a.round()
    assert sorted(acquired) == SOURCES
    assert a.owned == set(SOURCES)
    assert a.singleton
    assert sample(metrics, "balance_monitor_sources_owned") == 4
    assert sample(metrics, "balance_monitor_lease_changes_total", reason="new") == 5
    events = [e for e in logs if e["event"] == "source_acquired"]
    assert {(e["source"], e["epoch"], e["reason"]) for e in events} == {
        (s, 1, "new") for s in SOURCES
    }


async def test_a_joining_replica_gets_half_and_the_first_gives_it_up(
    stores: dict[str, PostgresStore],
) -> None:
    taken_a: list[str] = []
    taken_b: list[str] = []
    metrics = Metrics()
    a = replica(stores["a"], taken_a, metrics)
    b = replica(stores["b"], taken_b)
    await a.round()
    await b.round()  # b heartbeats; a's leases are held: b takes nothing yet
    assert taken_b == []
    await a.round()  # a sees b and gives up its excess
    await b.round()
    assert len(a.owned) == len(b.owned) == 2
    assert a.owned.isdisjoint(b.owned)
    assert sample(metrics, "balance_monitor_lease_changes_total", reason="rebalanced") == 2


async def test_a_replica_that_lost_its_lease_logs_it_and_stops_polling(
    stores: dict[str, PostgresStore],
) -> None:
    """a paused past its lease, b took everything; a's next round finds it lost."""
    a = replica(stores["a"], [], lease=1.0)
    b = replica(stores["b"], [], lease=5.0)
    await a.round()
    await asyncio.sleep(1.2)
    await b.round()
    assert b.owned == set(SOURCES)
    with capture_logs() as logs:
        await a.round()
    assert a.owned == set()
    lost = {e["source"] for e in logs if e["event"] == "source_lost"}
    assert lost == set(SOURCES)
    assert not a.owns("s1")


async def test_a_replica_without_its_database_says_so_and_gives_up_after_the_lease(
    stores: dict[str, PostgresStore],
) -> None:
    """A round that fails is logged once with its cause; past the lease the sources are no
    longer polled here; the next good round logs the recovery."""
    clock = ManualClock()
    acquired: list[str] = []
    a = Replica(
        stores["a"],
        lease=1.0,
        sources=lambda: SOURCES,
        on_acquired=lambda s: _append(acquired, s),
        clock=lambda: clock().timestamp(),
    )
    await a.round()
    await stores["a"].close()  # as good as unreachable: every call is a StoreError
    with capture_logs() as logs:
        await a.round()
        await a.round()
    assert [e["event"] for e in logs] == ["state_database_unreachable"]
    assert a.error is not None
    assert "closed" in a.error
    assert a.owned == set(SOURCES)  # within the lease: still ours
    clock.advance(1.5)
    with capture_logs() as logs:
        await a.round()
    assert a.owned == set()
    assert {e["source"] for e in logs if e["event"] == "source_lost"} == set(SOURCES)


async def _append(found: list[str], source: str) -> None:
    found.append(source)


async def test_handover_frees_every_lease_for_the_others(
    stores: dict[str, PostgresStore],
) -> None:
    a = replica(stores["a"], [])
    taken: list[str] = []
    b = replica(stores["b"], taken)
    await a.round()
    with capture_logs() as logs:
        await a.handover()
    assert [e["event"] for e in logs] == ["sources_handed_over"]
    assert logs[0]["sources"] == 4
    told: list[bool] = []

    async def singleton() -> None:
        told.append(True)

    b.on_singleton = singleton
    await b.round()
    assert sorted(taken) == SOURCES
    assert b.singleton
    assert told == [True]  # its singleton work starts at once


def fenced_pipeline(store: PostgresStore, tmp_path: Path) -> tuple[SourcePipeline, list[str]]:
    """A pipeline of one source on ``store`` whose next poll returns A1 with cash 5, and the
    sources its ``on_lost`` was told of."""
    config = config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t0ken"},
            "sinks": [{"name": "audit", "type": "log"}],
        },
        base_dir=tmp_path,
    )
    told: list[str] = []
    fetcher = FakeFetcher()
    fetcher.push([{"account_number": "A1", "cash": 5}])
    pipeline = SourcePipeline(
        source=SOURCE,
        config=config,
        rules=config.rules,
        fetcher=fetcher,
        store=store,
        on_queued=lambda: None,
        clock=ManualClock(),
        on_lost=told.append,
    )
    return pipeline, told


async def test_a_fenced_poll_writes_nothing_and_stops_the_source(
    stores: dict[str, PostgresStore], tmp_path: Path
) -> None:
    """A pipeline on a replica that does not hold the lease: its poll is a failed poll with
    the cause, source_lost is logged, on_lost is told, and nothing lands in the database."""
    pipeline, told = fenced_pipeline(stores["a"], tmp_path)
    with capture_logs() as logs:
        outcome = await pipeline.poll()
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("lease lost: source default: this replica does not hold")
    assert told == [SOURCE]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["source_lost"]
    assert await stores["a"].sources() == []


async def test_a_fenced_push_writes_nothing_and_stops_the_source(
    stores: dict[str, PostgresStore], tmp_path: Path
) -> None:
    """A push of the account stream on a replica whose lease another replica took over (it
    was paused, its stream still open) is fenced off like a poll: source_lost is logged,
    on_lost is told (which closes the stream), and the push lands nowhere."""
    pipeline, told = fenced_pipeline(stores["a"], tmp_path)

    async def nothing(source: str) -> None:
        pass

    def owner(name: str) -> Replica:
        return Replica(stores[name], lease=1.0, sources=lambda: [SOURCE], on_acquired=nothing)

    await owner("a").round()
    assert (await pipeline.poll()).ok
    held = dict(stores["a"].holding)
    await stores["a"].release_leases()  # as if it expired while "a" was paused
    await owner("b").round()
    stores["a"].holding = held  # "a" wakes up believing it still holds it
    assert pipeline.accounts is not None
    seen = parse_body(b'[{"account_number": "A1", "cash": 7}]', pipeline.accounts)
    with capture_logs() as logs:
        assert await pipeline.push(seen) == 0
    assert told == [SOURCE]
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == ["source_lost"]
    [row] = await stores["b"].accounts()
    assert row.record["cash"] == 5


async def test_a_replica_records_stream_state_only_for_a_source_it_holds(
    stores: dict[str, PostgresStore],
) -> None:
    """``status`` shows each source's stream as its owner's: a replica that handed the source
    over (or lost it while paused, its socket dead) cannot overwrite the owner's "connected"
    with its own "down"."""

    async def nothing(source: str) -> None:
        pass

    def owner(name: str) -> Replica:
        return Replica(stores[name], lease=1.0, sources=lambda: [SOURCE], on_acquired=nothing)

    await owner("a").round()
    await stores["a"].record_stream(SOURCE, {"connected": True, "reconnects": 0})
    held = dict(stores["a"].holding)
    await stores["a"].release_leases()
    await stores["a"].record_stream(SOURCE, {"connected": False, "reconnects": 1})  # handed over
    await owner("b").round()
    await stores["b"].record_stream(SOURCE, {"connected": True, "reconnects": 0})
    stores["a"].holding = held  # "a" wakes up from a pause: its socket ended meanwhile
    await stores["a"].record_stream(SOURCE, {"connected": False, "reconnects": 2})
    assert await stores["b"].streams() == {SOURCE: {"connected": True, "reconnects": 0}}
