"""One poll cycle: FakeFetcher -> parse -> diff -> rules -> a real store's outbox."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, MutableMapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from store_helpers import sqlite_query
from structlog.testing import capture_logs

from monitor.config import Config, config_from_dict
from monitor.errors import FetchError, ParseError
from monitor.models import Alert, Severity, Status
from monitor.pipeline import SourcePipeline, notification_id
from monitor.store import Store, open_store
from monitor.testing import FakeFetcher, ManualClock

SOURCE = "default"
RULES: list[dict[str, Any]] = [
    {
        "type": "threshold",
        "name": "low-cash",
        "field": "cash",
        "op": "<",
        "value": 1000,
        "sinks": ["ops"],
    },
    {"type": "restriction_change", "name": "restricted"},
    {"type": "change", "name": "margin", "field": "margin_type", "sinks": ["audit"]},
]


def make_config(tmp_path: Path, *, down_after: int = 2) -> Config:
    return config_from_dict(
        {
            "api": {
                "url": "http://127.0.0.1:9/accounts",
                "token": "t0ken",
                "down_after": down_after,
            },
            "state": {"path": str(tmp_path / "state.db")},
            "sinks": [{"type": "log", "name": "ops"}, {"type": "log", "name": "audit"}],
            "rules": RULES,
        },
        base_dir=tmp_path,
    )


def account(number: str, cash: str = "5000.00", **fields: Any) -> dict[str, Any]:
    return {
        "account_number": number,
        "margin_type": "cash",
        "restriction": "none",
        "cash": Decimal(cash),
        **fields,
    }


class Harness:
    """A pipeline on a real store, with a fake fetcher and a manual clock."""

    def __init__(self, config: Config, store: Store, clock: ManualClock) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.fetcher = FakeFetcher()
        self.queued = 0
        self.pipeline = self.new_pipeline()

    def new_pipeline(self) -> SourcePipeline:
        return SourcePipeline(
            source=SOURCE,
            config=self.config,
            rules=self.config.rules,
            fetcher=self.fetcher,
            store=self.store,
            on_queued=self._on_queued,
            clock=self.clock,
            down_after=self.config.all_sources()[0].config.down_after,
        )

    def _on_queued(self) -> None:
        self.queued += 1

    async def outbox(self) -> list[tuple[str, str, str, str]]:
        """``(rule, status, sink, account)`` of every queued row, in order."""
        rows = await sqlite_query(self.store, "SELECT sink, payload FROM outbox ORDER BY seq")
        result = []
        for sink, payload in rows:
            doc = json.loads(payload)
            result.append((doc["rule"], doc["status"], sink, doc["account_number"] or ""))
        return result

    async def poll(self, *answers: Any) -> Any:
        self.fetcher.push(*answers)
        return await self.pipeline.poll()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "state.db")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def h(tmp_path: Path, store: Store, clock: ManualClock) -> Harness:
    harness = Harness(make_config(tmp_path), store, clock)
    await harness.pipeline.load()
    return harness


def warnings(
    logs: Sequence[MutableMapping[str, Any]], event: str
) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and e["log_level"] == "warning"]


# --------------------------------------------------------------------------- baseline and changes


async def test_the_baseline_poll_fires_thresholds_but_no_changes(h: Harness) -> None:
    """The first poll has nothing to compare with: no change alerts, but a threshold that
    already holds fires at once."""
    outcome = await h.poll([account("A", "500.00"), account("B", restriction="restricted")])

    assert (outcome.ok, outcome.accounts, outcome.changed, outcome.notifications) == (
        True,
        2,
        2,
        1,
    )
    assert await h.outbox() == [("low-cash", "firing", "ops", "A")]
    assert h.queued == 1
    assert h.pipeline.firing == 1


async def test_a_change_poll_routes_notifications_to_the_rules_sinks(
    h: Harness, clock: ManualClock
) -> None:
    """Each notification goes to its rule's ``sinks``, or to every sink when it names none."""
    await h.poll([account("A"), account("B")])
    clock.advance(30)

    outcome = await h.poll(
        [account("A", margin_type="marginx2"), account("B", restriction="restricted")]
    )

    assert outcome.notifications == 2
    assert await h.outbox() == [
        ("restricted", "firing", "ops", "B"),
        ("restricted", "firing", "audit", "B"),
        ("margin", "firing", "audit", "A"),
    ]


async def test_a_quiet_poll_queues_nothing(h: Harness, clock: ManualClock) -> None:
    """Polling the same accounts again writes no account row and queues nothing."""
    body = [account("A"), account("B")]
    await h.poll(body)
    clock.advance(30)
    outcome = await h.poll(body)
    assert (outcome.changed, outcome.notifications) == (0, 0)
    assert await h.outbox() == []
    assert h.queued == 0


async def test_only_changed_account_rows_are_written(h: Harness, clock: ManualClock) -> None:
    """A poll rewrites the rows of changed accounts, adds new ones and deletes removed ones;
    unchanged rows keep the time they were written."""
    first = clock().isoformat()
    await h.poll([account("A"), account("B"), account("C")])
    clock.advance(30)
    second = clock().isoformat()

    outcome = await h.poll([account("A"), account("B", "4000.00"), account("D")])

    assert outcome.changed == 3
    assert await sqlite_query(
        h.store, "SELECT account_number, observed_at FROM accounts ORDER BY account_number"
    ) == [("A", first), ("B", second), ("D", second)]
    assert await sqlite_query(h.store, "SELECT polls, account_count FROM sources") == [(2, 3)]


# --------------------------------------------------------------------------- bad data


async def test_a_skipped_record_keeps_its_snapshot_and_alerts_and_is_warned_once(
    h: Harness, clock: ManualClock, tmp_path: Path
) -> None:
    """An unusable record leaves its account as it was (row, firing alert, no resolve) and is
    warned about once while the problem stays the same, again when it changes."""
    await h.poll([account("A", "500.00"), account("B")])
    row_before = await sqlite_query(h.store, "SELECT * FROM accounts WHERE account_number='A'")
    bad = {**account("A"), "cash": "lots"}
    worse = {**account("A"), "cash": True}

    with capture_logs() as logs:
        for body in ([bad, account("B")], [bad, account("B")], [bad, account("B")]):
            clock.advance(30)
            outcome = await h.poll(body)
            assert outcome.ok
        clock.advance(30)
        await h.poll([worse, account("B")])

    skipped = warnings(logs, "record_skipped")
    assert [(e["account"], e["field"]) for e in skipped] == [("A", "cash"), ("A", "cash")]
    assert "got string" in skipped[0]["problem"]
    assert "got boolean" in skipped[1]["problem"]
    assert (
        await sqlite_query(h.store, "SELECT * FROM accounts WHERE account_number='A'") == row_before
    )
    assert await h.outbox() == [("low-cash", "firing", "ops", "A")]
    assert h.pipeline.firing == 1

    clock.advance(30)
    await h.poll([account("A", "1500.00"), account("B")])
    assert (await h.outbox())[-1] == ("low-cash", "resolved", "ops", "A")


async def test_a_skipped_record_is_not_deleted(h: Harness, clock: ManualClock) -> None:
    """An account whose record is unusable is not taken for removed."""
    await h.poll([account("A"), account("B")])
    clock.advance(30)
    outcome = await h.poll([{**account("A"), "daytrades_count": -1}, account("B")])
    assert outcome.changed == 0
    assert await sqlite_query(h.store, "SELECT account_number FROM accounts ORDER BY 1") == [
        ("A",),
        ("B",),
    ]


async def test_a_duplicate_record_does_not_hide_the_account(h: Harness, clock: ManualClock) -> None:
    """When an account number appears twice the first record wins, in memory and on disk
    alike: rules see it, and a restarted pipeline finds the same snapshot."""
    await h.poll([account("A", "500.00")])
    clock.advance(30)
    with capture_logs() as logs:
        await h.poll([account("A", "1500.00"), account("A", "100.00")])
    assert [e["problem"] for e in warnings(logs, "record_skipped")] == [
        "record 1 (A): duplicate account_number; record skipped"
    ]
    assert (await h.outbox())[-1] == ("low-cash", "resolved", "ops", "A")

    restarted = h.new_pipeline()
    await restarted.load()
    clock.advance(30)
    h.fetcher.push([account("A", "1500.00")])
    outcome = await restarted.poll()
    assert (outcome.changed, outcome.notifications) == (0, 0)


async def test_an_unknown_enum_value_is_kept_and_warned_once(
    h: Harness, clock: ManualClock
) -> None:
    """A margin_type we do not know is data, not an error: it is stored, alerted on as a
    change, and warned about once however many accounts and polls carry it."""
    await h.poll([account("A"), account("B")])
    with capture_logs() as logs:
        for _ in range(3):
            clock.advance(30)
            await h.poll(
                [account("A", margin_type="portfolio"), account("B", margin_type="portfolio")]
            )
    [warned] = warnings(logs, "unknown_value")
    assert (warned["field"], warned["problem"]) == (
        "margin_type",
        "margin_type: unknown value 'portfolio'",
    )
    assert [r[:3] for r in await h.outbox()] == [("margin", "firing", "audit")] * 2
    assert await sqlite_query(
        h.store, "SELECT count(*) FROM accounts WHERE record LIKE '%portfolio%'"
    ) == [(2,)]


# --------------------------------------------------------------------------- failures


async def test_a_failed_poll_never_raises_and_records_the_error(h: Harness) -> None:
    """A FetchError or ParseError is an unsuccessful outcome, written to the store."""
    outcome = await h.poll(FetchError("HTTP 500 (api_error: internal server error)", status=500))
    assert (outcome.ok, outcome.error) == (False, "HTTP 500 (api_error: internal server error)")
    outcome = await h.poll(b"<html>")
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("response is not JSON")
    assert await sqlite_query(h.store, "SELECT failures, polls, last_result FROM sources") == [
        (2, 2, "failed")
    ]
    assert (await h.store.load_source(SOURCE)).accounts is None


async def test_source_down_fires_after_down_after_failures_and_resolves_on_success(
    h: Harness, clock: ManualClock
) -> None:
    """``down_after`` failed polls in a row fire source_down to every sink, once; the next
    successful poll resolves it with the same fingerprint."""
    await h.poll([account("A")])
    for _ in range(4):
        clock.advance(30)
        await h.poll(ParseError("response is not a JSON array of accounts (got object)"))
    clock.advance(30)
    await h.poll([account("A")])

    assert await h.outbox() == [
        ("source_down", "firing", "ops", ""),
        ("source_down", "firing", "audit", ""),
        ("source_down", "resolved", "ops", ""),
        ("source_down", "resolved", "audit", ""),
    ]
    rows = await sqlite_query(
        h.store, "SELECT DISTINCT json_extract(payload, '$.fingerprint') FROM outbox"
    )
    assert len(rows) == 1
    assert h.pipeline.firing == 0
    assert (await h.store.load_source(SOURCE)).health.down is None


async def test_a_failure_before_any_success_can_still_mark_the_source_down(
    h: Harness, clock: ManualClock
) -> None:
    """source_down does not need a baseline: a source that never answered is down too."""
    for _ in range(2):
        await h.poll(FetchError("cannot connect to 127.0.0.1:9: Connection refused"))
        clock.advance(30)
    assert [r[:2] for r in await h.outbox()] == [("source_down", "firing")] * 2


async def test_retry_after_defers_scheduled_polls(h: Harness, clock: ManualClock) -> None:
    """After a 429 with Retry-After, job() skips polls until that time has passed."""
    h.fetcher.push(FetchError("HTTP 429", status=429, retry_after=90), [account("A")])
    await h.pipeline.job()
    assert h.fetcher.calls == 1
    clock.advance(30)
    await h.pipeline.job()
    clock.advance(30)
    await h.pipeline.job()
    assert h.fetcher.calls == 1
    clock.advance(30)
    await h.pipeline.job()
    assert h.fetcher.calls == 2
    assert h.pipeline.last is not None
    assert h.pipeline.last.ok


async def test_job_logs_an_unexpected_error_and_returns(h: Harness) -> None:
    """job() is the scheduled job's one broad except: a bug is logged, never raised."""
    with capture_logs() as logs:
        await h.pipeline.job()  # the fake fetcher has nothing queued: LookupError
    [crashed] = [e for e in logs if e["event"] == "poll_crashed"]
    assert crashed["log_level"] == "error"
    assert "no answer queued" in crashed["error"]


# --------------------------------------------------------------------------- restarts


async def test_a_restarted_pipeline_does_not_refire_a_firing_alert(
    h: Harness, clock: ManualClock
) -> None:
    """A new pipeline on the same store picks up the baseline and the firing alerts: the same
    accounts queue nothing, and the alert resolves with its original fingerprint."""
    await h.poll([account("A", "500.00")])
    restarted = h.new_pipeline()
    await restarted.load()
    assert restarted.firing == 1

    clock.advance(30)
    h.fetcher.push([account("A", "500.00")])
    outcome = await restarted.poll()
    assert outcome.notifications == 0
    clock.advance(30)
    h.fetcher.push([account("A", "2000.00")])
    await restarted.poll()

    assert await h.outbox() == [
        ("low-cash", "firing", "ops", "A"),
        ("low-cash", "resolved", "ops", "A"),
    ]
    rows = await sqlite_query(
        h.store, "SELECT DISTINCT json_extract(payload, '$.fingerprint') FROM outbox"
    )
    assert len(rows) == 1


async def test_replaying_a_poll_yields_the_same_notification_ids(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A poll replayed from the same state (a crash before its commit) at the same time queues
    notifications with the same ids, so receivers can deduplicate."""
    config = make_config(tmp_path)
    crashed_path = tmp_path / "before-commit.db"
    change = [account("A", "500.00", margin_type="daytrader", restriction="restricted")]

    store = await open_store(config.state.path)
    await Harness(config, store, clock).poll([account("A")])
    await store.close()
    shutil.copyfile(config.state.path, crashed_path)  # the state as the crash left it
    clock.advance(30)

    ids = []
    for path in (config.state.path, crashed_path):
        store = await open_store(path)
        try:
            harness = Harness(config, store, clock)
            await harness.pipeline.load()
            await harness.poll(change)
            ids.append(await sqlite_query(store, "SELECT id, sink FROM outbox ORDER BY seq"))
        finally:
            await store.close()

    assert len(ids[0]) == 4
    assert ids[0] == ids[1]


def test_notification_ids_are_stable_and_distinct() -> None:
    """The id depends on the alert's fingerprint, status and time, nothing else."""
    alert = Alert(
        status=Status.FIRING,
        fingerprint="fp",
        rule="r",
        type="threshold",
        severity=Severity.WARNING,
        account_number="A",
        field="cash",
        previous=None,
        current=Decimal(1),
        summary="s",
        observed_at=ManualClock()(),
    )
    same = notification_id(alert)
    assert same == notification_id(alert)
    assert len(same) == 32
    assert notification_id(replace(alert, status=Status.RESOLVED)) != same
    assert notification_id(replace(alert, fingerprint="other")) != same
    assert notification_id(replace(alert, summary="different words")) == same
