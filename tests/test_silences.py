"""Silences and their matchers, ``--until``, and the daemon's copy of them. Pure, except the
last tests, which read a real SQLite store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sinks_helpers import make_notification

from monitor.control import ControlBook
from monitor.silences import Ack, ControlState, Silence, parse_until
from monitor.store import SqliteStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALERT = replace(
    make_notification().alert, account_number="12345678@vision", labels={"team": "risk"}
)


@pytest.mark.parametrize(
    ("matchers", "matches"),
    [
        ({"rule": ALERT.rule}, True),
        ({"rule": "other"}, False),
        ({"account": "*@vision"}, True),
        ({"account": "*@cor"}, False),
        ({"source": "default"}, True),
        ({"source": "fund"}, False),
        ({"rule": ALERT.rule, "account": "1234*", "source": "default"}, True),
        ({"rule": ALERT.rule, "account": "9*"}, False),
        ({"labels": dict(ALERT.labels)}, True),
        ({"labels": {"team": "nobody"}}, False),
    ],
)
def test_every_matcher_given_must_match(matchers: dict[str, object], matches: bool) -> None:
    silence = Silence("s", 0.0, 1e12, **matchers)  # type: ignore[arg-type]  # keyword fields
    assert silence.matches(ALERT) is matches


def test_an_account_glob_never_matches_a_source_wide_alert() -> None:
    down = replace(ALERT, rule="source_down", account_number=None)
    assert not Silence("s", 0.0, 1e12, account="*").matches(down)
    assert Silence("s", 0.0, 1e12, source="default").matches(down)


def test_a_silence_is_active_from_its_start_until_it_ends_or_is_expired() -> None:
    s = Silence("s", 100.0, 200.0, rule="r")
    assert [s.active(t) for t in (99.0, 100.0, 199.9, 200.0)] == [False, True, True, False]
    expired = Silence("s", 100.0, 200.0, rule="r", expired_at=150.0)
    assert (expired.active(149.0), expired.active(150.0), expired.until) == (True, False, 150.0)


def test_control_state_finds_the_first_active_silence() -> None:
    state = ControlState(
        (
            Silence("old", 0.0, 10.0, rule=ALERT.rule),
            Silence("new", 0.0, 1e12, rule=ALERT.rule),
        )
    )
    found = state.silencing(ALERT, T0)
    assert found is not None
    assert found.holder == "silence:new"


LOCAL = timezone(timedelta(hours=2))
NOW = datetime(2024, 5, 1, 10, 0, tzinfo=LOCAL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18:30", datetime(2024, 5, 1, 18, 30, tzinfo=LOCAL)),
        ("10:05", datetime(2024, 5, 1, 10, 5, tzinfo=LOCAL)),
        ("2024-05-02T08:00", datetime(2024, 5, 2, 8, 0, tzinfo=LOCAL)),
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_until_takes_hh_mm_today_or_iso_8601(text: str, expected: datetime) -> None:
    assert parse_until(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("09:00", "is not in the future"),
        ("2024-04-30T10:00", "is not in the future"),
        ("tomorrow", r"is not a time: give HH:MM \(today\) or ISO 8601"),
        ("25:00", "is not a time"),
    ],
)
def test_until_refuses_the_past_and_what_is_not_a_time(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_until(text, NOW)


async def test_the_daemon_s_copy_follows_the_store(tmp_path: Path) -> None:
    """``refresh`` reads silences and acks again when the store's control version moved, and
    reports a change when a silence begins or ends with time too (what is held is then
    settled); nothing changed, nothing reported."""
    store = await SqliteStore.open(tmp_path / "state.db")
    try:
        book = ControlBook()
        assert await book.refresh(store, T0)  # the first look
        assert not await book.refresh(store, T0)
        start = T0.timestamp()
        await store.add_silence(Silence("s", start, start + 60, rule="r"))
        assert await book.refresh(store, T0)
        assert [s.id for s in book.get().active_silences(start)] == ["s"]
        assert not await book.refresh(store, T0 + timedelta(seconds=30))
        assert await book.refresh(store, T0 + timedelta(seconds=61))  # it ended
        await store.add_ack(Ack("fp", "r", "A1", "default", start, "al"), [])
        assert await book.refresh(store, T0 + timedelta(seconds=62))
        assert set(book.get().acks) == {"fp"}
    finally:
        await store.close()
