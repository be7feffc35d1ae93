"""Secrets: where the config says each one is, and reading it only when a command needs it.

A secret key ``x`` is spelled three ways in TOML: ``x`` (inline), ``x_env`` (an environment
variable) or ``x_file`` (a file, e.g. ``$CREDENTIALS_DIRECTORY/x`` under systemd). Loading the
config never reads one (``check-config`` works on a machine that does not hold them): a
:class:`SecretRef` says where it is, :func:`resolve_secret` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, SecretStr

from monitor.errors import ConfigError


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from, for messages: never the secret itself."""

    key: str  # e.g. "api.token_env"
    value: SecretStr | None
    env: str | None
    file: Path | None

    def describe(self) -> str:
        if self.env is not None:
            return f"env {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return "inline"


def resolve_secret(ref: SecretRef) -> SecretStr:
    """Read a secret where the config says it is; a ``ConfigError`` names the key, not the value."""
    if ref.value is not None:
        return ref.value
    if ref.env is not None:
        text = os.environ.get(ref.env)
        if not text:
            raise ConfigError(f"{ref.key}: environment variable {ref.env} is not set")
        return SecretStr(text)
    if ref.file is not None:
        try:
            text = _expand_credentials(ref.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{ref.key}: cannot read {ref.file}: {exc.strerror}") from exc
        text = text.rstrip("\r\n")
        if not text:
            raise ConfigError(f"{ref.key}: {ref.file} is empty")
        return SecretStr(text)
    raise ConfigError(f"{ref.key}: no secret given")


def _expand_credentials(path: Path) -> Path:
    """``$CREDENTIALS_DIRECTORY/token`` works as systemd's ``LoadCredential=`` intends."""
    return Path(os.path.expandvars(str(path)))


def check_secret(ref: SecretRef) -> str | None:
    """A note when a secret cannot be resolved here (``check-config`` reports it, not fatal)."""
    try:
        resolve_secret(ref)
    except ConfigError as exc:
        return str(exc)
    return None


def check_secret_spellings(model: BaseModel, name: str, *, required: bool) -> None:
    given = [
        key for key in (name, f"{name}_env", f"{name}_file") if getattr(model, key) is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"give only one of {name}, {name}_env, {name}_file (got {', '.join(given)})"
        )
    if required and not given:
        raise ValueError(f"one of {name}, {name}_env, {name}_file is required")


def make_ref(
    prefix: str, name: str, value: SecretStr | None, env: str | None, file: Path | None
) -> SecretRef:
    suffix = "_env" if env is not None else "_file" if file is not None else ""
    return SecretRef(f"{prefix}.{name}{suffix}", value, env, file)


def required(ref: SecretRef | None) -> SecretRef:
    if ref is None:  # the model validator makes required secrets present
        raise ConfigError("a required secret is missing")
    return ref
