"""Test helpers for the configuration: valid tables to change one key of, and the secrets
they hold (no problem message or repr may quote one)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from monitor.config import config_from_dict
from monitor.errors import ConfigError

TOKEN = "tok-3f9a77-SECRET"
HOOK_URL = "https://hooks.example.com/services/T000/B000/HOOKSECRET"
SLACK_URL = "https://hooks.slack.com/services/T111/B111/SLACKSECRET"
HMAC = "hmac-key-SECRET"
CLIENT_SECRET = "client-SECRET-9d2"
PASSWORD = "password-SECRET-77e"
SECRETS = (TOKEN, HOOK_URL, "HOOKSECRET", SLACK_URL, "SLACKSECRET", HMAC, CLIENT_SECRET, PASSWORD)
BASE_DIR = Path("/etc/balance-monitor")

DROP = object()  # a key to leave out of a section

OPS = "<, <=, >, >=, ==, !="
NUMERIC = (
    "account_value_total, cash, day_trading_buying_power, margin_buying_power, "
    "non_margin_buying_power, position_market_value, unsettled_cash, cash_to_withdraw, "
    "daytrades_count"
)
CHANGEABLE = f"trade_platform, margin_type, restriction, restriction_reason, {NUMERIC}"
DURATION_HELP = "must be a duration like '30s', '5m', '1h', '1h30m' or a number of seconds"


def _merge(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **fields}
    return {key: value for key, value in out.items() if value is not DROP}


def api(**fields: Any) -> dict[str, Any]:
    return _merge({"url": "https://api.lime.co/accounts", "token": TOKEN}, fields)


def oauth(**fields: Any) -> dict[str, Any]:
    base = {
        "token_url": "https://auth.lime.co/connect/token",
        "client_id": "balance-monitor",
        "client_secret": CLIENT_SECRET,
        "username": "trader@example.com",
        "password": PASSWORD,
    }
    return _merge(base, fields)


def source(**fields: Any) -> dict[str, Any]:
    """A ``[[sources]]`` table named ``family`` with an inline token."""
    return _merge({"name": "family", "url": "https://api.lime.co/accounts", "token": TOKEN}, fields)


def webhook(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "ops", "type": "webhook", "url": HOOK_URL, "secret": HMAC}, fields)


def slack(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "chat", "type": "slack", "url": SLACK_URL}, fields)


def log_sink(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "audit", "type": "log"}, fields)


def threshold(**fields: Any) -> dict[str, Any]:
    rule = {"name": "low-cash", "type": "threshold", "field": "cash_to_withdraw", "op": "<"}
    return _merge({**rule, "value": 1000}, fields)


def restriction(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "restriction", "type": "restriction_change"}, fields)


def change(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "platform", "type": "change", "field": "trade_platform"}, fields)


def expression(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "pdt", "type": "expression", "when": "daytrades_count >= 3"}, fields)


def delta(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "drop", "type": "delta", "field": "cash", "by": 1000}, fields)


def stale(**fields: Any) -> dict[str, Any]:
    return _merge(
        {"name": "stuck", "type": "stale", "field": "unsettled_cash", "for": "1d"}, fields
    )


def config(**sections: Any) -> dict[str, Any]:
    """A valid config as TOML would parse it, with ``sections`` replaced (``DROP`` removes)."""
    base = {
        "api": api(),
        "sinks": [webhook(), slack(), log_sink()],
        "rules": [threshold(), restriction(), change()],
    }
    return copy.deepcopy(_merge(base, sections))


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, base_dir=BASE_DIR)
    return info.value.problems


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def alertmanager(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093"}, fields)


def pagerduty(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "pd", "type": "pagerduty", "routing_key": "R0UT1NGKEY"}, fields)


def full_config() -> dict[str, Any]:
    """A valid config with a table for every key that holds a duration or a number: a
    market-hours schedule, ``[api]`` and a ``[[sources]]`` with OAuth2, a chat sink, an
    Alertmanager and PagerDuty, a windowed ``delta`` and a ``stale`` rule, a PostgreSQL state."""
    return config(
        schedule={"market_hours": "us-equities"},
        state={"url": "postgresql://monitor@db.internal/balance_monitor", "lease": "15s"},
        sources=[source(token=DROP, oauth=oauth())],
        sinks=[webhook(), slack(), alertmanager(), pagerduty()],
        rules=[
            threshold(escalate=[{"after": "15m", "sinks": ["pd"]}]),
            delta(window="1h"),
            stale(),
        ],
        heartbeat={"url": "https://hc.example/ping/key", "every": "1m"},
    )


_STEP = re.compile(r"([a-z_]+)(?:\[(\d+)\])?")


def set_key(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``data`` with the key at ``path`` (``"sources[0].oauth.timeout"``) set to ``value``."""
    out = copy.deepcopy(data)
    table: Any = out
    *parents, last = path.split(".")
    for step in parents:
        match = _STEP.fullmatch(step)
        assert match is not None, step
        table = table.setdefault(match[1], {})
        if match[2] is not None:
            table = table[int(match[2])]
    table[last] = value
    return out
