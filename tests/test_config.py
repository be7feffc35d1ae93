"""Tests for monitor.config: loading, validation messages, durations, secrets, paths."""

from __future__ import annotations

import copy
import importlib
import re
import subprocess
import sys
import typing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from monitor.config import (
    RULE_CONFIG_TYPES,
    SINK_CONFIG_TYPES,
    Config,
    RuleConfig,
    SecretRef,
    SinkConfig,
    ThresholdRuleConfig,
    WebhookSinkConfig,
    config_from_dict,
    format_validation_errors,
    load_config,
    parse_duration,
    resolve_secret,
)
from monitor.errors import ConfigError
from monitor.models import Severity
from monitor.rules import EVALUATORS
from monitor.sinks.registry import SINK_FACTORIES

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


BAD_CONFIGS = [
    # unknown keys, at every nesting level
    pytest.param(config(extra={}), ["extra: unknown key"], id="unknown-section"),
    pytest.param(config(api=api(tokn="x")), ["api.tokn: unknown key"], id="unknown-api-key"),
    pytest.param(
        config(schedule={"intervall": "5m"}), ["schedule.intervall: unknown key"], id="schedule"
    ),
    pytest.param(config(state={"file": "x.db"}), ["state.file: unknown key"], id="state"),
    pytest.param(config(delivery={"retries": 3}), ["delivery.retries: unknown key"], id="delivery"),
    pytest.param(config(log={"lvl": "info"}), ["log.lvl: unknown key"], id="log"),
    pytest.param(
        config(sinks=[webhook(), slack(), log_sink(levle="info")]),
        ["sinks[2].levle: unknown key"],
        id="sink-key",
    ),
    pytest.param(
        config(sinks=[webhook(headers={"X-A": "1"}, header={})]),
        ["sinks[0].header: unknown key"],
        id="webhook-key",
    ),
    pytest.param(
        config(sinks=[log_sink(url=HOOK_URL)]),
        ["sinks[0].url: unknown key"],
        id="key-of-another-sink-type",
    ),
    pytest.param(
        config(rules=[threshold(), restriction(fild="cash")]),
        ["rules[1].fild: unknown key"],
        id="rule-key",
    ),
    pytest.param(
        config(rules=[restriction(op="<")]),
        ["rules[0].op: unknown key"],
        id="key-of-another-rule-type",
    ),
    # missing things
    pytest.param(config(api=DROP), ["api: give [api] or at least one [[sources]]"], id="no-api"),
    pytest.param(config(api=api(url=DROP)), ["api.url: required key missing"], id="no-api-url"),
    pytest.param(config(sinks=DROP), ["sinks: required key missing"], id="no-sinks-key"),
    pytest.param(config(sinks=[]), ["sinks: must not be empty"], id="empty-sinks"),
    pytest.param(
        config(api=api(token=DROP)),
        ["api: one of token, token_env, token_file is required"],
        id="no-token",
    ),
    pytest.param(
        config(sinks=[webhook(url=DROP)]),
        ["sinks[0]: one of url, url_env, url_file is required"],
        id="no-webhook-url",
    ),
    pytest.param(
        config(rules=[threshold(field=DROP)]),
        ["rules[0].field: required key missing"],
        id="no-threshold-field",
    ),
    pytest.param(
        config(rules=[threshold(), restriction(type=DROP)]),
        ["rules[1].type: required key 'type' missing"],
        id="no-rule-type",
    ),
    # secrets given twice
    pytest.param(
        config(api=api(token_env="LIME_TOKEN")),
        ["api: give only one of token, token_env, token_file (got token, token_env)"],
        id="token-and-token-env",
    ),
    pytest.param(
        config(api=api(token=DROP, token_env="LIME_TOKEN", token_file="token")),
        ["api: give only one of token, token_env, token_file (got token_env, token_file)"],
        id="token-env-and-file",
    ),
    pytest.param(
        config(sinks=[webhook(secret_file="hmac")]),
        ["sinks[0]: give only one of secret, secret_env, secret_file (got secret, secret_file)"],
        id="hmac-twice",
    ),
    pytest.param(
        config(sinks=[slack(url_env="SLACK_URL")]),
        ["sinks[0]: give only one of url, url_env, url_file (got url, url_env)"],
        id="slack-url-twice",
    ),
    # values
    pytest.param(
        config(rules=[threshold(), threshold(name="x", op="=<")]),
        [f"rules[1].op: must be one of {OPS}"],
        id="bad-op",
    ),
    pytest.param(
        config(rules=[threshold(value="1000")]),
        ["rules[0].value: must be a number"],
        id="value-string",
    ),
    pytest.param(
        config(rules=[threshold(value=True)]),
        ["rules[0].value: must be a number"],
        id="value-bool",
    ),
    pytest.param(
        config(rules=[threshold(value=float("nan"))]),
        ["rules[0].value: Input should be a finite number"],
        id="value-nan",
    ),
    pytest.param(
        config(rules=[threshold(field="margin_type")]),
        [f"rules[0].field: 'margin_type' is not a numeric field; use one of {NUMERIC}"],
        id="threshold-on-text-field",
    ),
    pytest.param(
        config(rules=[change(field="balance")]),
        [f"rules[0].field: unknown field 'balance'; use one of {CHANGEABLE}"],
        id="change-unknown-field",
    ),
    pytest.param(
        config(rules=[change(field="account_number")]),
        [f"rules[0].field: unknown field 'account_number'; use one of {CHANGEABLE}"],
        id="change-account-number",
    ),
    pytest.param(
        config(rules=[threshold(severity="fatal")]),
        ["rules[0].severity: must be one of info, warning, critical"],
        id="severity",
    ),
    pytest.param(
        config(log={"level": "verbose"}),
        ["log.level: must be one of debug, info, warning, error"],
        id="log-level",
    ),
    pytest.param(
        config(rules=[threshold(name="low cash")]),
        ["rules[0].name: may contain only letters, digits and _ . : -"],
        id="name-pattern",
    ),
    pytest.param(
        config(rules=[threshold(name="")]), ["rules[0].name: must not be empty"], id="name-empty"
    ),
    pytest.param(
        config(rules=[threshold(accounts=[""])]),
        ["rules[0].accounts[0]: must not be empty"],
        id="empty-account-glob",
    ),
    pytest.param(
        config(rules=[threshold(accounts=[])]),
        ["rules[0].accounts: must not be empty"],
        id="empty-accounts-list",
    ),
    pytest.param(
        config(rules=[threshold(sinks=[])]),
        ["rules[0].sinks: must not be empty"],
        id="empty-sinks-list",
    ),
    pytest.param(
        config(api=api(url="api.lime.co/accounts")),
        ["api.url: must be an http:// or https:// URL"],
        id="api-url",
    ),
    pytest.param(
        config(sinks=[webhook(url="ftp://hooks.example.com/HOOKSECRET")]),
        ["sinks[0].url: must be an http:// or https:// URL"],
        id="webhook-url",
    ),
    pytest.param(
        config(api=api(down_after=0)),
        ["api.down_after: Input should be greater than or equal to 1"],
        id="down-after",
    ),
    pytest.param(
        config(sinks=["ops"]),
        ["sinks[0]: Input should be a valid dictionary or object to extract fields from"],
        id="sink-not-a-table-says-it-once",
    ),
    # durations
    pytest.param(
        config(schedule={"interval": "500ms"}),
        ["schedule.interval: must be at least 1s"],
        id="interval-below-1s",
    ),
    pytest.param(
        config(schedule={"interval": 0}),
        ["schedule.interval: must be at least 1s"],
        id="interval-zero",
    ),
    pytest.param(
        config(schedule={"interval": "5 minutes"}),
        [f"schedule.interval: {DURATION_HELP}"],
        id="interval-words",
    ),
    pytest.param(
        config(delivery={"max_age": -1}),
        ["delivery.max_age: must not be negative"],
        id="negative-number",
    ),
    pytest.param(
        config(api=api(timeout=True)), [f"api.timeout: {DURATION_HELP}"], id="timeout-bool"
    ),
    pytest.param(
        config(schedule={"interval": float("inf")}),
        [f"schedule.interval: {DURATION_HELP}"],
        id="interval-inf",
    ),
    pytest.param(
        config(schedule={"interval": 2**62}),
        ["schedule.interval: is too long"],
        id="interval-overflows-timedelta",
    ),
    # cross-references
    pytest.param(
        config(rules=[threshold(sinks=["ops", "x"])]),
        ["rules[0].sinks: unknown sink 'x'"],
        id="undefined-sink",
    ),
    pytest.param(
        config(rules=[threshold(), restriction(), threshold()]),
        ["rules[2].name: duplicate rule name 'low-cash'"],
        id="duplicate-rule",
    ),
    pytest.param(
        config(sinks=[webhook(), log_sink(name="ops")]),
        ["sinks[1].name: duplicate sink name 'ops'"],
        id="duplicate-sink",
    ),
    pytest.param(
        config(rules=[restriction(name="source_down")]),
        ["rules[0].name: 'source_down' is the built-in rule"],
        id="reserved-rule-name",
    ),
    pytest.param(
        config(
            sinks=[webhook(), webhook()],
            rules=[restriction(sinks=["nowhere"]), restriction(name="source_down")],
        ),
        [
            "sinks[1].name: duplicate sink name 'ops'",
            "rules[0].sinks: unknown sink 'nowhere'",
            "rules[1].name: 'source_down' is the built-in rule",
        ],
        id="several-reference-problems",
    ),
    # OAuth2
    pytest.param(
        config(api=api(oauth=oauth())),
        ["api: give either oauth or token, not both"],
        id="oauth-and-token",
    ),
    pytest.param(
        config(api=api(token=DROP, token_env="LIME_TOKEN", oauth=oauth())),
        ["api: give either oauth or token_env, not both"],
        id="oauth-and-token-env",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(password=DROP))),
        ["api.oauth: one of password, password_env, password_file is required"],
        id="oauth-no-password",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(password_env="LIME_PASSWORD"))),
        [
            "api.oauth: give only one of password, password_env, password_file (got password, "
            "password_env)"
        ],
        id="oauth-two-passwords",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(scope="openid"))),
        ["api.oauth.scope: unknown key"],
        id="oauth-unknown-key",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(token_url="ftp://auth.lime.co/token"))),
        ["api.oauth.token_url: must be an http:// or https:// URL"],
        id="oauth-token-url",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(renew_before="soon"))),
        [f"api.oauth.renew_before: {DURATION_HELP}"],
        id="oauth-renew-before",
    ),
    # several sources
    pytest.param(
        config(api=DROP, sources=[source(), source()]),
        ["sources[1].name: duplicate source name 'family'"],
        id="duplicate-source",
    ),
    pytest.param(
        config(sources=[source(name="default")]),
        ["sources[0].name: 'default' is the name of [api]"],
        id="source-named-default",
    ),
    pytest.param(
        config(api=DROP, sources=[source(token=DROP)]),
        ["sources[0]: one of token, token_env, token_file is required"],
        id="source-without-token",
    ),
    pytest.param(
        config(api=DROP, sources=[source(token=DROP, oauth=oauth(client_id=DROP))]),
        ["sources[0].oauth: one of client_id, client_id_env, client_id_file is required"],
        id="source-oauth-no-client-id",
    ),
    pytest.param(
        config(api=DROP, sources=[source(interval="0.5s")]),
        ["sources[0].interval: must be at least 1s"],
        id="source-interval",
    ),
    pytest.param(
        config(api=DROP, sources=[source(name="the family")]),
        ["sources[0].name: may contain only letters, digits and _ . : -"],
        id="source-name",
    ),
    pytest.param(
        config(api=DROP, sources=[source(nmae="fund")]),
        ["sources[0].nmae: unknown key"],
        id="source-key",
    ),
    pytest.param(
        config(rules=[threshold(sources=["fund"])]),
        ["rules[0].sources: unknown source 'fund'"],
        id="rule-unknown-source",
    ),
    pytest.param(
        config(rules=[threshold(sources=[])]),
        ["rules[0].sources: must not be empty"],
        id="rule-empty-sources",
    ),
    pytest.param(
        config(api=DROP, sources=[]),
        ["api: give [api] or at least one [[sources]]"],
        id="no-api-no-sources",
    ),
    pytest.param(
        config(api=api(url=DROP, bogus=1), rules=[threshold(op="=")]),
        [
            "api.url: required key missing",
            "api.bogus: unknown key",
            f"rules[0].op: must be one of {OPS}",
        ],
        id="several-problems-in-order",
    ),
]


@pytest.mark.parametrize(("data", "expected"), BAD_CONFIGS)
def test_bad_config_lists_each_problem_by_key(data: dict[str, Any], expected: list[str]) -> None:
    """A bad config raises ConfigError with one 'key.path: message' line per problem."""
    assert problems(data) == expected


@pytest.mark.parametrize(("data", "expected"), BAD_CONFIGS)
def test_no_problem_message_contains_a_secret(data: dict[str, Any], expected: list[str]) -> None:
    """Neither the error's text nor its problem lines ever quote a token, URL or HMAC key."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, base_dir=BASE_DIR)
    text = "\n".join([str(info.value), repr(info.value), *info.value.problems])
    assert not [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(rules=[restriction(type="restriction_chnage")]),
            "rules[0].type: unknown rule type 'restriction_chnage' (known: ",
            id="rule-type-typo",
        ),
        pytest.param(
            config(sinks=[webhook(), slack(type="mail")]),
            "sinks[1].type: unknown sink type 'mail' (known: ",
            id="sink-type",
        ),
    ],
)
def test_unknown_type_names_the_known_ones(data: dict[str, Any], expected: str) -> None:
    """An unknown rule or sink type names the typo and lists every known type."""
    [line] = problems(data)
    assert line.startswith(expected)
    known = SINK_CONFIG_TYPES if "sink" in expected else RULE_CONFIG_TYPES
    assert line.endswith(f"(known: {', '.join(sorted(known))})")


def test_error_message_counts_the_problems() -> None:
    """The ConfigError's message names the origin and how many problems follow."""
    with pytest.raises(ConfigError, match=r"^cfg\.toml: 2 problems$"):
        config_from_dict(config(extra={}, more={}), base_dir=BASE_DIR, origin="cfg.toml")


def test_format_validation_errors_works_on_a_raw_validation_error() -> None:
    """format_validation_errors turns pydantic's error into lines without the offending value."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate(config(api=api(token=12345), rules=[threshold(op="~")]))
    assert format_validation_errors(info.value) == [
        "api.token: Input should be a valid string",
        f"rules[0].op: must be one of {OPS}",
    ]


# --------------------------------------------------------------------------- durations


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


# --------------------------------------------------------------------------- loading files

CONFIG_TOML = f"""\
[api]
url = "https://api.lime.co/accounts"
token_file = "secrets/token"

[state]
path = "state/monitor.db"

[[sinks]]
name = "ops"
type = "webhook"
url = "{HOOK_URL}"
secret_file = "secrets/hmac"

[[rules]]
name = "tiny"
type = "threshold"
field = "cash"
op = "<"
value = 0.1
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_load_config_reads_a_toml_file(tmp_path: Path) -> None:
    """A valid file loads; a TOML float threshold stays the decimal that was written."""
    loaded = load_config(write(tmp_path / "config.toml", CONFIG_TOML))
    rule = loaded.rules[0]
    assert isinstance(rule, ThresholdRuleConfig)
    assert rule.value == Decimal("0.1")
    assert str(rule.value) == "0.1"


def test_relative_paths_are_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """token_file, secret_file and state.path are relative to the config file, not the cwd."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "etc" / "bm"
    loaded = load_config(write(folder / "config.toml", CONFIG_TOML).relative_to(tmp_path))
    sink = loaded.sinks[0]
    assert isinstance(sink, WebhookSinkConfig)
    assert loaded.api is not None
    assert loaded.api.token_file == folder / "secrets" / "token"
    assert sink.secret_file == folder / "secrets" / "hmac"
    assert loaded.state.path == folder / "state" / "monitor.db"


@pytest.mark.parametrize(
    ("state_directory", "path", "expected"),
    [
        pytest.param(None, "monitor.db", BASE_DIR / "monitor.db", id="config-folder"),
        pytest.param("/var/lib/bm", "monitor.db", Path("/var/lib/bm/monitor.db"), id="systemd"),
        pytest.param("/var/lib/bm", "/data/m.db", Path("/data/m.db"), id="absolute-wins"),
        pytest.param(None, "/data/m.db", Path("/data/m.db"), id="absolute"),
        pytest.param("", "monitor.db", BASE_DIR / "monitor.db", id="empty-env"),
    ],
)
def test_state_path_uses_state_directory(
    monkeypatch: pytest.MonkeyPatch, state_directory: str | None, path: str, expected: Path
) -> None:
    """A relative state.path goes into $STATE_DIRECTORY when systemd sets it."""
    if state_directory is None:
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    else:
        monkeypatch.setenv("STATE_DIRECTORY", state_directory)
    loaded = config_from_dict(config(state={"path": path}), base_dir=BASE_DIR)
    assert loaded.state.path == expected


@pytest.mark.parametrize(
    ("token_file", "expected"),
    [
        ("token", BASE_DIR / "token"),
        ("/run/secrets/token", Path("/run/secrets/token")),
        ("$CREDENTIALS_DIRECTORY/token", Path("$CREDENTIALS_DIRECTORY/token")),
    ],
)
def test_secret_file_paths(token_file: str, expected: Path) -> None:
    """Relative secret files join the config folder; absolute and $VAR paths are kept."""
    data = config(api=api(token=DROP, token_file=token_file))
    loaded = config_from_dict(data, base_dir=BASE_DIR)
    assert loaded.api is not None
    assert loaded.api.token_file == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "{path}: no such file", id="missing"),
        pytest.param(
            b'[api]\nurl = "https://x/y"\ntoken = \n',
            "{path}: TOML syntax error: Invalid value (at line 3, column 9)",
            id="syntax-error-names-the-line",
        ),
        pytest.param(b"[api]\nurl = \xff\n", "{path}: not UTF-8 text (byte 12)", id="not-utf8"),
        pytest.param(b"[api\n", "{path}: TOML syntax error: ", id="unclosed-table"),
    ],
)
def test_load_config_file_problems(tmp_path: Path, content: bytes | None, expected: str) -> None:
    """An unreadable or unparsable file is a ConfigError that names the file (and the line)."""
    path = tmp_path / "config.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(expected.format(path=path))


def test_load_config_of_a_directory(tmp_path: Path) -> None:
    """Pointing at a folder says so instead of failing with an OSError."""
    with pytest.raises(ConfigError, match=r"is a directory$"):
        load_config(tmp_path)


def test_load_config_problems_name_the_file(tmp_path: Path) -> None:
    """Validation problems loaded from a file carry the file's name in the message."""
    path = write(tmp_path / "config.toml", CONFIG_TOML.replace("[state]", "[stat]"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: 1 problem"
    assert info.value.problems == ["stat: unknown key"]


def test_toml_syntax_error_does_not_quote_the_secret(tmp_path: Path) -> None:
    """A syntax error on the token's line names the line, never the token."""
    path = write(tmp_path / "c.toml", f'[api]\nurl = "https://x/y"\ntoken = {TOKEN}\n')
    with pytest.raises(ConfigError, match="line 3") as info:
        load_config(path)
    assert TOKEN not in str(info.value)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("env", "file_text", "expected"),
    [
        pytest.param(None, None, TOKEN, id="inline"),
        pytest.param(TOKEN, None, TOKEN, id="env"),
        pytest.param(None, f"{TOKEN}\n", TOKEN, id="file-trailing-newline"),
        pytest.param(None, f"{TOKEN}\r\n\n", TOKEN, id="file-crlf"),
        pytest.param(None, f"  {TOKEN}", f"  {TOKEN}", id="file-keeps-leading-space"),
    ],
)
def test_resolve_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    file_text: str | None,
    expected: str,
) -> None:
    """A secret comes inline, from the environment, or from a file without its newline."""
    if env is not None:
        monkeypatch.setenv("LIME_TOKEN", env)
        ref = SecretRef("api.token_env", None, "LIME_TOKEN", None)
    elif file_text is not None:
        ref = SecretRef("api.token_file", None, None, write(tmp_path / "token", file_text))
    else:
        ref = SecretRef("api.token", SecretStr(TOKEN), None, None)
    assert resolve_secret(ref).get_secret_value() == expected


def test_resolve_secret_expands_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A $CREDENTIALS_DIRECTORY path is expanded when the secret is read (systemd credentials)."""
    write(tmp_path / "token", TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    ref = SecretRef("api.token_file", None, None, Path("$CREDENTIALS_DIRECTORY/token"))
    assert resolve_secret(ref).get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("env-unset", "api.token_env: environment variable LIME_TOKEN is not set"),
        pytest.param("env-empty", "api.token_env: environment variable LIME_TOKEN is not set"),
        pytest.param("file-missing", "api.token_file: cannot read {dir}/absent: "),
        pytest.param("file-is-dir", "api.token_file: cannot read {dir}: "),
        pytest.param("file-empty", "api.token_file: {dir}/token is empty"),
        pytest.param("file-newline-only", "api.token_file: {dir}/token is empty"),
        pytest.param("nothing", "api.token: no secret given"),
    ],
)
def test_resolve_secret_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, expected: str
) -> None:
    """A secret that cannot be read is a ConfigError naming the key and where it looked."""
    monkeypatch.delenv("LIME_TOKEN", raising=False)
    refs = {
        "env-unset": SecretRef("api.token_env", None, "LIME_TOKEN", None),
        "env-empty": SecretRef("api.token_env", None, "LIME_TOKEN", None),
        "file-missing": SecretRef("api.token_file", None, None, tmp_path / "absent"),
        "file-is-dir": SecretRef("api.token_file", None, None, tmp_path),
        "file-empty": SecretRef("api.token_file", None, None, write(tmp_path / "token", "")),
        "file-newline-only": SecretRef("api.token_file", None, None, tmp_path / "token"),
        "nothing": SecretRef("api.token", None, None, None),
    }
    if case == "env-empty":
        monkeypatch.setenv("LIME_TOKEN", "")
    if case == "file-newline-only":
        write(tmp_path / "token", "\n")
    with pytest.raises(ConfigError) as info:
        resolve_secret(refs[case])
    assert str(info.value).startswith(expected.format(dir=tmp_path))


def test_secrets_stay_out_of_repr_and_str() -> None:
    """repr() and str() of a loaded Config, its sections and its secret refs hide every secret."""
    loaded = config_from_dict(config(), base_dir=BASE_DIR)
    texts = [repr(loaded), str(loaded), repr(loaded.sinks), repr(loaded.secret_refs())]
    texts += [loaded.summary(), *(ref.describe() for ref in loaded.secret_refs())]
    assert not [secret for secret in SECRETS for text in texts if secret in text]


# --------------------------------------------------------------------------- the Config object


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(),
            "source https://api.lime.co/accounts (token from inline), every 30s, 3 rules, 3 sinks",
            id="default",
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
    ],
)
def test_summary(data: dict[str, Any], expected: str) -> None:
    """summary() is one line for the log: public URL, token origin, interval, counts."""
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
    ("data", "expected"),
    [
        pytest.param(
            config(),
            [
                ("api.token", TOKEN, None, None),
                ("sinks[0].url", HOOK_URL, None, None),
                ("sinks[0].secret", HMAC, None, None),
                ("sinks[1].url", SLACK_URL, None, None),
            ],
            id="inline",
        ),
        pytest.param(
            config(
                api=api(token=DROP, token_env="LIME_TOKEN"),
                sinks=[
                    log_sink(),
                    webhook(url=DROP, url_file="hook", secret=DROP),
                    slack(url=DROP, url_env="SLACK"),
                ],
            ),
            [
                ("api.token_env", None, "LIME_TOKEN", None),
                ("sinks[1].url_file", None, None, BASE_DIR / "hook"),
                ("sinks[2].url_env", None, "SLACK", None),
            ],
            id="env-and-file",
        ),
    ],
)
def test_secret_refs(
    data: dict[str, Any], expected: list[tuple[str, str | None, str | None, Path | None]]
) -> None:
    """secret_refs() lists every secret with the key that names it, in config order."""
    refs = config_from_dict(data, base_dir=BASE_DIR).secret_refs()
    got = [(r.key, r.value.get_secret_value() if r.value else None, r.env, r.file) for r in refs]
    assert got == expected


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


def test_config_types_match_the_registries() -> None:
    """Every TOML sink and rule type has a factory / evaluator, and nothing else has one."""
    assert set(SINK_CONFIG_TYPES) == set(SINK_FACTORIES)
    assert set(RULE_CONFIG_TYPES) == set(EVALUATORS)


@pytest.mark.parametrize("kind", list(SINK_CONFIG_TYPES))
def test_each_sink_type_has_its_module(kind: str) -> None:
    """The sink of type ``x`` is built by ``monitor.sinks.x.create``: a new sink type is its
    config model and its module, and the registry needs no line of its own."""
    module = importlib.import_module(f"monitor.sinks.{kind}")
    assert callable(module.create)


@pytest.mark.parametrize(
    ("types", "union"), [(SINK_CONFIG_TYPES, SinkConfig), (RULE_CONFIG_TYPES, RuleConfig)]
)
def test_config_types_are_the_union_members_by_their_type(
    types: dict[str, type[BaseModel]], union: object
) -> None:
    """The tables of types list each member of the discriminated union once, under the
    literal of its ``type`` field (what the TOML file writes)."""
    members = typing.get_args(typing.get_args(union)[0])
    assert list(types.values()) == list(members)
    for name, model in types.items():
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


# --------------------------------------------------------------------------- several sources


def test_all_sources_lists_api_as_default_then_sources_in_file_order() -> None:
    """[api] is the source 'default'; [[sources]] follow with their keys and own intervals."""
    data = config(sources=[source(interval="5s"), source(name="fund", oauth=oauth(), token=DROP)])
    loaded = config_from_dict(data, base_dir=BASE_DIR)

    specs = loaded.all_sources()

    assert [(s.name, s.key, s.interval) for s in specs] == [
        ("default", "api", None),
        ("family", "sources[0]", timedelta(seconds=5)),
        ("fund", "sources[1]", None),
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


def test_oauth_secret_refs_name_their_keys() -> None:
    """Each OAuth secret is a ref named by its key (its value hidden in reprs), relative
    *_file paths joined to the config folder, under [api.oauth] or [sources.oauth]."""
    data = config(
        api=api(token=DROP, oauth=oauth(password=DROP, password_file="secrets/pw")),
        sources=[source(token=DROP, oauth=oauth(client_secret=DROP, client_secret_env="CS"))],
        sinks=[log_sink()],
    )
    loaded = config_from_dict(data, base_dir=BASE_DIR)
    refs = loaded.secret_refs()

    assert CLIENT_SECRET not in repr(loaded) + repr(refs)
    assert [(r.key, r.env, r.file) for r in refs] == [
        ("api.oauth.client_id", None, None),
        ("api.oauth.client_secret", None, None),
        ("api.oauth.username", None, None),
        ("api.oauth.password_file", None, BASE_DIR / "secrets" / "pw"),
        ("sources[0].oauth.client_id", None, None),
        ("sources[0].oauth.client_secret_env", "CS", None),
        ("sources[0].oauth.username", None, None),
        ("sources[0].oauth.password", None, None),
    ]


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


def test_a_source_interval_is_refused_under_a_cron_schedule() -> None:
    """A per-source interval would be silently ignored by a cron schedule, so it is an error."""
    data = config(
        schedule={"cron": "*/5 * * * *"},
        sources=[
            {"name": "fund", "url": "https://api.lime.co/accounts", "token": "t", "interval": "10s"}
        ],
    )

    assert problems(data) == ["sources[0].interval: not used with [schedule] cron"]


# --------------------------------------------------------------------------- rule keys and types


def expression(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "pdt", "type": "expression", "when": "daytrades_count >= 3"}, fields)


def delta(**fields: Any) -> dict[str, Any]:
    return _merge({"name": "drop", "type": "delta", "field": "cash", "by": 1000}, fields)


def stale(**fields: Any) -> dict[str, Any]:
    return _merge(
        {"name": "stuck", "type": "stale", "field": "unsettled_cash", "for": "1d"}, fields
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # clear (hysteresis)
        (threshold(op="==", clear=5), ["rules[0].clear: not used with op '=='"]),
        (threshold(op="!=", clear=5), ["rules[0].clear: not used with op '!='"]),
        (threshold(clear=900), ["rules[0].clear: must be at least value (1000) with op '<'"]),
        (threshold(op="<=", clear=999),
         ["rules[0].clear: must be at least value (1000) with op '<='"]),
        (threshold(op=">", clear=1100),
         ["rules[0].clear: must be at most value (1000) with op '>'"]),
        (threshold(op=">=", clear=1001),
         ["rules[0].clear: must be at most value (1000) with op '>='"]),
        (threshold(clear="1200"), ["rules[0].clear: must be a number"]),
        # for, repeat, send_resolved
        (threshold(repeat="30s"), ["rules[0].repeat: must be at least 1m"]),
        (threshold(repeat="59s"), ["rules[0].repeat: must be at least 1m"]),
        (threshold(**{"for": "soon"}), [f"rules[0].for: {DURATION_HELP}"]),
        (threshold(**{"for": "-1m"}), [f"rules[0].for: {DURATION_HELP}"]),
        (threshold(send_resolved="maybe"),
         ["rules[0].send_resolved: Input should be a valid boolean, unable to interpret input"]),
        (restriction(**{"for": "2m"}), ["rules[0].for: unknown key"]),
        (restriction(repeat="1h"), ["rules[0].repeat: unknown key"]),
        (change(clear=1), ["rules[0].clear: unknown key"]),
        # labels
        (threshold(labels={"severity": "high"}),
         ["rules[0].labels: 'severity' is set by balance-monitor itself"]),
        (threshold(labels={"alertname": "x"}),
         ["rules[0].labels: 'alertname' is set by balance-monitor itself"]),
        (restriction(labels={"source": "x"}),
         ["rules[0].labels: 'source' is set by balance-monitor itself"]),
        (restriction(labels={"account_number": "x"}),
         ["rules[0].labels: 'account_number' is set by balance-monitor itself"]),
        (threshold(labels={"team-x": "risk"}),
         ["rules[0].labels: 'team-x' is not a label name (letters, digits and _)"]),
        (threshold(labels={"1team": "risk"}),
         ["rules[0].labels: '1team' is not a label name (letters, digits and _)"]),
        (threshold(labels={"team": ""}), ["rules[0].labels.team: must not be empty"]),
        # templates
        (threshold(summary="{{ cahs }}"),
         ["rules[0].summary: bad template: line 1: 'cahs' is undefined"]),
        (threshold(description="{% if %}"),
         ["rules[0].description: bad template: line 1: Expected an expression, got 'end of "
          "statement block'"]),
        (threshold(summary="{{ labels.teem }}", labels={"team": "risk"}),
         ["rules[0].summary: bad template: line 1: 'dict object' has no attribute 'teem'"]),
        # expression
        (expression(when="cahs > 1.0"),
         ["rules[0].when: expression 'cahs > 1.0' reads an unknown field 'cahs'; did you mean "
          "'cash'?"]),
        (expression(when="has(previous.cahs)"),
         ["rules[0].when: expression 'has(previous.cahs)' reads an unknown field "
          "'previous.cahs'; did you mean 'cash'?"]),
        (expression(when=""), ["rules[0].when: must not be empty"]),
        (expression(when=DROP), ["rules[0].when: required key missing"]),
        # delta
        (delta(by=DROP), ["rules[0]: give exactly one of by, by_pct"]),
        (delta(by_pct=10), ["rules[0]: give exactly one of by, by_pct"]),
        (delta(by=0), ["rules[0].by: must be positive"]),
        (delta(by=DROP, by_pct=-5), ["rules[0].by_pct: must be positive"]),
        (delta(direction="sideways"), ["rules[0].direction: must be one of down, up, any"]),
        (delta(**{"for": "2m"}), ["rules[0].for: needs window (without it a delta is an event)"]),
        (delta(repeat="1h"), ["rules[0].repeat: needs window (without it a delta is an event)"]),
        (delta(window="30s"), ["rules[0].window: must be at least 1m"]),
        (delta(field="margin_type"),
         [f"rules[0].field: 'margin_type' is not a numeric field; use one of {NUMERIC}"]),
        # stale
        (stale(**{"for": DROP}),
         ["rules[0].for: required for a stale rule (how long unchanged is stale)"]),
        (stale(field="unsettled"),
         [f"rules[0].field: unknown field 'unsettled'; use one of {CHANGEABLE}"]),
        (stale(repeat="10s"), ["rules[0].repeat: must be at least 1m"]),
        # account_added / account_removed
        ({"name": "new", "type": "account_added", "for": "1h"}, ["rules[0].for: unknown key"]),
        ({"name": "gone", "type": "account_removed", "field": "cash"},
         ["rules[0].field: unknown key"]),
    ],
)  # fmt: skip
def test_bad_rule_lifecycle_and_type_keys(rule: dict[str, Any], expected: list[str]) -> None:
    """The keys of the rule lifecycle and of the new rule types are checked, by key."""
    assert problems(config(rules=[rule])) == expected


@pytest.mark.parametrize(
    ("when", "line", "column"),
    [("cash >", 1, 7), ("cash > 1.0 &&\n  (margin_type == 'cash'", 2, 25)],
)
def test_expression_syntax_error_names_line_and_column(when: str, line: int, column: int) -> None:
    """A syntax error in `when` names its line and column, and shows where: one problem, its
    excerpt and caret on the lines that follow."""
    [problem] = problems(config(rules=[expression(when=when)]))
    first, *rest = problem.splitlines()
    assert first.startswith(
        f"rules[0].when: syntax error in expression at line {line}, column {column}: "
    )
    assert rest[-1].endswith("^")


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("cash + 1.0", "the result must be true or false, not double"),
        ("daytrades_count", "the result must be true or false, not int"),
        ("margin_type > 1.0", "cannot be evaluated"),
    ],
)
def test_expression_must_be_a_boolean_over_the_fields(when: str, message: str) -> None:
    """An expression that is not a boolean (or cannot be evaluated) over the fields is refused."""
    [problem] = problems(config(rules=[expression(when=when)]))
    assert problem.startswith(f"rules[0].when: expression {when!r} cannot be evaluated: ")
    assert message in problem


def test_rule_lifecycle_keys_are_read() -> None:
    """for, clear, repeat, send_resolved and labels are read; durations become timedeltas."""
    rule = threshold(
        **{"for": "2m", "clear": 1200, "repeat": "4h", "send_resolved": False},
        labels={"team": "risk"},
        summary="{{ account_number }} low: {{ cash_to_withdraw|money }}",
        description="{{ labels.team }}",
    )
    [parsed] = config_from_dict(config(rules=[rule]), base_dir=BASE_DIR).rules
    assert isinstance(parsed, ThresholdRuleConfig)
    assert (parsed.for_, parsed.clear, parsed.repeat, parsed.send_resolved) == (
        timedelta(minutes=2),
        Decimal(1200),
        timedelta(hours=4),
        False,
    )
    assert parsed.labels == {"team": "risk"}
    assert parsed.summary == "{{ account_number }} low: {{ cash_to_withdraw|money }}"


def test_rule_lifecycle_defaults() -> None:
    """Left out: no wait, no hysteresis, no repeat, resolved notified, no labels or templates."""
    [parsed] = config_from_dict(config(rules=[threshold()]), base_dir=BASE_DIR).rules
    assert isinstance(parsed, ThresholdRuleConfig)
    assert (parsed.for_, parsed.clear, parsed.repeat, parsed.send_resolved) == (
        timedelta(0),
        None,
        None,
        True,
    )
    assert (parsed.labels, parsed.summary, parsed.description) == ({}, None, None)


def test_new_rule_types_are_read() -> None:
    """expression, delta (event and windowed), stale, account_added and account_removed load."""
    rules = [
        expression(when="daytrades_count >= 3 && account_value_total < 25000.0"),
        delta(),
        delta(name="drop-1h", by=DROP, by_pct=10, direction="down", window="1h", repeat="2h"),
        stale(ignore=[0, 0.5, "x"]),
        {"name": "new", "type": "account_added", "accounts": ["*@vision"]},
        {"name": "gone", "type": "account_removed", "labels": {"team": "ops"}},
    ]
    parsed = config_from_dict(config(rules=rules), base_dir=BASE_DIR).rules
    assert [r.type for r in parsed] == [
        "expression",
        "delta",
        "delta",
        "stale",
        "account_added",
        "account_removed",
    ]
    windowed = parsed[2]
    assert windowed.type == "delta"
    assert (windowed.window, windowed.by_pct, windowed.direction) == (
        timedelta(hours=1),
        Decimal(10),
        "down",
    )
    stuck = parsed[3]
    assert stuck.type == "stale"
    assert stuck.for_ == timedelta(days=1)
    assert list(stuck.ignore) == [0, Decimal("0.5"), "x"]


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
