"""The state store: what the monitor keeps between polls and restarts.

:class:`Store` (:mod:`monitor.store.base`) is what the rest of the monitor uses; SQLite
(:mod:`monitor.store.sqlite`) or PostgreSQL (:mod:`monitor.store.postgres`) keeps it, with one
schema and its migrations (:mod:`monitor.store.schema`) and one text of SQL
(:mod:`monitor.store.sqlite_ops`) for both. :func:`open_store` opens the backend a configured
state names.
"""

from __future__ import annotations

from pathlib import Path

from monitor.config import StateConfig, resolve_secret
from monitor.store.base import (
    KEEP_FINISHED_SECONDS,
    AccountRow,
    AlertRef,
    AlertRow,
    AttemptRow,
    DeliveryRow,
    HeldRow,
    LeaseRow,
    Mark,
    NotificationRecord,
    OutboxRow,
    OutboxSummary,
    PollRow,
    ReplicaRow,
    SeriesRow,
    SinkQueue,
    SourceRow,
    Store,
)
from monitor.store.schema import SCHEMA_VERSION
from monitor.store.sqlite import SqliteStore

__all__ = [
    "KEEP_FINISHED_SECONDS",
    "SCHEMA_VERSION",
    "AccountRow",
    "AlertRef",
    "AlertRow",
    "AttemptRow",
    "DeliveryRow",
    "HeldRow",
    "LeaseRow",
    "Mark",
    "NotificationRecord",
    "OutboxRow",
    "OutboxSummary",
    "PollRow",
    "ReplicaRow",
    "SeriesRow",
    "SinkQueue",
    "SourceRow",
    "SqliteStore",
    "Store",
    "open_store",
]


async def open_store(
    state: StateConfig | Path, *, readonly: bool = False, control: bool = False
) -> Store:
    """Open the state database ``[state]`` names (a path: SQLite), creating or migrating it
    unless ``readonly`` (``status``: creates no file, changes nothing, reads an older schema
    as is). ``control``: for writing silences and acknowledgements next to a running daemon
    (SQLite: without its lock; PostgreSQL needs nothing more). A PostgreSQL state's password
    is read here (a ConfigError when it cannot be)."""
    if isinstance(state, Path):
        return await SqliteStore.open(state, readonly=readonly, control=control)
    if state.url is None:
        return await SqliteStore.open(state.path, readonly=readonly, control=control)
    from monitor.store.postgres import PostgresStore

    return await PostgresStore.open(
        state.url,
        _password(state),
        replica=state.replica_name,
        claim_ttl=state.lease.total_seconds(),
        readonly=readonly,
    )


def _password(state: StateConfig) -> str | None:
    ref = state.password_ref()
    return resolve_secret(ref).get_secret_value() if ref is not None else None
