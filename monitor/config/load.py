"""Reading the file: where it is, TOML to models, and paths made relative to the file's folder."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from monitor.config.messages import format_validation_errors
from monitor.config.root import Config, plural
from monitor.config.sinks import EmailSinkConfig
from monitor.config.sources import OAUTH_SECRETS, SourceBase
from monitor.errors import ConfigError

ENV_CONFIG = "BALANCE_MONITOR_CONFIG"
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
    return config_from_dict(data, base_dir=path.resolve().parent, origin=str(path))


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path, origin: str = "config") -> Config:
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        problems = format_validation_errors(exc)
        raise ConfigError(f"{origin}: {plural(len(problems), 'problem')}", problems) from None
    return _resolve_paths(config, base_dir)


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    def fix(path: Path | None) -> Path | None:
        if path is None or path.is_absolute() or str(path).startswith("$"):
            return path
        return base_dir / path

    state_path = config.state.path
    if not state_path.is_absolute():
        state_dir = os.environ.get("STATE_DIRECTORY")  # systemd's StateDirectory=
        state_path = Path(state_dir) / state_path if state_dir else base_dir / state_path
    sinks = tuple(
        sink.model_copy(
            update={
                **{f"{n}_file": fix(getattr(sink, f"{n}_file")) for n in sink.SECRETS},
                **({"ca_file": fix(sink.ca_file)} if isinstance(sink, EmailSinkConfig) else {}),
            }
        )
        for sink in config.sinks
    )

    def fix_source(source: _S) -> _S:
        update: dict[str, Any] = {"token_file": fix(source.token_file)}
        if source.oauth is not None:
            update["oauth"] = source.oauth.model_copy(
                update={f"{n}_file": fix(getattr(source.oauth, f"{n}_file")) for n in OAUTH_SECRETS}
            )
        return source.model_copy(update=update)

    return config.model_copy(
        update={
            "api": fix_source(config.api) if config.api is not None else None,
            "sources": tuple(fix_source(s) for s in config.sources),
            "state": config.state.model_copy(update={"path": state_path}),
            "sinks": sinks,
        }
    )


_S = TypeVar("_S", bound=SourceBase)
