"""``status``: what it collects from the Store and how it shows it.

The store is written through :meth:`Store.commit` as a poll would, on every ``backend``;
``status`` reads it only through the Store's own reads. Reading a schema-1 SQLite file
read-only is in ``test_store_sqlite.py``; the command itself in ``test_e2e_service.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e_helpers import COR, VISION, account
from sinks_helpers import make_notification
from store_helpers import Backend, commit_poll

from monitor import status
from monitor.config import MuteConfig
from monitor.cycle import PollRecord
from monitor.encoding import loads
from monitor.models import ActiveAlert, Notification
from monitor.parse import parse_records
from monitor.rules import SourceHealth
from monitor.store import Store

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """A store on a new database of each backend, closed afterwards."""
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


async def populate(store: Store) -> None:
    """Two polls of ``default``: both accounts and one alert, then a failure; a pending
    notification to ``hook``."""
    accounts = parse_records([account(VISION), account(COR)]).accounts
    started = NOW - timedelta(minutes=5)
    alert = ActiveAlert("low-cash", VISION, "fp-1", started)
    await commit_poll(
        store,
        "default",
        poll=PollRecord(started, ok=True, account_count=2),
        health=SourceHealth(),
        upserts=list(accounts.values()),
        active={("low-cash", VISION): alert},
        outbox=[(make_notification(), ["hook"])],
    )
    await commit_poll(
        store,
        "default",
        poll=PollRecord(NOW - timedelta(seconds=30), ok=False, error="HTTP 503"),
        health=SourceHealth(failures=1),
    )


async def test_status_collect_reads_sources_alerts_and_outbox(store: Store) -> None:
    """collect reports the last poll and last success separately, the accounts known, the
    firing alert with its start, and the outbox depth with its oldest entry."""
    await populate(store)
    data = await status.collect(store, NOW)
    assert data["now"] == NOW.isoformat()
    (source,) = data["sources"]
    assert source == {
        "source": "default",
        "last_poll_at": (NOW - timedelta(seconds=30)).isoformat(),
        "last_result": "failed",
        "last_error": "HTTP 503",
        "last_success_at": (NOW - timedelta(minutes=5)).isoformat(),
        "consecutive_failures": 1,
        "accounts": 2,
        "polls": 2,
        "accounts_known": 2,
        "owner": None,  # no replica holds a lease
    }
    assert data["replicas"] == []
    assert data["alerts_firing"] == [
        {
            "source": "default",
            "rule": "low-cash",
            "account_number": VISION,
            "since": (NOW - timedelta(minutes=5)).isoformat(),
            "fingerprint": "fp-1",
            "acknowledged_by": None,
            "acknowledged_at": None,
            "ack_comment": None,
            "escalation": None,
        }
    ]
    outbox = data["outbox"]
    oldest = (NOW - timedelta(minutes=5)).isoformat()
    assert outbox["pending"] == 1
    assert outbox["oldest_pending_at"] == oldest
    assert outbox["by_sink"] == [
        {"sink": "hook", "pending": 1, "oldest_pending_at": oldest, "max_attempts": 0}
    ]
    assert outbox["failed_last_7d"] == 0
    assert loads(status.to_json(data)) == data


async def test_status_render_shows_every_section(store: Store) -> None:
    """The table names the source, its result and error, the accounts, the firing alert
    (rule, account, since) and the outbox depth with its age."""
    await populate(store)
    text = status.render(await status.collect(store, NOW))
    lines = text.splitlines()
    assert lines[0] == f"state: {store.location}"
    (row,) = [line for line in lines if line.startswith("default ")]
    assert "2024-05-01T11:59:30Z (30s ago)" in row
    assert "failed" in row
    assert "2024-05-01T11:55:00Z (5m ago)" in row
    assert row.split()[-3:] == ["2", "HTTP", "503"]
    assert "alerts firing: 1" in lines
    (alert,) = [line for line in lines if line.startswith("low-cash ")]
    assert alert.split()[:3] == ["low-cash", VISION, "default"]
    assert "(5m ago)" in alert
    assert "outbox: 1 pending, oldest 2024-05-01T11:55:00Z (5m ago); 0 failed or expired" in text
    (sink,) = [line for line in lines if line.startswith("hook ")]
    assert sink.split()[1] == "1"


async def test_status_of_an_empty_store_says_so(store: Store) -> None:
    """Before any poll: no sources, no alerts, an empty outbox, and plain words for each."""
    data = await status.collect(store, NOW)
    assert data["sources"] == []
    assert data["alerts_firing"] == []
    assert data["outbox"]["pending"] == 0
    assert data["outbox"]["oldest_pending_at"] is None
    text = status.render(data)
    assert "no poll recorded yet" in text
    assert "alerts firing: none" in text
    assert "outbox: 0 pending; 0 failed or expired" in text


async def mutes_and_pending(store: Store) -> list[MuteConfig]:
    """A pending alert beside the firing one; three notifications held by two windows, one of
    them no longer configured. Returns the configured windows: ``maintenance`` (open at NOW,
    08:00 in New York, until 09:00) and ``weekend`` (closed)."""
    started = NOW - timedelta(minutes=5)
    await commit_poll(
        store,
        "default",
        poll=PollRecord(started, ok=True, account_count=2),
        health=SourceHealth(),
        active={
            ("low-cash", VISION): ActiveAlert("low-cash", VISION, "fp-1", started),
            ("slow", COR): ActiveAlert("slow", COR, "", NOW - timedelta(minutes=1), "pending"),
        },
        held=[
            (make_notification(), ["hook", "ops"], "maintenance"),
            (Notification("n-0002", make_notification().alert), ["hook"], "old"),
        ],
    )
    return [
        MuteConfig(name="maintenance", days=("wed",), start="07:00", end="09:00"),
        MuteConfig(name="weekend", days=("sat", "sun"), rules=("low-cash",)),
    ]


async def test_status_collect_reports_mutes_held_and_pending_alerts(store: Store) -> None:
    """Each configured window says whether it is open and until when, with how many
    notifications it holds (a window no longer configured is listed too); pending alerts
    are apart from the firing ones."""
    mutes = await mutes_and_pending(store)
    data = await status.collect(store, NOW, mutes)

    assert data["mutes"] == [
        {
            "name": "maintenance",
            "active": True,
            "until": "2024-05-01T09:00:00-04:00",
            "timezone": "America/New_York",
            "rules": None,
            "held": 2,
        },
        {
            "name": "weekend",
            "active": False,
            "until": None,
            "timezone": "America/New_York",
            "rules": ["low-cash"],
            "held": 0,
        },
        {
            "name": "old",
            "active": False,
            "until": None,
            "timezone": None,
            "rules": None,
            "held": 1,
        },
    ]
    assert [a["rule"] for a in data["alerts_firing"]] == ["low-cash"]
    assert data["alerts_pending"] == [
        {
            "source": "default",
            "rule": "slow",
            "account_number": COR,
            "since": (NOW - timedelta(minutes=1)).isoformat(),
        }
    ]
    assert loads(status.to_json(data)) == data


async def test_status_render_shows_mutes_held_and_pending_alerts(store: Store) -> None:
    """The mute block names the open window with its end, its rules and what it holds; the
    pending alerts have their own block."""
    mutes = await mutes_and_pending(store)
    text = status.render(await status.collect(store, NOW, mutes))
    lines = text.splitlines()

    assert "mutes active: 1; 3 notifications held" in lines
    (maintenance,) = [line for line in lines if line.startswith("maintenance ")]
    assert "until 2024-05-01 09:00" in maintenance
    assert maintenance.split()[-3:] == ["all", "rules", "2"]
    (weekend,) = [line for line in lines if line.startswith("weekend ")]
    assert weekend.split() == ["weekend", "inactive", "low-cash", "0"]
    assert "alerts firing: 1" in lines
    assert "alerts pending (waiting for their rule's `for`): 1" in lines
    (pending,) = [line for line in lines if line.startswith("slow ")]
    assert pending.split()[:3] == ["slow", COR, "default"]


async def test_status_without_mutes_has_no_mute_block(store: Store) -> None:
    """No window configured and nothing held: no mute lines at all."""
    await populate(store)
    data = await status.collect(store, NOW)
    assert data["mutes"] == []
    assert data["alerts_pending"] == []
    assert "MUTE" not in status.render(data)
    assert "mutes active" not in status.render(data)


async def test_the_stream_state_of_each_source_is_shown(store: Store) -> None:
    """What the daemon recorded of each account stream: connected or DOWN, since when, how
    many reconnects, the last error; a stream turned off is not shown; a new record replaces
    the last one."""
    await store.record_stream(
        "default",
        {"enabled": True, "connected": True, "since": NOW.isoformat(), "reconnects": 0},
    )
    await store.record_stream(
        "default",
        {
            "enabled": True,
            "connected": False,
            "since": (NOW - timedelta(minutes=2)).isoformat(),
            "reconnects": 3,
            "last_error": "stream handshake refused: HTTP 503",
        },
    )
    await store.record_stream("old", {"enabled": False, "connected": False, "reconnects": 1})
    data = await status.collect(store, NOW)
    text = status.render(data)

    assert [(s["source"], s["connected"], s["reconnects"]) for s in data["streams"]] == [
        ("default", False, 3)
    ]
    line = next(line for line in text.splitlines() if line.startswith("default") and "DOWN" in line)
    assert "(2m ago)" in line, line
    assert "stream handshake refused: HTTP 503" in line
    assert "old" not in [s["source"] for s in data["streams"]]


async def test_status_shows_silences_acks_and_escalation(store: Store) -> None:
    """An active silence with what it holds, an acknowledged alert (who, when) and the
    escalation state of an alert (steps sent, the next one) show in both forms."""
    from monitor.config import config_from_dict
    from monitor.silences import Ack, Silence

    cfg = config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t"},
            "sinks": [{"type": "log", "name": "ops"}, {"type": "log", "name": "pager"}],
            "rules": [
                {
                    "type": "threshold",
                    "name": "low-cash",
                    "field": "cash",
                    "op": "<",
                    "value": 1000,
                    "escalate": [{"after": "15m", "sinks": ["pager"]}],
                },
                {"type": "threshold", "name": "other", "field": "cash", "op": "<", "value": 5},
            ],
        },
        base_dir=Path(),
    )
    started = NOW - timedelta(minutes=5)
    await commit_poll(
        store,
        "default",
        poll=PollRecord(started, ok=True, account_count=2),
        health=SourceHealth(),
        active={
            ("low-cash", VISION): ActiveAlert("low-cash", VISION, "fp-1", started),
            ("other", COR): ActiveAlert("other", COR, "fp-2", started),
        },
        held=[(make_notification(fingerprint="fp-3"), ["ops"], "silence:s1")],
    )
    await store.add_silence(
        Silence("s1", NOW.timestamp() - 60, NOW.timestamp() + 3600, rule="other", author="al")
    )
    await store.add_ack(Ack("fp-2", "other", COR, "default", NOW.timestamp(), "bob", "on it"), [])

    data = await status.collect(store, NOW, (), cfg.rules)

    firing = {a["rule"]: a for a in data["alerts_firing"]}
    assert firing["low-cash"]["escalation"] == {
        "steps": 1,
        "sent": 0,
        "next_at": (started + timedelta(minutes=15)).isoformat(),
        "next_sinks": ["pager"],
    }
    assert firing["other"]["acknowledged_by"] == "bob"
    assert firing["other"]["ack_comment"] == "on it"
    [silence] = data["silences"]
    assert (silence["id"], silence["rule"], silence["active"], silence["held"]) == (
        "s1",
        "other",
        True,
        1,
    )
    text = status.render(data)
    assert "silences: 1; 1 notifications held" in text
    assert "by bob" in text
    assert "0/1 sent, next 12:10:00Z to pager" in text
