"""The store's side of digests, on every ``backend``: the one read a digest is built from, and
queueing a digest once per id and sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sinks_helpers import make_notification
from store_helpers import Backend, commit_poll

from monitor.config import DigestConfig
from monitor.cycle import PollRecord
from monitor.digest import Digest, build
from monitor.digest_schedule import digest_id
from monitor.models import Account, Status
from monitor.rules import SourceHealth
from monitor.store import Store

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


def rec(number: str, value: str) -> dict[str, object]:
    return {"account_number": number, "account_value_total": Decimal(value), "cash": Decimal(1)}


async def poll(store: Store, hours: float, *accounts: dict[str, object], **parts: object) -> None:
    at = T0 + timedelta(hours=hours)
    ok = bool(parts.pop("ok", True))
    await commit_poll(
        store,
        "default",
        poll=PollRecord(at, ok=ok, error=None if ok else "HTTP 503"),
        health=SourceHealth(),
        upserts=[Account(str(r["account_number"]), r) for r in accounts],  # type: ignore[arg-type]
        **parts,  # type: ignore[arg-type]
    )


async def test_digest_data_has_the_value_then_new_accounts_alerts_and_failed_polls(
    store: Store,
) -> None:
    await poll(
        store, 0, rec("A", "1000"), series=[("A", "account_value_total", None, Decimal(1000))]
    )
    since = T0 + timedelta(hours=1)
    await poll(store, 2, rec("B", "50"), series=[("B", "account_value_total", None, Decimal(50))])
    await poll(
        store,
        3,
        rec("A", "1100"),
        series=[("A", "account_value_total", Decimal(1000), Decimal(1100))],
        outbox=[(make_notification(account_number="A"), ["hook"])],
    )
    await poll(store, 4, ok=False)
    data = await store.digest_data(
        since=since.timestamp(), until=(T0 + timedelta(hours=5)).timestamp()
    )
    by_number = {a.account_number: a for a in data.accounts}
    assert (by_number["A"].then, by_number["A"].new) == (Decimal(1000), False)
    assert by_number["B"].new
    assert [(a.status, a.rule, a.account_number) for a in data.alerts] == [
        ("firing", "low-cash", "A")
    ]
    assert [(p.source, p.polls, p.failed, p.last_error) for p in data.polls] == [
        ("default", 3, 1, "HTTP 503")
    ]


async def test_accounts_of_a_source_first_polled_after_since_are_new(store: Store) -> None:
    """The first poll writes no history (its records are the starting values): a source
    first polled after the period's start has nothing to compare with."""
    await poll(store, 2, rec("A", "1000"))
    await poll(
        store,
        3,
        rec("A", "1100"),
        series=[("A", "account_value_total", Decimal(1000), Decimal(1100))],
    )
    data = await store.digest_data(
        since=(T0 + timedelta(hours=1)).timestamp(), until=T0.timestamp() + 5 * 3600
    )
    [a] = data.accounts
    assert (a.then, a.new) == (None, True)


async def test_a_digest_is_queued_once_per_id_and_sink_and_read_back(store: Store) -> None:
    await poll(store, 0, rec("A", "1000"))
    config = DigestConfig(name="close", at="16:15", sinks=("hook", "chat"))
    ident = digest_id("close", date(2026, 11, 30))
    now = T0 + timedelta(hours=5)
    data = await store.digest_data(since=None, until=now.timestamp())
    digest = build(config, data, ident=ident, timezone="UTC", since=None, until=now)
    for _ in range(2):  # a restart, a catch-up, another replica
        await store.queue_digest(
            digest.payload(), ["hook", "chat"], summary="s", now=now.timestamp()
        )
    assert await store.digest_queued(ident) == {"hook", "chat"}
    assert await store.pending(None) == 2
    row = await store.next_pending("hook")
    assert row is not None
    assert row.id == ident
    assert Digest.from_payload(row.payload) == digest
    [record] = [r for r in await store.notifications(since=0) if r.sink == "hook"]
    assert (record.id, record.status, record.state) == (ident, "digest", "pending")


async def test_digest_data_knows_the_episodes_open_at_the_start(store: Store) -> None:
    """An alert whose last notification before ``since`` was a firing one is open then; one
    resolved before it, or first notified after it, is not."""
    from dataclasses import replace

    def note(nid: str, fp: str, resolved: bool = False) -> object:
        n = make_notification(fingerprint=fp, account_number="A")
        return (
            replace(n, id=nid)
            if not resolved
            else replace(n, id=nid, alert=replace(n.alert, status=Status.RESOLVED))
        )

    await poll(store, 0, rec("A", "1"), outbox=[(note("1", "open"), ["hook"])])
    await poll(store, 0.5, rec("A", "1"), outbox=[(note("2", "ended"), ["hook"])])
    await poll(store, 0.6, rec("A", "1"), outbox=[(note("3", "ended", True), ["hook"])])
    since = T0 + timedelta(hours=1)
    await poll(store, 2, rec("A", "1"), outbox=[(note("4", "open"), ["hook"])])
    await poll(store, 3, rec("A", "1"), outbox=[(note("5", "later"), ["hook"])])
    data = await store.digest_data(
        since=since.timestamp(), until=(T0 + timedelta(hours=5)).timestamp()
    )
    assert data.open_before == frozenset({"open"})
    assert [(a.fingerprint, a.status) for a in data.alerts] == [
        ("open", "firing"),
        ("later", "firing"),
    ]


async def test_digest_data_has_the_alerts_firing_now(store: Store) -> None:
    from monitor.models import ActiveAlert

    started = T0 - timedelta(days=2)
    alert = ActiveAlert("low-cash", "A", "fp-1", started)
    await poll(store, 0, rec("A", "1"), active={("low-cash", "A"): alert})
    data = await store.digest_data(since=T0.timestamp(), until=T0.timestamp() + 3600)
    [firing] = data.firing
    assert (firing.rule, firing.source, firing.account_number) == ("low-cash", "default", "A")
    assert (firing.started_at, firing.fingerprint) == (started, "fp-1")


async def test_a_digest_is_no_alert_to_acknowledge_or_silence(store: Store) -> None:
    """``ack <id>``, the bot's /ack and its buttons find alerts by notification id or
    fingerprint: a digest's id or fingerprint names none."""
    config = DigestConfig(name="close", at="16:15", sinks=("hook",))
    ident = digest_id("close", date(2026, 11, 30))
    data = await store.digest_data(since=None, until=T0.timestamp())
    digest = build(config, data, ident=ident, timezone="UTC", since=None, until=T0)
    await store.queue_digest(digest.payload(), ["hook"], summary="s", now=T0.timestamp())
    assert await store.find_alert(ident) is None
    assert await store.find_alert(digest.fingerprint) is None


async def test_digest_data_has_the_departed_accounts_with_their_last_value(store: Store) -> None:
    gone = Account("B", {"account_number": "B", "account_value_total": Decimal("50.5")})
    await poll(store, 0, rec("A", "1"), rec("B", "50.5"))
    await poll(store, 2, rec("A", "1"), deletes=["B"], departed=[gone])
    data = await store.digest_data(since=T0.timestamp(), until=T0.timestamp() + 3 * 3600)
    assert [a.account_number for a in data.accounts] == ["A"]
    [left] = data.departed
    assert (left.source, left.account_number, left.value) == ("default", "B", Decimal("50.5"))
    assert left.left_at == T0 + timedelta(hours=2)
