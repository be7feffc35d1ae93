"""Reading the file: where it is, TOML to models, and paths made relative to the file's folder."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.config.messages import format_validation_errors
from monitor.config.root import Config, plural
from monitor.config.service import parse_listen
from monitor.errors import ConfigError

ENV_CONFIG = "BALANCE_MONITOR_CONFIG"
#: ``[http] listen`` when the file sets none (the container image sets it: its HEALTHCHECK).
ENV_LISTEN = "BALANCE_MONITOR_LISTEN"
DEFAULT_CONFIG = Path("config.toml")


def default_config_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_CONFIG


def load_config(path: Path) -> Config:
    """Read, parse and validate the file; every problem is a ``ConfigError`` naming the key."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from exc
    except RecursionError:  # the parser recurses once per level of nested arrays and tables
        raise ConfigError(f"{path}: TOML syntax error: nested too deeply") from None
    return config_from_dict(data, base_dir=path.resolve().parent, origin=str(path))


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path, origin: str = "config") -> Config:
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        problems = format_validation_errors(exc, data)
        raise ConfigError(f"{origin}: {plural(len(problems), 'problem')}", problems) from None
    return _listen_from_environment(_resolve_paths(config, base_dir))


def _listen_from_environment(config: Config) -> Config:
    """``$BALANCE_MONITOR_LISTEN`` stands in for an ``[http] listen`` the file does not set."""
    listen = os.environ.get(ENV_LISTEN)
    if not listen or config.http.listen is not None:
        return config
    try:
        parse_listen(listen)
    except ValueError:
        raise ConfigError(f"{ENV_LISTEN}: must be HOST:PORT, e.g. '0.0.0.0:9464'") from None
    return config.model_copy(update={"http": config.http.model_copy(update={"listen": listen})})


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    state_path = config.state.path
    if not state_path.is_absolute():
        state_dir = os.environ.get("STATE_DIRECTORY")  # systemd's StateDirectory=
        state_path = Path(state_dir) / state_path if state_dir else base_dir / state_path
    return config.model_copy(
        update={
            "api": config.api.with_paths_under(base_dir) if config.api is not None else None,
            "sources": tuple(s.with_paths_under(base_dir) for s in config.sources),
            "state": config.state.with_paths_under(base_dir).model_copy(
                update={"path": state_path}
            ),
            "sinks": tuple(s.with_paths_under(base_dir) for s in config.sinks),
            "http": config.http.with_paths_under(base_dir),
            "heartbeat": (
                config.heartbeat.with_paths_under(base_dir)
                if config.heartbeat is not None
                else None
            ),
        }
    )
