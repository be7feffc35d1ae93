"""The sink types by their TOML ``type``, and building the configured sinks.

``SINK_FACTORIES`` has the keys of :data:`monitor.config.SINK_CONFIG_TYPES`: the sink of type
``x`` is built by ``monitor.sinks.x.create``. Each sink's module is imported when a sink of its
type is built, so a daemon pays (in start-up time and memory) only for the sinks it uses: the
email sink's SMTP client, Apprise's plugins.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from monitor.config import SINK_CONFIG_TYPES, SinkConfig
from monitor.errors import ConfigError

if TYPE_CHECKING:  # only types: check-config uses this module without the HTTP client
    import aiohttp

    from monitor.sinks.base import Sink


class SinkFactory(Protocol):
    """Builds a sink from its config model; may raise ``ConfigError`` (unresolvable secret)."""

    def __call__(
        self, config: SinkConfig, *, index: int, session: aiohttp.ClientSession
    ) -> Sink: ...


def _factory(module: str) -> SinkFactory:
    """``monitor.sinks.<module>.create``, imported on first use."""

    def create(config: SinkConfig, *, index: int, session: aiohttp.ClientSession) -> Sink:
        made: SinkFactory = importlib.import_module(f"monitor.sinks.{module}").create
        return made(config, index=index, session=session)

    return create


SINK_FACTORIES: Mapping[str, SinkFactory] = {name: _factory(name) for name in SINK_CONFIG_TYPES}


def build_sink(config: SinkConfig, *, index: int, session: aiohttp.ClientSession) -> Sink:
    """The sink for ``sinks[index]``; ``ConfigError`` names the key when it cannot be built."""
    factory = SINK_FACTORIES.get(config.type)
    if factory is None:
        raise ConfigError(f"{config.key(index)}.type: unknown sink type '{config.type}'")
    return factory(config, index=index, session=session)


def build_sinks(configs: Sequence[SinkConfig], session: aiohttp.ClientSession) -> dict[str, Sink]:
    """Every configured sink by name; built sinks hold nothing yet, so a failure leaks nothing."""
    sinks: dict[str, Sink] = {}
    for index, config in enumerate(configs):
        if config.name in sinks:
            raise ConfigError(f"{config.key(index)}.name: duplicate sink name '{config.name}'")
        sinks[config.name] = build_sink(config, index=index, session=session)
    return sinks
