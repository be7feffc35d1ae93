"""What a source's pipeline does around the pure step: fetch and parse, commit what the step
wrote to a real store (a restart continues from it), log, count, defer.

The decisions (which alerts fire, wait, repeat or resolve, and to which sinks) are
:func:`monitor.cycle.step`'s, tested on the value it returns in ``test_cycle.py`` and
``test_cycle_lifecycle.py``. Here: a real store in tmp_path, a FakeFetcher and a ManualClock;
a "restart" is a new :class:`SourcePipeline` on the same database, loaded with ``load()``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import MutableMapping, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cycle_helpers import FALL, LOW_CASH, SINKS, SOURCE
from store_helpers import sqlite_limit_pages, sqlite_query
from structlog.testing import capture_logs

from monitor import pipeline as pipeline_module
from monitor.config import Config, config_from_dict
from monitor.cycle import PollWrite
from monitor.errors import FetchError
from monitor.pipeline import PollOutcome, SourcePipeline
from monitor.store import SqliteStore, Store, open_store
from monitor.testing import EPOCH, FakeFetcher, ManualClock

RULES: list[dict[str, Any]] = [
    LOW_CASH,
    {"type": "restriction_change", "name": "restricted"},
    {"type": "change", "name": "margin", "field": "margin_type", "sinks": ["audit"]},
]


def make_config(
    tmp_path: Path,
    rules: Sequence[dict[str, Any]] = RULES,
    sinks: Sequence[dict[str, Any]] = SINKS,
    *,
    down_after: int = 2,
    **sections: Any,
) -> Config:
    return config_from_dict(
        {
            "api": {
                "url": "http://127.0.0.1:9/accounts",
                "token": "t0ken",
                "down_after": down_after,
            },
            "state": {"path": str(tmp_path / "state.db")},
            "sinks": list(sinks),
            "rules": list(rules),
            **sections,
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
    """A pipeline on a real store, with a fake fetcher and a manual clock; it can be restarted
    (a new pipeline on the same store and clock) and reloaded."""

    def __init__(self, config: Config, store: Store, clock: ManualClock | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock if clock is not None else ManualClock()
        self.fetcher = FakeFetcher()
        self.queued = 0
        self.outcomes: list[PollOutcome] = []
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
            on_poll=self.outcomes.append,
            down_after=self.down_after,
        )

    @property
    def down_after(self) -> int:
        return self.config.all_sources()[0].config.down_after

    def _on_queued(self) -> None:
        self.queued += 1

    async def restart(self) -> None:
        self.pipeline = self.new_pipeline()
        await self.pipeline.load()

    async def reload(self, config: Config) -> list[str]:
        self.config = config
        return await self.pipeline.reconfigure(config, config.rules, self.fetcher, self.down_after)

    async def poll(self, *answers: Any) -> PollOutcome:
        """A poll of the next answer (the last one again when none is given)."""
        self.fetcher.push(*answers)
        return await self.pipeline.poll()

    async def outbox(self) -> list[tuple[str, str, str, str]]:
        """``(rule, status, sink, account)`` of every queued row, in order."""
        return [(r, s, sink, doc["account_number"] or "") for r, s, sink, doc in await self._rows()]

    async def summaries(self) -> list[tuple[str, str, str, str]]:
        """``(rule, status, sink, summary)`` of every queued row, in order."""
        return [(r, s, sink, doc["summary"]) for r, s, sink, doc in await self._rows()]

    async def _rows(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        rows = await sqlite_query(self.store, "SELECT sink, payload FROM outbox ORDER BY seq")
        docs = [(sink, json.loads(payload)) for sink, payload in rows]
        return [(doc["rule"], doc["status"], sink, doc) for sink, doc in docs]

    async def alerts(self) -> list[tuple[str, str, str, str | None]]:
        """``(rule, account, state, notified_at)`` of every rule alert."""
        return await sqlite_query(
            self.store,
            "SELECT rule, account_number, state, notified_at FROM alerts"
            " WHERE account_number != '' ORDER BY rule, account_number",
        )

    async def history(self) -> list[tuple[str, str, str, str]]:
        return await sqlite_query(
            self.store,
            "SELECT account_number, field, observed_at, value FROM history"
            " ORDER BY account_number, field, observed_at",
        )


async def started(config: Config, store: Store) -> Harness:
    harness = Harness(config, store)
    await harness.pipeline.load()
    return harness


@pytest.fixture
async def h(tmp_path: Path, store: Store) -> Harness:
    return await started(make_config(tmp_path), store)


def events(
    logs: Sequence[MutableMapping[str, Any]], event: str, level: str = "warning"
) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and e["log_level"] == level]


# --------------------------------------------------------------------------- commit, count, log


async def test_the_baseline_poll_is_committed_counted_and_logged(h: Harness) -> None:
    """The first poll's write reaches the store (every account row, the queued notification),
    the outcome counts it (to ``on_poll`` too), ``baseline_recorded`` and ``alert_firing`` log
    it, and ``on_queued`` is told once."""
    with capture_logs() as logs:
        outcome = await h.poll([account("A", "500.00"), account("B", restriction="restricted")])

    assert (outcome.ok, outcome.accounts, outcome.changed, outcome.notifications) == (
        True,
        2,
        2,
        1,
    )
    assert h.outcomes == [outcome]
    assert await sqlite_query(h.store, "SELECT account_number FROM accounts ORDER BY 1") == [
        ("A",),
        ("B",),
    ]
    assert await h.outbox() == [("low-cash", "firing", "ops", "A")]
    assert h.queued == 1
    assert h.pipeline.firing == 1

    [baseline] = events(logs, "baseline_recorded", "info")
    assert (baseline["accounts"], baseline["changed"], baseline["notifications"]) == (2, 2, 1)
    [fired] = events(logs, "alert_firing", "info")
    assert (fired["rule"], fired["account"], fired["sinks"]) == ("low-cash", "A", ["ops"])
    assert "held_by" not in fired


async def test_a_quiet_poll_is_a_debug_line_and_calls_no_on_queued(h: Harness) -> None:
    """A poll that changed nothing writes no account row and queues nothing: ``on_queued`` is
    not called and ``poll_ok`` is logged at debug; a poll that changed something at info."""
    body = [account("A"), account("B")]
    await h.poll(body)
    with capture_logs() as logs:
        h.clock.advance(30)
        outcome = await h.poll(body)
        h.clock.advance(30)
        await h.poll([account("A", "4000.00"), account("B")])

    assert (outcome.changed, outcome.notifications) == (0, 0)
    assert await h.outbox() == []
    assert h.queued == 0
    assert [(e["log_level"], e["changed"]) for e in logs if e["event"] == "poll_ok"] == [
        ("debug", 0),
        ("info", 1),
    ]


async def test_held_alerts_are_logged_with_their_mute_window(tmp_path: Path, store: Store) -> None:
    """A notification a mute window holds goes to the ``held`` table, not the outbox; its
    ``alert_*`` line names the window (after the queued ones), and ``on_queued`` is told only
    when something was queued."""
    mute = [{"name": "mornings", "start": "07:00", "end": "09:00", "rules": ["low-cash"]}]
    h = await started(make_config(tmp_path, mute=mute), store)  # EPOCH is 08:00 in New York

    with capture_logs() as logs:
        outcome = await h.poll([account("A", "500.00")])
    assert outcome.notifications == 1
    assert h.queued == 0
    assert await h.outbox() == []
    assert await sqlite_query(store, "SELECT sink, mute FROM held") == [("ops", "mornings")]
    [held] = events(logs, "alert_firing", "info")
    assert (held["rule"], held["held_by"]) == ("low-cash", "mornings")

    with capture_logs() as logs:
        h.clock.advance(30)
        await h.poll([account("A", "400.00", restriction="restricted")])
    assert h.queued == 1
    assert [(e["rule"], e.get("held_by")) for e in events(logs, "alert_firing", "info")] == [
        ("restricted", None)
    ]


async def test_only_changed_account_rows_are_written(h: Harness) -> None:
    """A poll rewrites the rows of changed accounts, adds new ones and deletes removed ones;
    unchanged rows keep the time they were written."""
    first = h.clock().isoformat()
    await h.poll([account("A"), account("B"), account("C")])
    h.clock.advance(30)
    second = h.clock().isoformat()

    outcome = await h.poll([account("A"), account("B", "4000.00"), account("D")])

    assert outcome.changed == 3
    assert await sqlite_query(
        h.store, "SELECT account_number, observed_at FROM accounts ORDER BY account_number"
    ) == [("A", first), ("B", second), ("D", second)]
    assert await sqlite_query(h.store, "SELECT polls, account_count FROM sources") == [(2, 3)]


# --------------------------------------------------------------------------- bad data


async def test_a_skipped_record_is_warned_once_and_its_row_kept(h: Harness) -> None:
    """An unusable record leaves its account's row as it was and is warned about once while
    the problem stays the same, again when it changes."""
    await h.poll([account("A", "500.00"), account("B")])
    row_before = await sqlite_query(h.store, "SELECT * FROM accounts WHERE account_number='A'")
    bad = {**account("A"), "cash": "lots"}
    worse = {**account("A"), "cash": True}

    with capture_logs() as logs:
        for body in ([bad, account("B")], [bad, account("B")], [bad, account("B")]):
            h.clock.advance(30)
            outcome = await h.poll(body)
            assert outcome.ok
        h.clock.advance(30)
        await h.poll([worse, account("B")])

    skipped = events(logs, "record_skipped")
    assert [(e["account"], e["field"]) for e in skipped] == [("A", "cash"), ("A", "cash")]
    assert "got string" in skipped[0]["problem"]
    assert "got boolean" in skipped[1]["problem"]
    assert (
        await sqlite_query(h.store, "SELECT * FROM accounts WHERE account_number='A'") == row_before
    )
    assert h.pipeline.firing == 1


async def test_a_duplicate_record_does_not_hide_the_account(h: Harness) -> None:
    """When an account number appears twice the first record wins, in memory and on disk
    alike: the duplicate is warned about, and a restarted pipeline finds the same snapshot."""
    await h.poll([account("A", "500.00")])
    h.clock.advance(30)
    with capture_logs() as logs:
        await h.poll([account("A", "1500.00"), account("A", "100.00")])
    assert [e["problem"] for e in events(logs, "record_skipped")] == [
        "record 1 (A): duplicate account_number; record skipped"
    ]
    assert (await h.outbox())[-1] == ("low-cash", "resolved", "ops", "A")

    await h.restart()
    h.clock.advance(30)
    outcome = await h.poll([account("A", "1500.00")])
    assert (outcome.changed, outcome.notifications) == (0, 0)


async def test_an_unknown_enum_value_is_stored_and_warned_once(h: Harness) -> None:
    """A margin_type we do not know is data, not an error: it is stored, and warned about once
    however many accounts and polls carry it."""
    await h.poll([account("A"), account("B")])
    with capture_logs() as logs:
        for _ in range(3):
            h.clock.advance(30)
            await h.poll(
                [account("A", margin_type="portfolio"), account("B", margin_type="portfolio")]
            )
    [warned] = events(logs, "unknown_value")
    assert (warned["field"], warned["problem"]) == (
        "margin_type",
        "margin_type: unknown value 'portfolio'",
    )
    assert await sqlite_query(
        h.store, "SELECT count(*) FROM accounts WHERE record LIKE '%portfolio%'"
    ) == [(2,)]


async def test_an_expression_problem_is_logged_once_per_kind(tmp_path: Path, store: Store) -> None:
    """An expression that cannot be evaluated on many accounts (``previous`` unguarded on the
    first poll) is one ``rule_problem`` line naming how many accounts and one of them, not one
    line per account, and not again at the next poll."""
    rule = {"type": "expression", "name": "drop", "when": "previous.cash - cash > 1000.0"}
    h = await started(make_config(tmp_path, [rule]), store)
    accounts = [account(f"{n}@vision") for n in range(3)]
    with capture_logs() as logs:
        await h.poll(accounts)
        h.clock.advance(30)
        await h.poll([account(f"{n}@vision", "4000.00") for n in range(3)])
    problems = [e for e in logs if e["event"] == "rule_problem"]
    assert len(problems) == 1
    assert problems[0]["rule"] == "drop"
    assert problems[0]["accounts"] == 3
    assert problems[0]["example"] == "0@vision"
    assert "previous.cash" in problems[0]["problem"]


async def test_rule_problems_past_the_remembered_are_suppressed_once(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each kind of rule problem is remembered to be logged once; past ``PROBLEMS_REMEMBERED``
    kinds the others are not logged, and that is said once."""
    monkeypatch.setattr(pipeline_module, "PROBLEMS_REMEMBERED", 1)
    rules = [
        {"type": "expression", "name": name, "when": "extra > 1", "fields": ["extra"]}
        for name in ("one", "two", "three")
    ]
    h = await started(make_config(tmp_path, rules), store)
    with capture_logs() as logs:
        await h.poll([account("A")])
        h.clock.advance(30)
        await h.poll([account("A", "4000.00")])
    assert [e["rule"] for e in events(logs, "rule_problem")] == ["one"]
    assert len(events(logs, "rule_problems_suppressed")) == 1


# --------------------------------------------------------------------------- failures


async def test_a_failed_poll_never_raises_and_records_the_error(h: Harness) -> None:
    """A FetchError or ParseError is an unsuccessful outcome, written to the store and logged
    as ``poll_failed`` with the failures so far; at ``down_after`` the store has the source
    down."""
    with capture_logs() as logs:
        outcome = await h.poll(
            FetchError("HTTP 500 (api_error: internal server error)", status=500)
        )
        assert (outcome.ok, outcome.error) == (False, "HTTP 500 (api_error: internal server error)")
        outcome = await h.poll(b"<html>")
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("response is not JSON")
    assert await sqlite_query(h.store, "SELECT failures, polls, last_result FROM sources") == [
        (2, 2, "failed")
    ]
    stored = await h.store.load_source(SOURCE)
    assert stored.accounts is None
    assert stored.health.down is not None

    assert [(e["failures"], e["retry_after"]) for e in events(logs, "poll_failed")] == [
        (1, None),
        (2, None),
    ]
    assert [a.rule for a in h.pipeline.firing_alerts()] == ["source_down"]
    assert outcome.notifications == 1
    assert h.queued == 1


async def test_retry_after_defers_scheduled_polls(h: Harness) -> None:
    """After a 429 with Retry-After, job() skips polls until that time has passed."""
    h.fetcher.push(FetchError("HTTP 429", status=429, retry_after=90), [account("A")])
    with capture_logs() as logs:
        await h.pipeline.job()
        assert h.fetcher.calls == 1
        h.clock.advance(30)
        await h.pipeline.job()
        h.clock.advance(30)
        await h.pipeline.job()
    assert h.fetcher.calls == 1
    [failed] = events(logs, "poll_failed")
    assert failed["retry_after"] == 90
    until = (EPOCH + timedelta(seconds=90)).isoformat()
    assert [e["until"] for e in events(logs, "poll_deferred", "info")] == [until, until]

    h.clock.advance(30)
    await h.pipeline.job()
    assert h.fetcher.calls == 2
    assert h.pipeline.last is not None
    assert h.pipeline.last.ok


async def test_an_unexpected_error_is_a_failed_poll_counted_toward_source_down(
    h: Harness,
) -> None:
    """An exception nobody expected out of a fetch (a bug) ends the poll as a failed one: it
    is the outcome's error (for metrics and readiness), counts toward ``source_down`` like a
    fetch error, and is one ``poll_failed`` line at error level per poll, with the traceback
    only while it is new."""
    with capture_logs() as logs:
        await h.pipeline.job()  # the fake fetcher has nothing queued: LookupError
        h.clock.advance(30)
        await h.pipeline.job()
    assert [(o.ok, o.error) for o in h.outcomes] == [
        (False, "unexpected error: LookupError: FakeFetcher: no answer queued")
    ] * 2
    assert await sqlite_query(h.store, "SELECT failures, last_result, last_error FROM sources") == [
        (2, "failed", "unexpected error: LookupError: FakeFetcher: no answer queued")
    ]
    assert await h.outbox() == [
        ("source_down", "firing", "ops", ""),
        ("source_down", "firing", "audit", ""),
    ]
    assert not [e for e in logs if e["event"] == "poll_crashed"]
    failed = events(logs, "poll_failed", "error")
    assert [e["failures"] for e in failed] == [1, 2]
    assert [isinstance(e.get("exc_info"), LookupError) for e in failed] == [True, False]


async def test_an_error_out_of_the_step_is_a_failed_poll(tmp_path: Path, store: Store) -> None:
    """A rule the step cannot evaluate (a bug: here a threshold rule handed to the change
    evaluator) fails the poll with that cause instead of escaping it; the state is kept."""
    config = make_config(tmp_path, [LOW_CASH])
    broken = config.rules[0].model_copy(update={"type": "change"})
    h = Harness(config, store)
    h.pipeline.rules = (broken,)
    await h.pipeline.load()

    outcome = await h.poll([account("A", "500.00")])

    assert not outcome.ok
    assert outcome.error == (
        "unexpected error: TypeError: the ChangeRuleConfig evaluator got a change rule"
    )
    assert h.pipeline.state.accounts is None
    assert await sqlite_query(h.store, "SELECT failures FROM sources") == [(1,)]


async def test_a_record_nested_too_deeply_is_skipped_and_the_others_watched(h: Harness) -> None:
    """One record carrying an unknown field nested hundreds of levels deep (more than the store
    writes) is a skipped record of its own: every other account is watched and written, and
    the deep one keeps its last snapshot."""
    await h.poll([account("A"), account("B")])
    deep = "[" * 300 + "1" + "]" * 300
    body = (
        f'[{{"account_number":"A","margin_type":"cash","restriction":"none","cash":5000.00,'
        f'"extra":{deep}}},'
        '{"account_number":"B","margin_type":"cash","restriction":"restricted","cash":500.00}]'
    )
    h.clock.advance(30)
    with capture_logs() as logs:
        outcome = await h.poll(body.encode())

    assert outcome.ok
    assert await h.outbox() == [
        ("low-cash", "firing", "ops", "B"),
        ("restricted", "firing", "ops", "B"),
        ("restricted", "firing", "audit", "B"),
    ]
    [skipped] = events(logs, "record_skipped")
    assert (skipped["account"], skipped["field"]) == ("A", "extra")
    assert "nested deeper than 64 levels" in skipped["problem"]
    stored = await h.store.load_source(SOURCE)
    assert stored.accounts is not None
    assert sorted(stored.accounts) == ["A", "B"]
    assert "extra" not in stored.accounts["A"].record


class WriteBug(SqliteStore):
    """A real store whose commit raises ``bug`` (not a StoreError: a bug in writing) for a
    poll that writes accounts, or for every poll when ``always``."""

    bug = ValueError("cannot encode the record")
    always = False

    async def commit(self, write: PollWrite) -> None:
        if write.upserts or self.always:
            raise self.bug
        await super().commit(write)


@pytest.mark.parametrize("always", [False, True], ids=["the-failed-poll-written", "nothing"])
async def test_a_bug_in_writing_a_poll_makes_it_a_failed_poll(tmp_path: Path, always: bool) -> None:
    """An exception out of the store's commit that is no StoreError (a bug) does not escape:
    the poll is written again as a failed one, counted toward ``source_down`` with the bug as
    its cause; when even that cannot be written it is counted in memory, and the state stays
    what was committed."""
    store = await WriteBug.open(tmp_path / "state.db")
    assert isinstance(store, WriteBug)
    store.always = always
    try:
        h = await started(make_config(tmp_path), store)
        with capture_logs() as logs:
            outcome = await h.poll([account("A")])
        failures = await sqlite_query(store, "SELECT failures, last_error FROM sources")
    finally:
        await store.close()

    assert not outcome.ok
    assert h.pipeline.state.accounts is None
    if always:
        assert outcome.error == "state not written: cannot encode the record"
        assert failures == []
        [reported] = events(logs, "store_write_failed", "error")
        assert reported["error"] == "cannot encode the record"
    else:
        assert outcome.error == "unexpected error: ValueError: cannot encode the record"
        assert failures == [(1, outcome.error)]
        [failed] = events(logs, "poll_failed", "error")
        assert failed["exc_info"] is WriteBug.bug


async def test_job_logs_what_escapes_a_poll_and_returns(h: Harness) -> None:
    """job() is the scheduled job's one broad except: what still escapes a poll (here the
    ``on_poll`` callback's own error) is logged as ``poll_crashed``, never raised."""

    def broken(outcome: PollOutcome) -> None:
        raise RuntimeError("on_poll is broken")

    h.pipeline.on_poll = broken
    h.fetcher.push([account("A")])
    with capture_logs() as logs:
        await h.pipeline.job()
    [crashed] = [e for e in logs if e["event"] == "poll_crashed"]
    assert crashed["log_level"] == "error"
    assert crashed["error"] == "on_poll is broken"


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("interval", "asked", "used"),
    [
        pytest.param(None, 90.0, 90.0, id="short-honoured"),
        pytest.param(None, 365 * 86400.0, 300.0, id="a-year-cut-to-5m"),
        pytest.param(None, 1e300, 300.0, id="past-timedelta-cut-to-5m"),
        pytest.param("10m", 3600.0, 600.0, id="cut-to-a-longer-interval"),
    ],
)
async def test_a_long_retry_after_is_cut_to_the_bound(
    tmp_path: Path, store: Store, interval: str | None, asked: float, used: float
) -> None:
    """A ``Retry-After`` is honoured up to the larger of the source's interval and 5 minutes;
    a longer one is cut to that and logged as ``retry_after_capped`` (asked and used), so a
    source that keeps asking is polled, fails, and reaches ``source_down``."""
    api = {"interval": interval} if interval is not None else {}
    config = make_config(tmp_path)
    if interval is not None:
        config = config_from_dict(
            {
                "sources": [
                    {
                        "name": SOURCE,
                        "url": "http://127.0.0.1:9/accounts",
                        "token": "t0ken",
                        "down_after": 2,
                        **api,
                    }
                ],
                "state": {"path": str(tmp_path / "state.db")},
                "sinks": SINKS,
                "rules": RULES,
            },
            base_dir=tmp_path,
        )
    h = await started(config, store)
    h.fetcher.push(FetchError("HTTP 429", status=429, retry_after=asked))
    with capture_logs() as logs:
        await h.pipeline.job()
        h.clock.advance(used - 1)
        await h.pipeline.job()
        h.clock.advance(1)
        await h.pipeline.job()

    assert h.fetcher.calls == 2
    assert [e["retry_after"] for e in events(logs, "poll_failed")] == [used, used]
    capped = events(logs, "retry_after_capped")
    assert [(e["asked"], e["used"]) for e in capped] == (
        [] if asked == used else [(asked, used)] * 2
    )
    assert h.pipeline.firing_alerts()[0].rule == "source_down"


# --------------------------------------------------------------------------- a full disk


async def test_a_full_disk_is_a_failed_poll_reported_once_and_recovered_from(
    h: Harness,
) -> None:
    """When SQLite cannot grow the database (a real SQLITE_FULL: ``max_page_count`` on the
    store's connection), a poll fails with that cause: counted (its outcome, for metrics and
    readiness), logged once as ``store_write_failed`` (no traceback), the state left as it was
    committed. Once there is room, the next poll writes everything the failed ones did not:
    the changed accounts and their notifications."""
    await h.poll([account("A"), account("B")])
    await sqlite_limit_pages(h.store, grow_by=0)
    big = [account(n, "500.00", notes="x" * 2000) for n in "ABCDEFGH"]

    with capture_logs() as logs:
        for _ in range(3):
            h.clock.advance(30)
            outcome = await h.poll(big)
            assert not outcome.ok
    assert outcome.error is not None
    assert "database or disk is full" in outcome.error
    [reported] = events(logs, "store_write_failed", "error")
    assert "database or disk is full" in reported["error"]
    assert "exc_info" not in reported
    assert not [e for e in logs if e["event"] in ("poll_crashed", "poll_failed")]
    assert [o.ok for o in h.outcomes] == [True, False, False, False]
    assert h.pipeline.last_success == EPOCH
    assert h.pipeline.state.accounts is not None
    assert sorted(h.pipeline.state.accounts) == ["A", "B"]
    assert await h.outbox() == []

    await sqlite_limit_pages(h.store, grow_by=None)
    h.clock.advance(30)
    with capture_logs() as logs:
        outcome = await h.poll(big)
    assert outcome.ok
    assert [e["polls_not_written"] for e in events(logs, "store_write_recovered", "info")] == [3]
    assert await sqlite_query(h.store, "SELECT count(*) FROM accounts") == [(8,)]
    assert sorted(r for r, s, sink, n in await h.outbox() if sink == "ops") == ["low-cash"] * 8


# --------------------------------------------------------------------------- restarts


async def test_a_restarted_pipeline_does_not_refire_a_firing_alert(h: Harness) -> None:
    """A new pipeline on the same store picks up the baseline and the firing alerts: the same
    accounts queue nothing, and the alert resolves with its original fingerprint."""
    await h.poll([account("A", "500.00")])
    await h.restart()
    assert h.pipeline.firing == 1

    h.clock.advance(30)
    outcome = await h.poll([account("A", "500.00")])
    assert outcome.notifications == 0
    h.clock.advance(30)
    await h.poll([account("A", "2000.00")])

    assert await h.outbox() == [
        ("low-cash", "firing", "ops", "A"),
        ("low-cash", "resolved", "ops", "A"),
    ]
    rows = await sqlite_query(
        h.store, "SELECT DISTINCT json_extract(payload, '$.fingerprint') FROM outbox"
    )
    assert len(rows) == 1


async def test_replaying_a_poll_yields_the_same_notification_ids(tmp_path: Path) -> None:
    """A poll replayed from the same state (a crash before its commit) at the same time queues
    notifications with the same ids, so receivers can deduplicate."""
    config = make_config(tmp_path)
    clock = ManualClock()
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


async def test_a_pending_alert_survives_a_restart(tmp_path: Path, store: Store) -> None:
    """``for = "2m"``: the first poll records a pending alert; after a restart and two more
    minutes, a poll of the same (unchanged) record fires it exactly once."""
    h = await started(make_config(tmp_path, [{**LOW_CASH, "for": "2m"}]), store)
    await h.poll([account("A1", "500.00")])
    assert await h.alerts() == [("low-cash", "A1", "pending", None)]
    assert await h.outbox() == []

    await h.restart()
    assert [(a.rule, a.account_number) for a in h.pipeline.pending_alerts()] == [("low-cash", "A1")]
    h.clock.advance(timedelta(minutes=1))
    await h.poll()
    assert await h.outbox() == []
    h.clock.advance(timedelta(minutes=1))
    await h.poll()
    assert [(r, s, sink) for r, s, sink, _ in await h.outbox()] == [("low-cash", "firing", "ops")]
    [(_, _, state, _)] = await h.alerts()
    assert state == "firing"
    assert h.pipeline.pending_alerts() == []

    h.clock.advance(timedelta(minutes=1))
    await h.poll()
    assert len(await h.outbox()) == 1


async def test_repeat_survives_a_restart(tmp_path: Path, store: Store) -> None:
    """``repeat = "1h"``: the time of the last firing notification is stored, so a restart
    half an hour after a repeat does not notify again before the next hour is up."""
    h = await started(make_config(tmp_path, [{**LOW_CASH, "repeat": "1h"}]), store)
    await h.poll([account("A1", "500.00")])
    h.clock.advance(timedelta(hours=1))
    await h.poll()
    assert [s for _, s, _, _ in await h.outbox()] == ["firing", "firing"]
    [(_, _, _, notified)] = await h.alerts()
    assert notified == h.clock().isoformat()

    await h.restart()
    h.clock.advance(timedelta(minutes=30))
    await h.poll()
    assert len(await h.outbox()) == 2
    h.clock.advance(timedelta(minutes=30))
    await h.poll()
    assert [s for _, s, _, _ in await h.outbox()] == ["firing"] * 3


async def test_the_history_of_a_windowed_delta_survives_a_restart(
    tmp_path: Path, store: Store
) -> None:
    """The values seen inside the window are stored: after a restart a fall that began before
    it still counts."""
    h = await started(make_config(tmp_path, [FALL]), store)
    await h.poll([account("A1", "5000.00")])
    h.clock.advance(timedelta(minutes=10))
    await h.poll([account("A1", "4500.00")])
    assert [(n, f, v) for n, f, _, v in await h.history()] == [
        ("A1", "cash", "5000.00"),
        ("A1", "cash", "4500.00"),
    ]
    assert await h.outbox() == []

    await h.restart()
    h.clock.advance(timedelta(minutes=10))
    await h.poll([account("A1", "3900.00")])

    [(rule, status, _, summary)] = await h.summaries()
    assert (rule, status) == ("cash-fall", "firing")
    assert "from 5000.00 to 3900.00" in summary


async def test_the_pruned_history_is_what_a_restart_loads(tmp_path: Path, store: Store) -> None:
    """The values the window left behind are deleted from the store, the base it is measured
    from is kept, and that is what a restarted pipeline works from."""
    h = await started(make_config(tmp_path, [FALL]), store)
    await h.poll([account("A1", "5000.00")])
    h.clock.advance(timedelta(minutes=10))
    await h.poll([account("A1", "4500.00")])
    h.clock.advance(timedelta(minutes=10))
    await h.poll([account("A1", "3900.00")])
    assert len(await h.history()) == 3

    h.clock.advance(timedelta(minutes=50))  # the window starts at the 4500.00
    await h.poll()

    t10 = (EPOCH + timedelta(minutes=10)).isoformat()
    t20 = (EPOCH + timedelta(minutes=20)).isoformat()
    assert await h.history() == [("A1", "cash", t10, "4500.00"), ("A1", "cash", t20, "3900.00")]

    await h.restart()
    assert h.pipeline.state.history == {
        ("A1", "cash"): (
            (EPOCH + timedelta(minutes=10), Decimal("4500.00")),
            (EPOCH + timedelta(minutes=20), Decimal("3900.00")),
        )
    }


async def test_accounts_that_left_are_compared_on_their_return_after_a_restart(
    tmp_path: Path, store: Store
) -> None:
    """An empty response removes every account, but what was last known of each is kept on
    disk: after a restart, an account back with another restriction fires
    ``restriction_change`` (and ``account_added``), one back unchanged only ``account_added``."""
    rules = [*RULES, {"type": "account_added", "name": "added", "sinks": ["audit"]}]
    h = await started(make_config(tmp_path, rules), store)
    await h.poll([account("A"), account("B")])
    h.clock.advance(30)
    outcome = await h.poll([])
    assert (outcome.ok, outcome.accounts, outcome.changed) == (True, 0, 2)
    assert await sqlite_query(h.store, "SELECT count(*) FROM accounts") == [(0,)]

    await h.restart()
    h.clock.advance(30)
    await h.poll([account("A", restriction="restricted"), account("B")])

    assert await h.outbox() == [
        ("restricted", "firing", "ops", "A"),
        ("restricted", "firing", "audit", "A"),
        ("added", "firing", "audit", "A"),
        ("added", "firing", "audit", "B"),
    ]
    assert await sqlite_query(h.store, "SELECT count(*) FROM departed") == [(0,)]


# --------------------------------------------------------------------------- reload


async def test_a_reload_between_polls_ends_a_removed_rules_alerts_at_the_next_poll(
    tmp_path: Path, store: Store
) -> None:
    """``reconfigure`` says which rules' alerts will end and writes nothing; the next poll
    commits their resolved notifications (to the old rule's sinks that still exist) and
    deletes their rows."""
    h = await started(make_config(tmp_path, [{**LOW_CASH, "sinks": ["ops", "audit"]}]), store)
    await h.poll([account("A1", "500.00")])
    assert len(await h.outbox()) == 2

    removed = await h.reload(make_config(tmp_path, [], sinks=[{"type": "log", "name": "ops"}]))
    assert removed == ["low-cash"]
    assert len(await h.outbox()) == 2  # nothing before the next poll
    assert [(r, n, s) for r, n, s, _ in await h.alerts()] == [("low-cash", "A1", "firing")]
    h.clock.advance(timedelta(minutes=1))
    await h.poll()

    assert (await h.summaries())[2:] == [
        (
            "low-cash",
            "resolved",
            "ops",
            "A1: rule low-cash was removed from the configuration",
        )
    ]
    assert await h.alerts() == []
