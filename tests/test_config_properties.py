"""Property tests of the config loader: whatever a file holds, loading it gives a ``Config`` or
a ``ConfigError`` whose every problem line names a key of the file or of the model; never
another exception, and ``check-config`` never prints a traceback.

The files are mutations of a valid one (a value of a known key replaced by any TOML value, a key
mistyped, a value nested in a list or a table, a key added) and random TOML documents built
from the keys the model knows.
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from config_helpers import full_config
from e2e_helpers import child_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from monitor.config import RULE_CONFIG_TYPES, SINK_CONFIG_TYPES, Config, load_config
from monitor.config.types import item_key
from monitor.errors import ConfigError

# --------------------------------------------------------------------------- the model's keys


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _all_models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    stack: list[type[BaseModel]] = [Config]
    while stack:
        model = stack.pop()
        if model not in seen:
            seen.append(model)
            for info in model.model_fields.values():
                stack += _models(info.annotation)
    return seen


MODELS = _all_models()
#: Every key some table of the model has, as the file spells it.
MODEL_KEYS = sorted({info.alias or name for m in MODELS for name, info in m.model_fields.items()})
NAMED_SECTIONS = ("sources", "sinks", "rules", "mute")

# --------------------------------------------------------------------------- TOML text

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _string(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(data: dict[str, Any]) -> str:
    """``data`` as a TOML document (every table inline: one line per top-level key)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in data.items())


# --------------------------------------------------------------------------- strategies

INTERESTING = [
    "", " ", "5m", "30s", "0", "-1s", "3000000d", "1e400", "inf", "nan", "250ms", "99999999999d",
    "http://127.0.0.1:99999/hook", "http://127.0.0.1:8080/x", "https://[::1/x", "ftp://x/",
    "http:///x", "json://localhost", "{{ cash }}", "{{ ((((", "{{ 'x' | truncate(-1) }}",
    "{% for %}", "cash > 1.0", "cash >", "*/5 * * * *", "61 * * * *", "America/New_York",
    "Mars/Base", "../../etc/passwd", "low-cash", "ops", "webhook", "threshold", "<", "=<",
    "critical", "us-equities", "24:00", "25:00", "mon", "a\nsinks: b", "x: y", "\u0000",
    "é", "SLACK_URL", "$CREDENTIALS_DIRECTORY/x", "sinks[0].url", "127.0.0.1:9464", ":0",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(INTERESTING),
    st.text(max_size=12),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
keys = st.one_of(
    st.sampled_from(MODEL_KEYS),
    st.sampled_from([*SINK_CONFIG_TYPES, *RULE_CONFIG_TYPES]),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)


def _paths(data: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every key path of ``data``: ``('sinks', 0, 'url')``."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _parent(data: Any, path: tuple[str | int, ...]) -> Any:
    for step in path[:-1]:
        data = data[step]
    return data


def _typo(key: str, draw: st.DrawFn) -> str:
    if not key:
        return "x"
    i = draw(st.integers(0, len(key) - 1))
    kind = draw(st.sampled_from(["drop", "double", "swap", "replace"]))
    if kind == "drop":
        return key[:i] + key[i + 1 :] or "x"
    if kind == "double":
        return key[:i] + key[i] + key[i:]
    if kind == "swap" and i + 1 < len(key):
        return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    return key[:i] + draw(st.sampled_from("aeiouxyz_")) + key[i + 1 :]


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with one to three mutations."""
    data = full_config()
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        last = path[-1]
        action = draw(st.sampled_from(["value", "typo", "nest", "add", "drop"]))
        if action == "value":
            parent[last] = draw(values)
        elif action == "typo" and isinstance(last, str):
            parent[_typo(last, draw)] = parent.pop(last)
        elif action == "nest":
            parent[last] = draw(st.sampled_from([[parent[last]], {"x": parent[last]}]))
        elif action == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        elif action == "drop":
            del parent[last]
    return data


random_documents = st.dictionaries(
    st.one_of(st.sampled_from(list(Config.model_fields)), keys), values, max_size=6
)

# --------------------------------------------------------------------------- the property


def real_keys(data: dict[str, Any]) -> set[str]:
    """The keys a problem line may name: every key path of ``data`` (a table of a list named
    as problem lines name it), and below every table of it, every key the model knows."""
    out: set[str] = set()

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            out.update(f"{prefix}.{key}" if prefix else key for key in MODEL_KEYS)
            for key, inner in value.items():
                walk(inner, f"{prefix}.{_key(key)}" if prefix else _key(key))
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                name = inner.get("name") if isinstance(inner, dict) else None
                if prefix in NAMED_SECTIONS:
                    key = item_key(prefix, index, name)
                else:
                    key = f"{prefix}[{index}]"
                walk(inner, key)
        out.add(prefix)

    walk(data, "")
    out.discard("")
    return out


def check_property(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        error = exc
    else:
        return
    if error.problems == [str(error)]:  # a problem of the file, not of a key
        assert str(error).startswith(f"{path}: TOML syntax error"), str(error)
        return
    known = real_keys(data)
    for line in error.problems:
        assert any(line.startswith(f"{key}: ") for key in known), line


_FAST = settings(
    max_examples=int(os.environ.get("CONFIG_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FAST
@given(data=mutated_configs())
def test_a_mutated_config_loads_or_names_real_keys(tmp_path: Path, data: dict[str, Any]) -> None:
    """A valid file with values replaced, keys mistyped, values nested, keys added or dropped:
    a Config, or a ConfigError whose every problem names a key of the file or of the model."""
    check_property(tmp_path, data)


@_FAST
@given(data=random_documents)
def test_a_random_document_loads_or_names_real_keys(tmp_path: Path, data: dict[str, Any]) -> None:
    """A random TOML document from the model's keys and any values: the same."""
    check_property(tmp_path, data)


@pytest.mark.e2e
@settings(
    max_examples=3,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.one_of(mutated_configs(), random_documents))
def test_check_config_never_prints_a_traceback(tmp_path: Path, data: dict[str, Any]) -> None:
    """The real CLI on a few generated files: exit 0 or 2, never a traceback."""
    path = tmp_path / "config.toml"
    path.write_text(to_toml(copy.deepcopy(data)), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=child_env(),
        check=False,
    )
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
