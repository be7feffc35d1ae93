"""Tests for monitor.config.types: durations in every spelling, and what is not one."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any, get_args

import pytest
from config_helpers import BASE_DIR, DURATION_HELP, config, full_config, problems, set_key
from pydantic import BaseModel

from monitor.config import Config, config_from_dict, parse_duration
from monitor.config.types import DurationRange, NumberRange


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


# --------------------------------------------------------------------------- ranges

#: Every key that holds a duration: its key path in :func:`full_config`, the key as problem
#: lines name it, and the least and the greatest value it takes.
DURATION_KEYS = [
    ("schedule.interval", "schedule.interval", "1s", "1d"),
    ("schedule.off_hours_interval", "schedule.off_hours_interval", "1s", "1d"),
    ("schedule.jitter", "schedule.jitter", "0s", "1h"),
    ("api.timeout", "api.timeout", "100ms", "5m"),
    ("sources[0].interval", "sources[0] (family).interval", "1s", "1d"),
    ("sources[0].timeout", "sources[0] (family).timeout", "100ms", "5m"),
    ("sources[0].oauth.timeout", "sources[0] (family).oauth.timeout", "100ms", "5m"),
    ("sources[0].oauth.renew_before", "sources[0] (family).oauth.renew_before", "0s", "1h"),
    ("state.lease", "state.lease", "1s", "10m"),
    ("delivery.max_age", "delivery.max_age", "1m", "30d"),
    ("delivery.initial_backoff", "delivery.initial_backoff", "10ms", "1h"),
    ("delivery.max_backoff", "delivery.max_backoff", "10ms", "1d"),
    ("delivery.once_deadline", "delivery.once_deadline", "0s", "10m"),
    ("delivery.keep_finished", "delivery.keep_finished", "1h", "365d"),
    ("history.keep", "history.keep", "1h", "3650d"),
    ("sinks[0].timeout", "sinks[0] (ops).timeout", "100ms", "5m"),
    ("sinks[1].group_window", "sinks[1] (chat).group_window", "0s", "10m"),
    ("sinks[2].resend_interval", "sinks[2] (am).resend_interval", "1s", "1h"),
    ("sinks[3].resolve_events_after", "sinks[3] (pd).resolve_events_after", "0s", "24h"),
    ("rules[0].for", "rules[0] (low-cash).for", "0s", "30d"),
    ("rules[0].repeat", "rules[0] (low-cash).repeat", "1m", "30d"),
    ("rules[1].window", "rules[1] (drop).window", "1m", "30d"),
    ("rules[0].escalate[0].after", "rules[0] (low-cash).escalate[0].after", "1s", "30d"),
    ("heartbeat.every", "heartbeat.every", "1s", "1d"),
    ("heartbeat.timeout", "heartbeat.timeout", "100ms", "1m"),
]

#: Every key that holds a number, its least and its greatest value, as above.
NUMBER_KEYS = [
    ("api.down_after", "api.down_after", 1, 1000),
    ("sinks[0].max_concurrency", "sinks[0] (ops).max_concurrency", 1, 64),
    ("sources[0].down_after", "sources[0] (family).down_after", 1, 1000),
    ("rules[0].value", "rules[0] (low-cash).value", -(10**15), 10**15),
    ("rules[1].by", "rules[1] (drop).by", Decimal("0.000001"), 10**15),
]


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


@pytest.mark.parametrize(("path", "key", "low", "high"), DURATION_KEYS)
def test_duration_keys_take_their_range(path: str, key: str, low: str, high: str) -> None:
    """Each duration key takes its least and its greatest value."""
    for value in (low, high):
        loaded = config_from_dict(set_key(full_config(), path, value), base_dir=BASE_DIR)
        assert loaded is not None


@pytest.mark.parametrize(("path", "key", "low", "high"), DURATION_KEYS)
def test_duration_keys_refuse_what_is_out_of_range(
    path: str, key: str, low: str, high: str
) -> None:
    """A duration beyond a key's range is one problem naming the key and the bound, at load
    (``interval = "3000000d"`` used to pass and crash ``run`` with an OverflowError), and so is
    one too long for Python's timedelta."""
    for value in ("3000000d", 2**62, 10**400, "9" * 400 + "d", _seconds(high) + 0.001):
        [line] = problems(set_key(full_config(), path, value))
        assert line.startswith(f"{key}: must be at most {high}")
    if _seconds(low) > 0:
        below = _seconds(low) - 0.001
        assert problems(set_key(full_config(), path, below)) == [f"{key}: must be at least {low}"]


@pytest.mark.parametrize(("path", "key", "low", "high"), NUMBER_KEYS)
def test_number_keys_take_their_range(path: str, key: str, low: Any, high: Any) -> None:
    """Each number key takes its least and its greatest value, and refuses one beyond."""
    for value in (low, high):
        assert config_from_dict(set_key(full_config(), path, value), base_dir=BASE_DIR)
    [above] = problems(set_key(full_config(), path, high + 1))
    assert above.startswith(f"{key}: must be at most ")
    [below] = problems(set_key(full_config(), path, low - 1))
    assert below.startswith(f"{key}: must be ")


def _fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[tuple[str, str, Any]]:
    """(model name, key, annotation) of every field of ``model`` and the models it holds."""
    if model in seen:
        return []
    seen.add(model)
    out = []
    for name, info in model.model_fields.items():
        out.append((model.__name__, info.alias or name, info))
        for inner in _models(info.annotation):
            out += _fields(inner, seen)
    return out


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _holds(annotation: object, kind: type) -> bool:
    return annotation is kind or any(_holds(arg, kind) for arg in get_args(annotation))


def _ranged(info: Any) -> bool:
    """Whether the field's type (or an ``Annotated`` inside it) carries a range."""
    metadata = [*info.metadata]
    stack = [info.annotation]
    while stack:
        annotation = stack.pop()
        metadata += getattr(annotation, "__metadata__", ())
        stack += get_args(annotation)
    return any(
        isinstance(getattr(m, "func", None), DurationRange | NumberRange)
        or getattr(m, "le", None) is not None
        for m in metadata
    )


ALL_FIELDS = _fields(Config, set())


def test_the_range_tables_hold_every_duration_and_number_key() -> None:
    """Every key of the configuration that holds a duration or a number has a range, and the
    tables above test it: a new key cannot forget its bounds."""
    durations = {key for _, key, info in ALL_FIELDS if _holds(info.annotation, timedelta)}
    numbers = {
        key
        for _, key, info in ALL_FIELDS
        if _holds(info.annotation, Decimal) or (_holds(info.annotation, int) and key != "ignore")
    }
    assert durations == {path.rsplit(".", 1)[-1] for path, *_ in DURATION_KEYS}
    assert numbers - {"port"} == {"down_after", "value", "clear", "by", "by_pct", "max_concurrency"}
    unranged = [
        f"{model}.{key}"
        for model, key, info in ALL_FIELDS
        if key in durations | numbers and not _ranged(info)
    ]
    assert unranged == []
