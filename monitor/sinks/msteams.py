"""``type = "msteams"``: being written."""

from __future__ import annotations

from typing import Any

import aiohttp

from monitor.errors import ConfigError
from monitor.sinks.base import Sink


def create(config: Any, *, index: int, session: aiohttp.ClientSession) -> Sink:
    raise ConfigError(f"sinks[{index}].type: the msteams sink is not written yet")
