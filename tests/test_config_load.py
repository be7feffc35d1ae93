"""Tests for monitor.config.load: reading the file, its problems, and relative paths."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from config_helpers import BASE_DIR, DROP, HOOK_URL, TOKEN, api, config, write

from monitor.config import (
    EmailSinkConfig,
    ThresholdRuleConfig,
    WebhookSinkConfig,
    config_from_dict,
    load_config,
)
from monitor.errors import ConfigError

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
    assert info.value.problems == ["stat: unknown key (did you mean 'state'?)"]


def test_toml_syntax_error_does_not_quote_the_secret(tmp_path: Path) -> None:
    """A syntax error on the token's line names the line, never the token."""
    path = write(tmp_path / "c.toml", f'[api]\nurl = "https://x/y"\ntoken = {TOKEN}\n')
    with pytest.raises(ConfigError, match="line 3") as info:
        load_config(path)
    assert TOKEN not in str(info.value)


def test_error_message_counts_the_problems() -> None:
    """The ConfigError's message names the origin and how many problems follow."""
    with pytest.raises(ConfigError, match=r"^cfg\.toml: 2 problems$"):
        config_from_dict(config(extra={}, more={}), base_dir=BASE_DIR, origin="cfg.toml")


def test_email_ca_file_and_credentials_are_relative_to_the_config_folder() -> None:
    """The email sink's ca_file and *_file credentials join the config folder like any path."""
    email = {
        "name": "mail",
        "type": "email",
        "host": "smtp.example.com",
        "from": "bm@example.com",
        "to": ["ops@example.com"],
        "username": "bm",
        "password_file": "secrets/smtp",
        "ca_file": "ca.pem",
    }
    loaded = config_from_dict(config(sinks=[email], rules=[]), base_dir=BASE_DIR)
    sink = loaded.sinks[0]
    assert isinstance(sink, EmailSinkConfig)
    assert (sink.ca_file, sink.password_file) == (BASE_DIR / "ca.pem", BASE_DIR / "secrets/smtp")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x = " + "[" * 5000 + "]" * 5000 + "\n", id="arrays"),
        pytest.param("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", id="inline-tables"),
    ],
)
def test_toml_nested_too_deeply_is_a_config_error(tmp_path: Path, text: str) -> None:
    """The standard TOML parser recurses once per level of nesting: thousands of levels were a
    RecursionError traceback; now they are a ConfigError naming the file."""
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match=r"TOML syntax error: nested too deeply"):
        load_config(path)
