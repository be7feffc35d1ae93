"""What the PostgreSQL backend does beyond the Store suite (which runs on it too): schema
creation under a lock, a newer schema refused, the password kept out of messages, lease rounds
with the database's clock, fenced commits and claimed outbox rows. On a real PostgreSQL 15
(``tests/pg_helpers.py``), a schema of its own per test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pg_helpers
import pytest
from store_helpers import commit_poll, notification, queue_notification

from monitor.cli import main
from monitor.cycle import PollRecord
from monitor.errors import LeaseLostError, SchemaTooNewError, StoreError
from monitor.leases import Lease, Plan, plan, source_lease
from monitor.rules import SourceHealth
from monitor.store import SCHEMA_VERSION
from monitor.store.postgres import PostgresStore
from monitor.store.postgres_ops import Round

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FAR = T0.timestamp() + 10 * 365 * 86400


@pytest.fixture
def db() -> tuple[pg_helpers.Cluster, str]:
    cluster = pg_helpers.cluster()
    return cluster, cluster.new_schema()


@pytest.fixture
async def opened() -> AsyncIterator[list[PostgresStore]]:
    """Stores the test opens, closed at its end."""
    stores: list[PostgresStore] = []
    yield stores
    for store in stores:
        await store.close()


OpenAs = Callable[..., "asyncio.Future[PostgresStore]"]


@pytest.fixture
def open_as(db: tuple[pg_helpers.Cluster, str], opened: list[PostgresStore]) -> OpenAs:
    cluster, schema = db

    async def open_(replica: str, *, claim_ttl: float = 15.0) -> PostgresStore:
        store = await PostgresStore.open(
            cluster.url(schema), cluster.password, replica=replica, claim_ttl=claim_ttl
        )
        opened.append(store)
        return store

    return open_  # type: ignore[return-value] # an async function


def decide(
    me: str, sources: Sequence[str]
) -> Callable[[Sequence[str], dict[str, Lease], float], Plan]:
    wanted = [source_lease(s) for s in sources]
    return lambda live, leases, now: plan(me, live, wanted, leases, now)


async def commit(store: PostgresStore, source: str) -> None:
    await commit_poll(
        store,
        source,
        poll=PollRecord(T0, ok=True, account_count=0),
        health=SourceHealth(),
        outbox=[(notification(f"n-{source}-{store.replica}"), ["hook"])],
    )


def write_config(folder: Path, state: str) -> Path:
    path = folder / "config.toml"
    path.write_text(
        '[api]\nurl = "http://127.0.0.1:9/accounts"\ntoken = "t"\n'
        '[[sinks]]\nname = "audit"\ntype = "log"\n'
        f"[state]\n{state}\n",
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------- schema


async def test_replicas_started_together_create_the_schema_once(open_as: OpenAs) -> None:
    """Five stores opened at once on an empty schema: the advisory lock lets one create it,
    the others find it current; all of them work."""
    stores = await asyncio.gather(*(open_as(f"r{i}") for i in range(5)))
    for store in stores:
        assert await store.pending() == 0
    cluster_schema = stores[0].url
    assert "search_path" in cluster_schema


async def test_a_newer_schema_is_refused_with_exit_2(
    db: tuple[pg_helpers.Cluster, str],
    open_as: OpenAs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database written by a newer release is left as it is: SchemaTooNewError, and
    ``run`` exits 2 with a message that says so (``once`` is refused on any PostgreSQL
    state: it would hold no lease)."""
    cluster, schema = db
    await open_as("a")
    newer = SCHEMA_VERSION + 1
    cluster.sql(f"UPDATE {schema}.meta SET value='{newer}' WHERE key='schema_version'")  # noqa: S608
    with pytest.raises(SchemaTooNewError, match="newer balance-monitor"):
        await PostgresStore.open(cluster.url(schema), cluster.password, replica="b")
    config = write_config(
        tmp_path, f'url = "{cluster.url(schema)}"\npassword = "{cluster.password}"'
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "monitor", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"written by a newer balance-monitor (schema {newer}" in done.stderr
    assert cluster.password not in done.stderr
    assert await asyncio.to_thread(main, ["--config", str(config), "once"]) == 2
    assert "use `run`" in capsys.readouterr().err


async def test_the_password_never_appears_in_errors(
    db: tuple[pg_helpers.Cluster, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A wrong password fails with libpq's reason, not the password; a URL holding one shows
    it masked; ``status`` prints neither."""
    cluster, schema = db
    wrong = "hunter2-wrong-sekrit"
    with pytest.raises(StoreError) as info:
        await PostgresStore.open(cluster.url(schema), wrong, replica="a")
    assert wrong not in str(info.value)
    assert "password authentication failed" in str(info.value)
    inline = cluster.url(schema, with_password=True)
    store = await PostgresStore.open(inline, None, replica="a")
    try:
        assert cluster.password not in store.location
        assert ":***@" in store.location
    finally:
        await store.close()
    config = write_config(tmp_path, f'url = "{inline}"')
    assert await asyncio.to_thread(main, ["--config", str(config), "status", "--json"]) == 0
    assert await asyncio.to_thread(main, ["--config", str(config), "status"]) == 0
    out = capsys.readouterr()
    assert cluster.password not in out.out + out.err
    assert ":***@" in out.out


async def test_a_password_in_the_url_s_query_never_appears_in_status_or_errors(
    db: tuple[pg_helpers.Cluster, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """libpq also takes the password as a query parameter of the URL (``?password=...``):
    ``status`` shows it masked like one in the user part, and an error that quotes the
    connection string says neither."""
    cluster, schema = db
    inline = f"{cluster.url(schema)}&password={cluster.password}"
    store = await PostgresStore.open(inline, None, replica="a")
    try:
        assert cluster.password not in store.location
        assert "password=***" in store.location
    finally:
        await store.close()
    config = write_config(tmp_path, f'url = "{inline}"')
    assert await asyncio.to_thread(main, ["--config", str(config), "status"]) == 0
    out = capsys.readouterr()
    assert cluster.password not in out.out + out.err
    assert "password=***" in out.out
    wrong = "hunter2-wrong-sekrit"
    with pytest.raises(StoreError) as info:
        await PostgresStore.open(f"{cluster.url(schema)}&password={wrong}", None, replica="a")
    assert wrong not in str(info.value)


# --------------------------------------------------------------------------- leases


async def test_a_lone_replica_takes_every_lease_with_epoch_1(open_as: OpenAs) -> None:
    a = await open_as("a")
    done = await a.lease_round(5.0, decide("a", ["s1", "s2"]))
    assert done.acquired == {"source:s1": "new", "source:s2": "new", "singleton": "new"}
    assert a.holding == {"source:s1": 1, "source:s2": 1, "singleton": 1}
    assert done.live == ["a"]
    again = await a.lease_round(5.0, decide("a", ["s1", "s2"]))
    assert again.acquired == {}
    assert again.held == a.holding  # renewed, same epoch


async def test_a_second_replica_gets_its_share_after_the_first_rebalances(
    open_as: OpenAs,
) -> None:
    sources = [f"s{i}" for i in range(4)]
    a, b = await open_as("a"), await open_as("b")
    await a.lease_round(5.0, decide("a", sources))
    await b.lease_round(5.0, decide("b", sources))  # heartbeat: b is live now
    rebalance: Round = await a.lease_round(5.0, decide("a", sources))
    assert len(rebalance.released) == 2
    taken = await b.lease_round(5.0, decide("b", sources))
    assert sorted(taken.acquired.values()) == ["released", "released"]
    owners = {lease.name: lease.owner for lease in await a.leases()}
    assert sorted(str(owners[source_lease(s)]) for s in sources) == ["a", "a", "b", "b"]


async def test_a_stale_replica_s_commit_is_fenced_off(open_as: OpenAs) -> None:
    """a held the source, stopped renewing past its lease; b took it over (epoch 2). a's
    next commit is refused whole: no outbox row, no source row; b's lands."""
    a, b = await open_as("a"), await open_as("b")
    await a.lease_round(1.0, decide("a", ["s1"]))
    await asyncio.sleep(1.2)  # a's lease (and heartbeat) expire: a was paused
    taken = await b.lease_round(5.0, decide("b", ["s1"]))
    assert taken.acquired["source:s1"] == "takeover"
    assert b.holding["source:s1"] == 2
    with pytest.raises(LeaseLostError, match="another replica holds its lease"):
        await commit(a, "s1")
    assert await b.pending() == 0
    assert await b.sources() == []
    await commit(b, "s1")
    assert await b.pending() == 1
    lost = await a.lease_round(5.0, decide("a", ["s1"]))
    assert lost.lost == ["source:s1", "singleton"]  # b took both
    assert "source:s1" not in a.holding


async def test_a_commit_without_the_lease_is_refused(open_as: OpenAs) -> None:
    a = await open_as("a")
    with pytest.raises(LeaseLostError, match="does not hold its lease"):
        await commit(a, "s1")


async def test_a_handover_frees_every_lease_at_once(open_as: OpenAs) -> None:
    a, b = await open_as("a"), await open_as("b")
    await a.lease_round(15.0, decide("a", ["s1", "s2"]))
    assert await a.release_leases() == 3
    taken = await b.lease_round(15.0, decide("b", ["s1", "s2"]))
    assert set(taken.acquired) == {"source:s1", "source:s2", "singleton"}
    assert set(taken.acquired.values()) == {"released"}
    assert {r.name: r.expires_at > 0 for r in await b.replicas()}["a"]


# --------------------------------------------------------------------------- claims


async def test_one_sink_s_rows_go_out_one_at_a_time_across_replicas(open_as: OpenAs) -> None:
    """a claims the sink's oldest row; b gets nothing for that sink (not even the next row:
    order per sink), but gets another sink's row."""
    a, b = await open_as("a"), await open_as("b")
    for nid in ("n1", "n2"):
        await queue_notification(a, "src", notification(nid), ["hook", "chat"], T0)
    first = await a.next_pending("hook")
    assert first is not None
    assert first.id == "n1"
    assert await b.next_pending("hook") is None
    other = await b.next_pending("chat")
    assert other is not None
    assert other.id == "n1"
    assert await a.next_pending("hook") == first  # its own claim: the same row again
    await a.mark(first.seq, "delivered", now=T0.timestamp())
    following = await b.next_pending("hook")
    assert following is not None
    assert following.id == "n2"


async def test_an_expired_claim_is_sent_by_another_replica_with_the_same_id(
    open_as: OpenAs,
) -> None:
    """a was killed mid-send: its claim expires and b claims the row, same id and seq."""
    a = await open_as("a", claim_ttl=0.5)
    b = await open_as("b", claim_ttl=0.5)
    await queue_notification(a, "src", notification("n1"), ["hook"], T0)
    claimed = await a.next_pending("hook")
    assert claimed is not None
    assert await b.next_pending("hook") is None
    await asyncio.sleep(0.7)
    again = await b.next_pending("hook")
    assert again is not None
    assert (again.id, again.seq) == (claimed.id, claimed.seq)


async def test_a_batch_skips_rows_another_replica_claimed(open_as: OpenAs) -> None:
    a, b = await open_as("a"), await open_as("b")
    for nid in ("n1", "n2", "n3"):
        await queue_notification(a, "src", notification(nid), ["chat"], T0)
    first = await a.next_batch("chat", limit=2, now=FAR)
    assert [r.id for r in first] == ["n1", "n2"]
    rest = await b.next_batch("chat", limit=10, now=FAR)
    assert [r.id for r in rest] == ["n3"]


async def test_released_claims_are_free_at_once(open_as: OpenAs) -> None:
    a, b = await open_as("a"), await open_as("b")
    await queue_notification(a, "src", notification("n1"), ["hook"], T0)
    assert await a.next_pending("hook") is not None
    await a.release_claims()
    row = await b.next_pending("hook")
    assert row is not None
    assert row.id == "n1"


async def test_a_restart_under_the_same_name_takes_its_leases_anew(open_as: OpenAs) -> None:
    """A second process named ``a`` (a quick restart, or a misconfiguration) finds leases
    recorded as ``a``'s that it never took: it takes them with a new epoch, so whatever the
    first process still writes is fenced off."""
    first = await open_as("a")
    await first.lease_round(15.0, decide("a", ["s1"]))
    assert first.holding["source:s1"] == 1
    second = await open_as("a")
    done = await second.lease_round(15.0, decide("a", ["s1"]))
    assert done.acquired["source:s1"] == "takeover"
    assert second.holding["source:s1"] == 2
    with pytest.raises(LeaseLostError):
        await commit(first, "s1")
    await commit(second, "s1")


async def test_status_shows_every_replica_and_the_owner_of_each_source(
    open_as: OpenAs,
) -> None:
    """``status`` on a shared database: each replica live or gone with its last heartbeat, the
    sources it owns and whether it does singleton work; each source's owner."""
    from monitor import status

    a, b = await open_as("a"), await open_as("b")
    await a.lease_round(15.0, decide("a", ["s1"]))
    await b.lease_round(0.5, decide("b", ["s1"]))  # b heartbeats once (a holds all), then is gone
    await commit(a, "s1")
    await asyncio.sleep(0.6)
    data = await status.collect(a, datetime.now(tz=UTC))
    rows = {r["replica"]: r for r in data["replicas"]}
    assert rows["a"]["live"] is True
    assert rows["a"]["sources_owned"] == 1
    assert rows["a"]["singleton"] is True
    assert rows["b"]["live"] is False
    assert [(s["source"], s["owner"]) for s in data["sources"]] == [("s1", "a")]
    text = status.render(data)
    assert "replicas: 1 live of 2" in text
    (line,) = [x for x in text.splitlines() if x.startswith("a ")]
    assert line.split()[1] == "live"
    assert "OWNER" in text
    (source,) = [x for x in text.splitlines() if x.startswith("s1 ")]
    assert " a " in f" {source} "


async def test_compacting_loses_no_journal_row_committed_by_another_replica_meanwhile() -> None:
    """Compaction (the singleton's hourly maintenance) moves the journal's rows while other
    replicas keep committing polls: a row committed while it runs, dated before its cutoff,
    is moved or left for the next compaction, never deleted unmoved (READ COMMITTED gives each
    statement of a transaction its own snapshot)."""
    from decimal import Decimal

    from store_helpers import PostgresBackend

    backend = PostgresBackend.new()
    store, other = await backend.open(), await backend.open()
    # The copy into account_history takes a second: room for a poll to commit meanwhile.
    backend.cluster.sql(
        f"CREATE FUNCTION {backend.schema}.slow() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
    )
    backend.cluster.sql(
        f"CREATE TRIGGER slow BEFORE INSERT ON {backend.schema}.account_history"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {backend.schema}.slow()"
    )
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    async def poll(at: datetime, cash: str, writer: object) -> None:
        assert isinstance(writer, PostgresStore)
        await commit_poll(
            writer,
            "default",
            poll=PollRecord(at, ok=True),
            health=SourceHealth(),
            series=[("A1", "cash", None, Decimal(cash))],
        )

    try:
        await poll(t0, "1", store)
        compacting = asyncio.create_task(store.compact_history(before=t0.timestamp() + 3600))
        await asyncio.sleep(0.4)  # the copy is running
        await poll(t0.replace(minute=30), "2", other)  # another replica's poll, before the cutoff
        await compacting
        await store.compact_history(before=t0.timestamp() + 3600)
        kept = await backend.rows(
            "SELECT at, value FROM account_history UNION ALL SELECT at, value FROM history_journal"
            " ORDER BY at"
        )
    finally:
        await store.close()
        await other.close()
    assert kept == [(t0.timestamp(), "1"), (t0.timestamp() + 1800, "2")]
