"""Tests for monitor.config.types: durations in every spelling, and what is not one."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from config_helpers import BASE_DIR, DURATION_HELP, config

from monitor.config import config_from_dict, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m30s", timedelta(seconds=90)),
        ("2d", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        ("5M", timedelta(minutes=5)),
        ("45", timedelta(seconds=45)),
        (30, timedelta(seconds=30)),
        (2.5, timedelta(seconds=2.5)),
        (0, timedelta(0)),
        (Decimal("0.25"), timedelta(milliseconds=250)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_parse_duration_accepts(value: Any, expected: timedelta) -> None:
    """Units ms/s/m/h/d, combined units, and plain numbers of seconds are durations."""
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 minutes", DURATION_HELP),
        ("-1s", DURATION_HELP),
        ("1x", DURATION_HELP),
        ("", DURATION_HELP),
        ("  ", DURATION_HELP),
        ("s", DURATION_HELP),
        ("1h-30m", DURATION_HELP),
        ("30s ago", DURATION_HELP),
        ("inf", DURATION_HELP),
        ("nan", DURATION_HELP),
        (True, DURATION_HELP),
        (False, DURATION_HELP),
        (None, DURATION_HELP),
        ([30], DURATION_HELP),
        (float("nan"), DURATION_HELP),
        (-1, "must not be negative"),
        ("-1", "must not be negative"),
        (-0.5, "must not be negative"),
        (1e20, "is too long"),
        ("99999999999d", "is too long"),
    ],
)
def test_parse_duration_refuses(value: Any, message: str) -> None:
    """Anything else is a ValueError (which pydantic turns into a problem line), never another."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("schedule", "interval", "1h30m", timedelta(minutes=90)),
        ("schedule", "interval", 1, timedelta(seconds=1)),
        ("schedule", "jitter", "250ms", timedelta(milliseconds=250)),
        ("delivery", "max_age", "2d", timedelta(days=2)),
        ("delivery", "initial_backoff", 2.5, timedelta(seconds=2.5)),
        ("api", "timeout", "5s", timedelta(seconds=5)),
    ],
)
def test_duration_keys_accept_every_spelling(
    section: str, key: str, value: Any, expected: timedelta
) -> None:
    """Every duration key takes the same spellings as parse_duration."""
    sections = {section: {**config().get(section, {}), key: value}}
    loaded = config_from_dict(config(**sections), base_dir=BASE_DIR)
    assert getattr(getattr(loaded, section), key) == expected
