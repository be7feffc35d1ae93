"""The registry: a factory for every sink type, ``build_sink`` and ``build_sinks``, and secrets
resolved when a sink is built (an unset variable is a ConfigError naming the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, TypeAdapter
from sinks_helpers import BOT_TOKEN, Receiver, make_notification
from yarl import URL

from monitor.config import (
    SINK_CONFIG_TYPES,
    LogSinkConfig,
    SinkConfig,
    SlackSinkConfig,
    WebhookSinkConfig,
)
from monitor.config.sinks import check_sinks
from monitor.errors import ConfigError
from monitor.sinks import log, slack, webhook
from monitor.sinks.base import Sink
from monitor.sinks.registry import SINK_FACTORIES, build_sink, build_sinks

SINK_CONFIG: TypeAdapter[SinkConfig] = TypeAdapter(SinkConfig)


def test_factories_match_config_types() -> None:
    """Every TOML sink type has a factory, and every factory a config model."""
    assert set(SINK_FACTORIES) == set(SINK_CONFIG_TYPES)


SINK_CONFIGS: list[SinkConfig] = [
    WebhookSinkConfig(type="webhook", name="ops", url=SecretStr("https://example.com/hook")),
    SlackSinkConfig(type="slack", name="chat", url_env="TEST_SLACK_URL"),
    LogSinkConfig(type="log", name="journal"),
]


async def test_build_sinks(session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each config becomes the sink of its type, keyed by name."""
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/X")

    sinks = build_sinks(SINK_CONFIGS, session)

    assert {name: type(sink) for name, sink in sinks.items()} == {
        "ops": webhook.WebhookSink,
        "chat": slack.SlackSink,
        "journal": log.LogSink,
    }
    assert all(isinstance(sink, Sink) and sink.name == name for name, sink in sinks.items())
    for sink in sinks.values():
        await sink.aclose()


def test_build_sink_names_the_missing_secret(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset url_env is a ConfigError naming the key and the variable."""
    monkeypatch.delenv("TEST_SLACK_URL", raising=False)

    with pytest.raises(ConfigError, match=r"^sinks\[1\] \(chat\)\.url_env: .*TEST_SLACK_URL"):
        build_sink(SINK_CONFIGS[1], index=1, session=session)


def test_build_sinks_refuses_duplicate_names(session: aiohttp.ClientSession) -> None:
    """Two sinks with one name are a ConfigError naming the second."""
    configs: list[SinkConfig] = [
        SINK_CONFIGS[2],
        LogSinkConfig(type="log", name="journal", level="error"),
    ]

    with pytest.raises(
        ConfigError, match=r"^sinks\[1\] \(journal\)\.name: duplicate sink name 'journal'"
    ):
        build_sinks(configs, session)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"type": "discord", "name": "dc", "url_env": "TEST_CHAT_SECRET"}, "url_env"),
        ({"type": "msteams", "name": "teams", "url_env": "TEST_CHAT_SECRET"}, "url_env"),
        (
            {
                "type": "telegram",
                "name": "tg",
                "bot_token_env": "TEST_CHAT_SECRET",
                "chat_id": -100123,
            },
            "bot_token_env",
        ),
    ],
)
def test_create_names_the_missing_secret(
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    config: dict[str, Any],
    key: str,
) -> None:
    """An unset secret variable is a ConfigError naming the key and the variable."""
    monkeypatch.delenv("TEST_CHAT_SECRET", raising=False)
    model = SINK_CONFIG.validate_python(config)

    with pytest.raises(
        ConfigError, match=rf"^sinks\[3\] \({model.name}\)\.{key}: .*TEST_CHAT_SECRET"
    ):
        build_sink(model, index=3, session=session)


@pytest.mark.parametrize("kind", ["discord", "msteams", "telegram"])
async def test_create_from_env(
    receiver: Receiver, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """With the secret in the environment the registry builds a sink that delivers."""
    secret = BOT_TOKEN if kind == "telegram" else receiver.url
    monkeypatch.setenv("TEST_CHAT_SECRET", secret)
    settings: dict[str, Any] = {"type": kind, "name": kind}
    if kind == "telegram":
        origin = str(URL(receiver.url).origin())
        settings |= {"bot_token_env": "TEST_CHAT_SECRET", "chat_id": 42, "api_url": origin}
    else:
        settings |= {"url_env": "TEST_CHAT_SECRET"}
    model = SINK_CONFIG.validate_python(settings)

    sink = build_sink(model, index=0, session=session)
    await sink.send(make_notification())
    await sink.aclose()

    assert len(receiver.requests) == 1


# --------------------------------------------------------------------------- check-config

EVERY_SINK: list[dict[str, Any]] = [
    {"type": "webhook", "name": "a", "url_env": "TEST_UNSET_URL"},
    {"type": "slack", "name": "b", "url_env": "TEST_UNSET_URL"},
    {"type": "discord", "name": "c", "url_env": "TEST_UNSET_URL"},
    {"type": "msteams", "name": "d", "url_env": "TEST_UNSET_URL"},
    {"type": "telegram", "name": "e", "bot_token_env": "TEST_UNSET_URL", "chat_id": 1},
    {"type": "email", "name": "f", "host": "h", "from": "a@b.c", "to": ["d@e.f"]},
    {"type": "pagerduty", "name": "g", "routing_key_env": "TEST_UNSET_URL"},
    {"type": "alertmanager", "name": "h", "url": "http://127.0.0.1:9093"},
    {"type": "apprise", "name": "i", "url_env": "TEST_UNSET_URL"},
    {"type": "log", "name": "j"},
]


def test_every_sink_type_is_in_the_check_table() -> None:
    assert {s["type"] for s in EVERY_SINK} == set(SINK_CONFIG_TYPES)


def test_check_sinks_passes_sinks_that_can_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_sinks finds nothing wrong with a sink of each type whose module and libraries
    load; it reads no secret (they are unset here) and opens no connection."""
    monkeypatch.delenv("TEST_UNSET_URL", raising=False)
    configs = [SINK_CONFIG.validate_python(s) for s in EVERY_SINK]
    assert check_sinks(configs) == []


def test_check_sinks_names_what_would_stop_a_sink_from_being_built(tmp_path: Path) -> None:
    """What build_sink would refuse without reading a secret (an unusable CA bundle, URL
    credentials with an Authorization header) is a problem line of the sink's key."""
    configs = [
        SINK_CONFIG.validate_python({**EVERY_SINK[5], "ca_file": str(tmp_path / "absent.pem")}),
        SINK_CONFIG.validate_python(
            {
                "type": "alertmanager",
                "name": "am",
                "url": "http://user:pw@127.0.0.1:9093",
                "headers": {"Authorization": "Bearer x"},
            }
        ),
    ]
    assert check_sinks(configs) == [
        f"sinks[0] (f).ca_file: cannot load {tmp_path / 'absent.pem'}: No such file or directory",
        "sinks[1] (am).headers: an Authorization header cannot be combined with credentials in url",
    ]
