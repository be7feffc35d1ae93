"""Tests for monitor.config.root: the Config object, its sources, summary and sink choice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from config_helpers import (
    BASE_DIR,
    DROP,
    api,
    change,
    config,
    log_sink,
    oauth,
    problems,
    restriction,
    source,
    threshold,
    webhook,
)
from pydantic import ValidationError

from monitor.config import config_from_dict
from monitor.models import Severity

TELEGRAM_BOT = {"name": "tg", "type": "telegram", "bot_token": "1:x", "chat_id": "-100"} | {
    "commands": True
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(),
            "source https://api.lime.co/accounts (token from inline), every 30s, 3 rules, 3 sinks",
            id="default",
        ),
        pytest.param(
            config(api=api(stream=True)),
            "source https://api.lime.co/accounts (token from inline, streaming from "
            "wss://api.lime.co/accounts), every 30s, 3 rules, 3 sinks",
            id="streaming",
        ),
        pytest.param(
            config(
                api=api(
                    url="https://user:pw@api.lime.co:8443/accounts?k=v", token=DROP, token_env="T"
                ),
                schedule={"interval": "1h30m"},
                sinks=[log_sink()],
                rules=[restriction()],
            ),
            "source https://api.lime.co:8443/accounts (token from env T), every 90m, "
            "1 rule, 1 sink",
            id="public-url-and-singulars",
        ),
        pytest.param(
            config(api=api(token=DROP, token_file="/run/t"), schedule={"interval": "2h"}, rules=[]),
            "source https://api.lime.co/accounts (token from file /run/t), every 2h, 0 rules, "
            "3 sinks",
            id="file-hours",
        ),
        pytest.param(
            config(schedule={"interval": 1.5}),
            "source https://api.lime.co/accounts (token from inline), every 1.5s, 3 rules, 3 sinks",
            id="fractional-seconds",
        ),
        pytest.param(
            config(
                sinks=[webhook(), log_sink(), TELEGRAM_BOT],
                rules=[threshold(sinks=["ops"])],
                digests=[
                    {"name": "close", "at": "16:15", "sinks": ["tg"]},
                    {"name": "open", "at": "09:00", "sinks": ["audit"]},
                ],
            ),
            "source https://api.lime.co/accounts (token from inline), every 30s, 1 rule, 3 sinks"
            " (a Telegram bot answers on tg), 2 digests (close, open)",
            id="digests-and-bot",
        ),
    ],
)
def test_summary(data: dict[str, Any], expected: str) -> None:
    """summary() is one line for the log: public URL, token origin, interval, counts."""
    assert config_from_dict(data, base_dir=BASE_DIR).summary() == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(api=api(token=DROP, oauth=oauth()), rules=[], sinks=[log_sink()]),
            "source https://api.lime.co/accounts (OAuth2 password grant at "
            "https://auth.lime.co/connect/token), every 30s, 0 rules, 1 sink",
            id="oauth",
        ),
        pytest.param(
            config(sources=[source(), source(name="fund")], rules=[], sinks=[log_sink()]),
            "3 sources (default, family, fund), every 30s, 0 rules, 1 sink",
            id="several-sources",
        ),
        pytest.param(
            config(
                schedule={
                    "interval": "15s",
                    "off_hours_interval": "10m",
                    "market_hours": "us-equities",
                },
                rules=[],
                sinks=[log_sink()],
            ),
            "source https://api.lime.co/accounts (token from inline), every 15s in us-equities "
            "hours, every 10m outside, 0 rules, 1 sink",
            id="market-hours",
        ),
        pytest.param(
            config(schedule={"cron": "*/5 4-19 * * mon-fri"}, rules=[], sinks=[log_sink()]),
            "source https://api.lime.co/accounts (token from inline), cron '*/5 4-19 * * mon-fri'"
            " (America/New_York), 0 rules, 1 sink",
            id="cron",
        ),
    ],
)
def test_summary_of_new_kinds(data: dict[str, Any], expected: str) -> None:
    """summary() says where tokens come from (never a secret), how many sources, which schedule."""
    assert config_from_dict(data, base_dir=BASE_DIR).summary() == expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("low-cash", ("audit",)),
        ("restriction", ("ops", "chat")),
        ("platform", ("ops", "chat", "audit")),
        ("source_down", ("ops", "chat", "audit")),
        ("no-such-rule", ("ops", "chat", "audit")),
    ],
)
def test_sinks_for(rule: str, expected: tuple[str, ...]) -> None:
    """A rule goes to the sinks it names, else to every sink; source_down goes everywhere."""
    data = config(rules=[threshold(sinks=["audit"]), restriction(sinks=["ops", "chat"]), change()])
    assert config_from_dict(data, base_dir=BASE_DIR).sinks_for(rule) == expected


@pytest.mark.parametrize(
    ("send_resolved", "resolved", "expected"),
    [
        pytest.param(True, False, ("ops", "am", "pd"), id="firing"),
        pytest.param(True, True, ("ops", "am", "pd"), id="resolved"),
        pytest.param(False, False, ("ops", "am", "pd"), id="firing-without-send-resolved"),
        pytest.param(False, True, ("am", "pd"), id="resolved-only-to-state-tracking-sinks"),
    ],
)
def test_sinks_for_applies_send_resolved(
    send_resolved: bool, resolved: bool, expected: tuple[str, ...]
) -> None:
    """``send_resolved = false`` keeps resolved notifications from every sink except those that
    track alert state (Alertmanager, PagerDuty), whose alert would otherwise never end."""
    data = config(
        sinks=[
            webhook(),
            {"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9093"},
            {"type": "pagerduty", "name": "pd", "routing_key": "k"},
        ],
        rules=[threshold(send_resolved=send_resolved)],
    )
    loaded = config_from_dict(data, base_dir=BASE_DIR)
    rule = loaded.rules[0].name
    assert loaded.sinks_for(rule, Severity.WARNING, resolved=resolved) == expected


def test_sinks_for_a_removed_rule_uses_its_old_definition() -> None:
    """A rule a reload removed still chooses sinks by its own ``sinks`` and ``send_resolved``."""
    old = config_from_dict(
        config(
            sinks=[webhook(), {"type": "pagerduty", "name": "pd", "routing_key": "k"}],
            rules=[threshold(send_resolved=False, sinks=["ops", "pd"])],
        ),
        base_dir=BASE_DIR,
    )
    new = config_from_dict(
        config(
            sinks=[webhook(), {"type": "pagerduty", "name": "pd", "routing_key": "k"}], rules=[]
        ),
        base_dir=BASE_DIR,
    )
    gone = old.rules[0]
    assert new.sinks_for(gone.name, Severity.WARNING, resolved=True, definition=gone) == ("pd",)
    assert new.sinks_for(gone.name, Severity.WARNING, resolved=True) == ("ops", "pd")


def test_config_is_frozen() -> None:
    """A loaded Config cannot be changed behind the daemon's back."""
    loaded = config_from_dict(config(), base_dir=BASE_DIR)
    assert loaded.api is not None
    with pytest.raises(ValidationError, match="frozen"):
        loaded.api.down_after = 5  # type: ignore[misc]


def test_environment_never_sets_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the TOML file configures: an environment variable named like a key changes nothing."""
    monkeypatch.setenv("SCHEDULE", '{"interval": "1h"}')
    monkeypatch.setenv("API", '{"url": "https://evil.example/", "token": "x"}')
    loaded = config_from_dict(config(), base_dir=BASE_DIR)
    assert loaded.schedule.interval == timedelta(seconds=30)
    assert loaded.api is not None
    assert loaded.api.url == "https://api.lime.co/accounts"


def test_all_sources_lists_api_as_default_then_sources_in_file_order() -> None:
    """[api] is the source 'default'; [[sources]] follow with their keys and own intervals."""
    data = config(sources=[source(interval="5s"), source(name="fund", oauth=oauth(), token=DROP)])
    loaded = config_from_dict(data, base_dir=BASE_DIR)

    specs = loaded.all_sources()

    assert [(s.name, s.key, s.interval) for s in specs] == [
        ("default", "api", None),
        ("family", "sources[0] (family)", timedelta(seconds=5)),
        ("fund", "sources[1] (fund)", None),
    ]
    assert specs[2].config.oauth is not None


def test_sources_alone_are_a_whole_config() -> None:
    """Without [api], [[sources]] alone configure what to poll."""
    loaded = config_from_dict(config(api=DROP, sources=[source()]), base_dir=BASE_DIR)

    assert loaded.api is None
    assert [s.name for s in loaded.all_sources()] == ["family"]


def test_rules_for_keeps_rules_without_sources_and_those_naming_the_source() -> None:
    """A rule without sources applies everywhere; one with sources only to those it names."""
    data = config(
        sources=[source(), source(name="fund")],
        rules=[threshold(sources=["fund"]), restriction(sources=["default", "family"]), change()],
    )
    loaded = config_from_dict(data, base_dir=BASE_DIR)

    assert [r.name for r in loaded.rules_for("fund")] == ["low-cash", "platform"]
    assert [r.name for r in loaded.rules_for("family")] == ["restriction", "platform"]
    assert [r.name for r in loaded.rules_for("default")] == ["restriction", "platform"]


def test_a_source_interval_is_refused_under_a_cron_schedule() -> None:
    """A per-source interval would be silently ignored by a cron schedule, so it is an error."""
    data = config(
        schedule={"cron": "*/5 * * * *"},
        sources=[
            {"name": "fund", "url": "https://api.lime.co/accounts", "token": "t", "interval": "10s"}
        ],
    )

    assert problems(data) == ["sources[0] (fund).interval: not used with [schedule] cron"]
