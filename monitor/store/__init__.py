"""The state store: what the monitor keeps between polls and restarts.

:class:`Store` (:mod:`monitor.store.base`) is what the rest of the monitor uses; SQLite
(:mod:`monitor.store.sqlite`) keeps it, with the schema and its migrations in
:mod:`monitor.store.schema`. :func:`open_store` opens the backend a configured state names.
"""

from __future__ import annotations

from pathlib import Path

from monitor.store.base import (
    KEEP_FINISHED_SECONDS,
    AlertRow,
    HeldRow,
    Mark,
    OutboxRow,
    OutboxSummary,
    SinkQueue,
    SourceRow,
    Store,
)
from monitor.store.schema import SCHEMA_VERSION
from monitor.store.sqlite import SqliteStore

__all__ = [
    "KEEP_FINISHED_SECONDS",
    "SCHEMA_VERSION",
    "AlertRow",
    "HeldRow",
    "Mark",
    "OutboxRow",
    "OutboxSummary",
    "SinkQueue",
    "SourceRow",
    "SqliteStore",
    "Store",
    "open_store",
]


async def open_store(path: Path, *, readonly: bool = False) -> Store:
    """Open the state database at ``path`` (SQLite), creating or migrating it unless
    ``readonly`` (``status``: creates no file, changes nothing, reads an older schema as is)."""
    return await SqliteStore.open(path, readonly=readonly)
