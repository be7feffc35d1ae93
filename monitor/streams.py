"""The daemon's account streams: one :class:`~monitor.stream.AccountStream` per source with
``stream = true``, started and stopped with the source's poll job, its state in the metrics
and (for ``status``) in the store."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
import structlog

from monitor.config import SourceSpec
from monitor.errors import MonitorError
from monitor.metrics import Metrics
from monitor.pipeline import SourcePipeline
from monitor.runtime import utcnow
from monitor.source import BalancesSource
from monitor.store import Store
from monitor.stream import AccountStream, StreamState

__all__ = ["Streams"]

log = structlog.get_logger("monitor.streams")


class Streams:
    """The running streams, by source."""

    def __init__(self, metrics: Metrics, session: aiohttp.ClientSession, store: Store) -> None:
        self.metrics = metrics
        self.session = session
        self.store = store
        self._streams: dict[str, AccountStream] = {}
        #: How many connections of each stream ended so far (the reconnect counter's).
        self._ends: dict[str, int] = {}
        #: Streams being stopped for good (removed, turned off): ``status`` stops showing them.
        self._ending: set[str] = set()
        self._writes: set[asyncio.Task[None]] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._streams

    def start(self, spec: SourceSpec, pipeline: SourcePipeline) -> None:
        """Open the source's account stream (if ``stream = true``): pushes go through the same
        pipeline as polls, serialized with them, with the poll's token provider."""
        fetcher = pipeline.fetcher
        if not spec.config.stream or not isinstance(fetcher, BalancesSource):
            return
        name = spec.name
        stream = AccountStream(
            name,
            spec.config.stream_address,
            self.session,
            fetcher.tokens,
            pipeline,
            clock=utcnow,
            on_message=functools.partial(self.metrics.stream_message, name),
            on_change=functools.partial(self._changed, name),
        )
        self._streams[name] = stream
        self._ends[name] = 0
        self.metrics.declare_stream(name)
        stream.start()

    async def stop(self, name: str, *, for_good: bool = True) -> None:
        """Close the source's stream; ``for_good`` (removed, or turned off): ``status`` no
        longer shows it (after a shutdown it shows it down)."""
        stream = self._streams.get(name)
        if stream is None:
            return
        if for_good:
            self._ending.add(name)
        await stream.close()
        del self._streams[name]
        self._ending.discard(name)
        self._ends.pop(name, None)
        if for_good:
            self.metrics.forget_stream(name)

    async def hand_over(self, name: str) -> None:
        """Close the stream of a source another replica holds now: its owner shows it (in
        ``status`` and its metrics); here its gauge goes, so it does not read as down."""
        await self.stop(name, for_good=False)
        self.metrics.forget_stream(name)

    async def close(self, grace: float) -> None:
        """Stop every stream (shown down in ``status``) and wait for their state writes."""
        for name in list(self._streams):
            await self.stop(name, for_good=False)
        if self._writes:
            await asyncio.wait(self._writes, timeout=grace)

    def polled(self, name: str) -> None:
        """The source was polled: its accounts may have changed (subscribe to new ones)."""
        stream = self._streams.get(name)
        if stream is not None:
            stream.wake()

    def state(self, name: str) -> StreamState | None:
        stream = self._streams.get(name)
        return stream.state if stream is not None else None

    def _changed(self, name: str, state: StreamState) -> None:
        """The stream connected or ended: metrics now, ``status`` through the store."""
        ended = state.reconnects - self._ends.get(name, 0)
        self._ends[name] = state.reconnects
        self.metrics.set_stream(name, connected=state.connected, ended=ended)
        record = {
            "enabled": name not in self._ending,
            "connected": state.connected,
            "since": state.since.isoformat() if state.since is not None else None,
            "reconnects": state.reconnects,
            "last_error": state.last_error,
        }
        task = asyncio.create_task(self._record(name, record))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _record(self, name: str, record: dict[str, Any]) -> None:
        try:
            await self.store.record_stream(name, record)
        except MonitorError as exc:  # status shows an older state; the stream goes on
            log.warning("stream_state_not_written", source=name, error=str(exc))
