"""Secrets: where the config says each one is, and reading it only when a command needs it.

A secret key ``x`` is spelled three ways in TOML: ``x`` (inline), ``x_env`` (an environment
variable) or ``x_file`` (a file, e.g. ``$CREDENTIALS_DIRECTORY/x`` under systemd). Loading the
config never reads one (``check-config`` works on a machine that does not hold them): a
:class:`SecretRef` says where it is, :func:`resolve_secret` reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, SecretStr, model_validator

from monitor.config.types import FrozenModel, config_path
from monitor.errors import ConfigError


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from, for messages: never the secret itself."""

    key: str  # e.g. "api.token_env"
    value: SecretStr | None
    env: str | None
    file: Path | None
    #: Checks a value read from ``env`` or ``file`` (raises ``ValueError`` with a message that
    #: does not quote it); an inline value was checked when the file was loaded.
    check: Callable[[str], object] | None = field(default=None, repr=False, compare=False)

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
        return _checked(ref, text, f"environment variable {ref.env}")
    if ref.file is not None:
        try:
            text = _expand_credentials(ref.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{ref.key}: cannot read {ref.file}: {exc.strerror}") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{ref.key}: {ref.file} is not UTF-8 text") from None
        text = text.rstrip("\r\n")
        if not text:
            raise ConfigError(f"{ref.key}: {ref.file} is empty")
        return _checked(ref, text, f"file {ref.file}")
    raise ConfigError(f"{ref.key}: no secret given")


def _checked(ref: SecretRef, text: str, origin: str) -> SecretStr:
    if ref.check is not None:
        try:
            ref.check(text)
        except ValueError as exc:
            raise ConfigError(f"{ref.key}: {origin}: {exc}") from None
    return SecretStr(text)


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


@dataclass(frozen=True)
class Secret:
    """One secret of a table and its three TOML spellings: ``x``, ``x_env`` and ``x_file``.

    The table declares the three fields (``SecretStr``, ``str`` and ``Path``, each optional) and
    names the secret in its ``SECRETS``; this is the one place that reads them by name.
    """

    name: str
    required: bool = True
    #: Checks the secret's value where it is read (see :attr:`SecretRef.check`).
    check_value: Callable[[str], object] | None = None

    @property
    def keys(self) -> tuple[str, str, str]:
        """The spellings, as the TOML file and the model's fields name them."""
        return (self.name, f"{self.name}_env", f"{self.name}_file")

    @property
    def file_key(self) -> str:
        return self.keys[2]

    def read(self, table: BaseModel) -> tuple[SecretStr | None, str | None, Path | None]:
        """The inline value, the variable's name and the file of ``table``'s secret."""
        value, env, file = (getattr(table, key) for key in self.keys)
        if not (
            isinstance(value, SecretStr | None)
            and isinstance(env, str | None)
            and isinstance(file, Path | None)
        ):
            raise TypeError(f"{type(table).__name__}: {', '.join(self.keys)} are not a secret")
        return value, env, file

    def given(self, table: BaseModel) -> list[str]:
        """The spellings ``table`` sets, in order."""
        values = self.read(table)
        return [key for key, got in zip(self.keys, values, strict=True) if got is not None]

    def check(self, table: BaseModel) -> None:
        """``ValueError`` unless ``table`` spells the secret at most once (once if required)."""
        given = self.given(table)
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(self.keys)} (got {', '.join(given)})")
        if self.required and not given:
            raise ValueError(f"one of {', '.join(self.keys)} is required")

    def ref(self, table: BaseModel, prefix: str) -> SecretRef | None:
        """Where the secret of the table at ``prefix`` comes from (``None`` when it is unset)."""
        value, env, file = self.read(table)
        if value is None and env is None and file is None:
            return None
        suffix = "_env" if env is not None else "_file" if file is not None else ""
        return SecretRef(f"{prefix}.{self.name}{suffix}", value, env, file, self.check_value)

    def required_ref(self, table: BaseModel, prefix: str) -> SecretRef:
        """:meth:`ref` of a secret the table's validator makes present."""
        ref = self.ref(table, prefix)
        if ref is None:
            raise ConfigError("a required secret is missing")
        return ref


class WithSecrets(FrozenModel):
    """A table with secrets: each spelled at most once (once if required), each ``x_file``
    relative to the config file's folder."""

    #: The table's secrets; a class whose fields do not spell one of them is refused.
    SECRETS: ClassVar[tuple[Secret, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for secret in cls.SECRETS:
            missing = [key for key in secret.keys if key not in cls.model_fields]
            if missing:
                raise TypeError(f"{cls.__name__}: secret {secret.name} needs {', '.join(missing)}")

    @model_validator(mode="after")
    def _secret_spellings(self) -> Self:
        self._check_secrets()
        return self

    def _check_secrets(self) -> None:
        for secret in self.SECRETS:
            secret.check(self)

    def secret_named(self, name: str) -> Secret:
        """The secret called ``name`` in :attr:`SECRETS`."""
        for secret in self.SECRETS:
            if secret.name == name:
                return secret
        raise AttributeError(f"{type(self).__name__} has no secret {name}")

    def with_paths_under(self, base_dir: Path) -> Self:
        """This table with its relative paths joined to ``base_dir``, the config file's folder."""
        return self.model_copy(update=self._paths_under(base_dir))

    def _paths_under(self, base_dir: Path) -> dict[str, Any]:
        """The fields :meth:`with_paths_under` replaces; a table with other paths adds them."""
        return {s.file_key: config_path(s.read(self)[2], base_dir) for s in self.SECRETS}
