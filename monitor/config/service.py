"""How the service itself runs: ``[state]``, ``[delivery]``, ``[http]`` and ``[log]``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import SecretStr, field_validator

from monitor.config.secrets import Secret, SecretRef, WithSecrets
from monitor.config.types import FrozenModel, within


class StateConfig(FrozenModel):
    path: Path = Path("balance-monitor.db")


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


class LogConfig(FrozenModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] | None = None
