"""How the service itself runs: ``[state]``, ``[delivery]``, ``[http]`` and ``[log]``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator

from monitor.config.types import FrozenModel, within


class StateConfig(FrozenModel):
    path: Path = Path("balance-monitor.db")


class DeliveryConfig(FrozenModel):
    max_age: Annotated[timedelta, within("1m", "30d")] = timedelta(hours=24)
    initial_backoff: Annotated[timedelta, within("10ms", "1h")] = timedelta(seconds=2)
    max_backoff: Annotated[timedelta, within("10ms", "1d")] = timedelta(minutes=5)
    once_deadline: Annotated[timedelta, within("0s", "10m")] = timedelta(seconds=30)


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"`` or ``":9464"`` (all interfaces) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("must be HOST:PORT, e.g. '127.0.0.1:9464'")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ":PORT" asks for every interface


class HttpConfig(FrozenModel):
    """``[http]``: the metrics and health endpoints; off unless ``listen`` is set."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class LogConfig(FrozenModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] | None = None
