"""``stream`` and ``stream_url`` in ``[api]`` and ``[[sources]]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.config import config_from_dict
from monitor.errors import ConfigError

SINKS = [{"type": "log", "name": "log"}]


def load(**api: Any) -> Any:
    data = {"api": {"url": "https://api.lime.co/accounts", "token": "t", **api}, "sinks": SINKS}
    return config_from_dict(data, base_dir=Path()).all_sources()[0].config


def test_the_stream_is_off_by_default_and_its_url_follows_the_api_url() -> None:
    source = load()
    assert source.stream is False
    assert source.stream_address == "wss://api.lime.co/accounts"


def test_a_plain_http_url_streams_over_ws() -> None:
    assert load(url="http://127.0.0.1:8080/accounts").stream_address == (
        "ws://127.0.0.1:8080/accounts"
    )


def test_stream_url_wins_and_stream_is_read() -> None:
    source = load(stream=True, stream_url="wss://stream.example.com/accounts")
    assert (source.stream, source.stream_address) == (True, "wss://stream.example.com/accounts")


def test_every_source_may_stream() -> None:
    data = {
        "sources": [
            {"name": "a", "url": "https://x.example/accounts", "token": "t", "stream": True}
        ],
        "sinks": SINKS,
    }
    assert config_from_dict(data, base_dir=Path()).all_sources()[0].config.stream


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://api.lime.co/accounts", "must be a ws:// or wss:// URL"),
        ("wss://", "must name a host"),
        (42, "stream_url"),
    ],
)
def test_a_bad_stream_url_is_a_precise_problem(value: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(stream_url=value)
    assert any("api.stream_url" in p and problem in p for p in caught.value.problems), (
        caught.value.problems
    )
