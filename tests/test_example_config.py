"""config.example.toml, the commented reference: valid, complete, and true to the public names."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from monitor.cli import main
from monitor.config import RULE_CONFIG_TYPES, SINK_CONFIG_TYPES, Config, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
SECRET_VARIABLES = (
    "BALANCE_MONITOR_TOKEN",
    "WEBHOOK_SECRET",
    "SLACK_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "TEAMS_WORKFLOW_URL",
    "TELEGRAM_BOT_TOKEN",
    "PAGERDUTY_ROUTING_KEY",
    "SMTP_PASSWORD",
    "APPRISE_URL",
)

# A table header or a key, active or commented out: "[api]", "# [delivery]", "# max_age = ...".
_HEADER = re.compile(r"^#?\s*\[\[?([a-z_.]+)\]\]?\s*$")
_KEY = re.compile(r"^#?\s*([a-z_]+)\s*=")
_TYPE = re.compile(r'^#?\s*type\s*=\s*"([a-z_]+)"')


@dataclass
class Block:
    """The lines under one table header of the example, commented-out ones included."""

    table: str
    type: str | None = None
    keys: set[str] = field(default_factory=set)


def _blocks(text: str) -> dict[str, list[Block]]:
    """Every table of the example by name ("" for the lines before the first header)."""
    tables: dict[str, list[Block]] = {"": [Block("")]}
    current = tables[""][0]
    for raw in text.splitlines():
        line = raw.strip()
        if header := _HEADER.match(line):
            current = Block(header.group(1))
            tables.setdefault(current.table, []).append(current)
        elif key := _KEY.match(line):
            current.keys.add(key.group(1))
            if current.type is None and (tag := _TYPE.match(line)):
                current.type = tag.group(1)
    return tables


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (``tuple[A | B, ...]`` -> ``[A, B]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _tag(model: type[BaseModel]) -> str | None:
    """The ``type`` literal of a sink or rule model, ``None`` for a plain table."""
    info = model.model_fields.get("type")
    if info is None or get_origin(info.annotation) is not Literal:
        return None
    tag = get_args(info.annotation)[0]
    return tag if isinstance(tag, str) else None


def _undocumented(
    model: type[BaseModel],
    table: str,
    blocks: list[Block],
    tables: Mapping[str, list[Block]],
    seen: set[type[BaseModel]],
) -> Iterator[str]:
    """Keys of ``model`` (and of the models nested in it) that the example never mentions."""
    seen.add(model)
    documented = set().union(*(block.keys for block in blocks))
    for field_name, info in model.model_fields.items():
        key = info.alias or field_name  # the TOML spelling (`for`, `from`)
        name = f"{table}.{key}" if table else key
        nested = _models(info.annotation)
        if not nested:
            if key not in documented:
                yield name
            continue
        for sub in nested:
            tag = _tag(sub)
            found = [b for b in tables.get(name, []) if tag is None or b.type == tag]
            if not found:
                yield f"[{name}]" if tag is None else f'[[{name}]] type = "{tag}"'
                continue
            yield from _undocumented(sub, name, found, tables, seen)


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*SECRET_VARIABLES, "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_secrets")
def test_example_loads_with_every_sink_and_rule_type() -> None:
    """The example is a valid configuration that uses every sink type and every rule type."""
    config = load_config(EXAMPLE)

    assert isinstance(config, Config)
    assert {sink.type for sink in config.sinks} == set(SINK_CONFIG_TYPES)
    assert {rule.type for rule in config.rules} == set(RULE_CONFIG_TYPES)


@pytest.mark.usefixtures("no_secrets")
def test_example_keeps_the_documented_names_and_paths() -> None:
    """Sink and rule names are a public contract; a relative state path sits next to the file."""
    config = load_config(EXAMPLE)

    assert [sink.name for sink in config.sinks] == [
        "ops",
        "slack",
        "discord",
        "teams",
        "telegram",
        "pagerduty",
        "alertmanager",
        "email",
        "push",
        "console",
    ]
    assert [rule.name for rule in config.rules] == [
        "restriction-changed",
        "low-cash-to-withdraw",
        "daytrades-high",
        "pdt-risk",
        "equity-drop",
        "account-appeared",
        "account-disappeared",
        "unsettled-cash-stuck",
        "margin-type-changed",
    ]
    assert [mute.name for mute in config.mute] == ["weekend"]
    assert config.api is not None
    assert config.api.token_env == "BALANCE_MONITOR_TOKEN"
    assert config.state.path == EXAMPLE.parent / "balance-monitor.db"


@pytest.mark.usefixtures("no_secrets")
def test_check_config_accepts_the_example_without_its_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config exits 0 on the example and only notes the secrets this machine lacks."""
    code = main(["check-config", "--config", str(EXAMPLE)])

    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith(f"OK {EXAMPLE}: ")
    assert all(line.startswith("note: ") for line in err.splitlines())
    for variable in SECRET_VARIABLES:
        assert variable in err


def test_example_mentions_every_key_of_every_model() -> None:
    """Each key of each config model appears in its table, as `key =` or commented `# key =`."""
    tables = _blocks(EXAMPLE.read_text(encoding="utf-8"))
    seen: set[type[BaseModel]] = set()

    missing = list(_undocumented(Config, "", tables[""], tables, seen))

    assert missing == []
    assert set(SINK_CONFIG_TYPES.values()) <= seen
    assert set(RULE_CONFIG_TYPES.values()) <= seen
