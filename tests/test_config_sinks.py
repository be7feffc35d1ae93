"""Tests for monitor.config.sinks: the table of sink types, and that it is the registry's."""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing

import pytest

from monitor.config import SINK_CONFIG_TYPES, SinkConfig
from monitor.sinks.registry import SINK_FACTORIES


def test_sink_types_match_the_registry() -> None:
    """Every TOML sink type has a factory, and nothing else has one."""
    assert set(SINK_CONFIG_TYPES) == set(SINK_FACTORIES)


@pytest.mark.parametrize("kind", list(SINK_CONFIG_TYPES))
def test_each_sink_type_has_its_module(kind: str) -> None:
    """The sink of type ``x`` is built by ``monitor.sinks.x.create``: a new sink type is its
    config model and its module, and the registry needs no line of its own."""
    module = importlib.import_module(f"monitor.sinks.{kind}")
    assert callable(module.create)


def test_sink_types_are_the_union_members_by_their_type() -> None:
    """SINK_CONFIG_TYPES lists each member of the discriminated union once, under the literal
    of its ``type`` field (what the TOML file writes)."""
    members = typing.get_args(typing.get_args(SinkConfig)[0])
    assert list(SINK_CONFIG_TYPES.values()) == list(members)
    for name, model in SINK_CONFIG_TYPES.items():
        assert typing.get_args(model.model_fields["type"].annotation) == (name,)


def test_sink_modules_are_imported_only_when_a_sink_of_their_type_is_built() -> None:
    """A daemon pays only for the sinks it uses: loading the CLI, the config and the registry
    imports no sink module; building a log sink imports that one alone."""
    script = """
import sys
from pathlib import Path
import monitor.cli
from monitor.config import SINK_CONFIG_TYPES, config_from_dict
from monitor.sinks.registry import build_sink

def loaded():
    return sorted(t for t in SINK_CONFIG_TYPES if f"monitor.sinks.{t}" in sys.modules)

print(loaded())
data = {"api": {"url": "https://x.example/", "token": "t"}, "sinks": [{"name": "a", "type": "log"}]}
config = config_from_dict(data, base_dir=Path("."))
build_sink(config.sinks[0], index=0, session=None)
print(loaded(), "aiosmtplib" in sys.modules, "apprise" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == ["[]", "['log'] False False"]
