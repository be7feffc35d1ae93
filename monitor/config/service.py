"""How the service itself runs: ``[state]``, ``[delivery]``, ``[http]`` and ``[log]``."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr, field_validator, model_validator

from monitor.config.secrets import Secret, SecretRef, WithSecrets
from monitor.config.types import FrozenModel, check_http_url, check_url_secret, within

#: What ``[state] url`` needs installed, named in the error when it is missing.
POSTGRES_EXTRA = "pip install 'balance-monitor[postgres]'"


class StateConfig(WithSecrets):
    """``[state]``: a SQLite file (``path``, the default) or a PostgreSQL shared by replicas
    (``url``, with ``password``/``password_env``/``password_file``, ``replica``, ``lease``)."""

    SECRETS: ClassVar[tuple[Secret, ...]] = (Secret("password", required=False),)

    path: Path = Path("balance-monitor.db")
    url: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    replica: str | None = None
    lease: Annotated[timedelta, within("1s", "10m")] = timedelta(seconds=15)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        try:
            import psycopg  # noqa: F401 - only to know it is there
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise ValueError(f"a PostgreSQL state needs its driver: {POSTGRES_EXTRA}") from None
        return value

    @field_validator("replica")
    @classmethod
    def _replica(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> Self:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("give either path (SQLite) or url (PostgreSQL), not both")
        if self.url is None:
            given = self.secret_named("password").given(self)
            given += [k for k in ("replica",) if getattr(self, k) is not None]
            if "lease" in self.model_fields_set:
                given.append("lease")
            if given:
                raise ValueError(f"{', '.join(given)}: only with url (PostgreSQL)")
        return self

    @property
    def postgres(self) -> bool:
        return self.url is not None

    @property
    def replica_name(self) -> str:
        """This process's name among the replicas: ``replica``, or hostname:pid."""
        return self.replica or f"{socket.gethostname()}:{os.getpid()}"

    def password_ref(self) -> SecretRef | None:
        return self.secret_named("password").ref(self, "state")

    def where(self) -> str:
        """Where the state lives, for logs and ``status``: the path, or the URL without any
        password it may hold."""
        if self.url is None:
            return str(self.path)
        return public_url(self.url)


#: libpq's connection parameters that hold a secret, as a URL's query may give them.
_SECRET_PARAMETERS = ("password", "sslpassword")


def public_url(url: str) -> str:
    """``url`` without the passwords it may hold: in its user part (``user:***@host``) or as
    libpq's ``password``/``sslpassword`` parameters in its query (``password=***``)."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username}:***@{host}")
    if parts.query:
        pairs = [p.partition("=") for p in parts.query.split("&")]
        parts = parts._replace(
            query="&".join(
                f"{k}{eq}***" if k in _SECRET_PARAMETERS and eq else f"{k}{eq}{v}"
                for k, eq, v in pairs
            )
        )
    return urlunsplit(parts)


def url_secrets(url: str) -> list[str]:
    """The passwords ``url`` holds (to be scrubbed from what the driver says), decoded and
    as written."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key in _SECRET_PARAMETERS and value:
            found += [value, unquote(value)]
    if parts.password:
        found.append(unquote(parts.password))
    return [s for s in dict.fromkeys(found) if s]


class DeliveryConfig(FrozenModel):
    max_age: Annotated[timedelta, within("1m", "30d")] = timedelta(hours=24)
    initial_backoff: Annotated[timedelta, within("10ms", "1h")] = timedelta(seconds=2)
    max_backoff: Annotated[timedelta, within("10ms", "1d")] = timedelta(minutes=5)
    once_deadline: Annotated[timedelta, within("0s", "10m")] = timedelta(seconds=30)
    #: How long delivered, failed and expired notifications stay in the outbox (pruned hourly).
    keep_finished: Annotated[timedelta, within("1h", "365d")] = timedelta(days=7)


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"`` or ``":9464"`` (all interfaces) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("must be HOST:PORT, e.g. '127.0.0.1:9464'")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ":PORT" asks for every interface


_AUTH_TOKEN = Secret("auth_token", required=False)


class HttpConfig(WithSecrets):
    """``[http]``: the metrics and health endpoints (and the routes later sections add); off
    unless ``listen`` is set.

    ``auth_token`` (or ``auth_token_env`` / ``auth_token_file``), when given, is asked of every
    route but ``/healthz``: as ``Authorization: Bearer <token>``, or as the password of HTTP basic
    auth (any user name) so that a browser can prompt for it. Without it every route that changes
    something answers 403. ``ui = false`` leaves the pages out and keeps the API.
    """

    SECRETS: ClassVar[tuple[Secret, ...]] = (_AUTH_TOKEN,)

    listen: str | None = None
    ui: bool = True
    auth_token: SecretStr | None = None
    auth_token_env: str | None = None
    auth_token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None

    def auth_token_ref(self) -> SecretRef | None:
        """Where the token is, when one is configured."""
        return _AUTH_TOKEN.ref(self, "http")


class HistoryConfig(FrozenModel):
    """``[history]``: how long account history and the record of notifications are kept."""

    keep: Annotated[timedelta, within("1h", "3650d")] = timedelta(days=90)


_HEARTBEAT_URL = Secret("url", check_value=check_http_url)


class HeartbeatConfig(WithSecrets):
    """``[heartbeat]``: a URL pinged every ``every`` while the monitor does its job (every
    source polled successfully at its last poll, the outbox not stuck), so that something
    outside this machine notices when it dies or wedges. The URL is a secret (it holds the
    check's key): ``url``, ``url_env`` or ``url_file``."""

    SECRETS: ClassVar[tuple[Secret, ...]] = (_HEARTBEAT_URL,)

    url: SecretStr | None = None
    url_env: str | None = None
    url_file: Path | None = None

    _url_check = field_validator("url")(classmethod(lambda cls, v: check_url_secret(v)))

    every: Annotated[timedelta, within("1s", "1d")] = timedelta(minutes=1)
    method: Literal["GET", "POST"] = "GET"
    timeout: Annotated[timedelta, within("100ms", "1m")] = timedelta(seconds=10)

    def url_ref(self) -> SecretRef:
        """Where the URL is (one of ``url``, ``url_env``, ``url_file`` is required)."""
        return _HEARTBEAT_URL.required_ref(self, "heartbeat")


class LogConfig(FrozenModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] | None = None
