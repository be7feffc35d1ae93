"""The schema and its migrations, in one place, for SQLite and PostgreSQL alike.

A new database gets :data:`SCHEMA` and records :data:`SCHEMA_VERSION`. An older one is brought
up by the steps of :data:`MIGRATIONS` from its version on, each taking version ``N`` to
``N + 1``; :func:`monitor.store.sqlite_ops.upgrade` applies them all in one transaction (on
PostgreSQL under a transaction-scoped advisory lock, so replicas started together do not
race). A database written by a newer release is refused and left as it is.

The statements are written in SQLite's dialect; :func:`postgres` turns one into PostgreSQL's
(``INTEGER PRIMARY KEY AUTOINCREMENT`` an identity column, ``REAL`` a double, no ``WITHOUT
ROWID``), and :data:`POSTGRES_EXTRA` adds what SQLite has built in (``json_extract``).

To change the schema: change :data:`SCHEMA`, add the step that takes the previous version to
the new one, and raise :data:`SCHEMA_VERSION` (a test checks that the steps reach it). Both
backends run the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 4

_META = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)"""
_ACCOUNTS = """
CREATE TABLE IF NOT EXISTS accounts (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    record TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    PRIMARY KEY (source, account_number)
) WITHOUT ROWID"""
_SOURCES = """
CREATE TABLE IF NOT EXISTS sources (
    source TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0,
    last_poll_at TEXT,
    last_result TEXT,
    last_error TEXT,
    last_success_at TEXT,
    account_count INTEGER
)"""
_ALERTS = """
CREATE TABLE IF NOT EXISTS alerts (
    source TEXT NOT NULL,
    rule TEXT NOT NULL,
    account_number TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'firing',
    notified_at TEXT,
    PRIMARY KEY (source, rule, account_number)
) WITHOUT ROWID"""
_DEPARTED = """
CREATE TABLE IF NOT EXISTS departed (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    record TEXT NOT NULL,
    left_at TEXT NOT NULL,
    PRIMARY KEY (source, account_number)
) WITHOUT ROWID"""
_HISTORY = """
CREATE TABLE IF NOT EXISTS history (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    field TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, account_number, field, observed_at)
) WITHOUT ROWID"""
_HELD = """
CREATE TABLE IF NOT EXISTS held (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    mute TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (id, sink)
)"""
_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed', 'expired')),
    last_error TEXT,
    updated_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    UNIQUE (id, sink)
)"""
_OUTBOX_PENDING = "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, state, seq)"
#: The replicas sharing a database (PostgreSQL): each heartbeats its row. Times are the
#: database's clock, in epoch seconds.
_REPLICAS = """
CREATE TABLE IF NOT EXISTS replicas (
    name TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    version TEXT NOT NULL
)"""
#: One row per lease (``source:<name>``, ``singleton``): who holds it, the epoch that grows at
#: every change of holder, and until when (the database's clock). ``owner`` NULL: free.
_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT,
    epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    changed_at REAL NOT NULL
)"""

#: The whole schema at :data:`SCHEMA_VERSION`, one statement each, for a new database.
SCHEMA: tuple[str, ...] = (
    _META,
    _ACCOUNTS,
    _SOURCES,
    _ALERTS,
    _HISTORY,
    _HELD,
    _OUTBOX,
    _OUTBOX_PENDING,
    _DEPARTED,
    _REPLICAS,
    _LEASES,
)


@dataclass(frozen=True, slots=True)
class Migration:
    """The statements that take a database from version ``to - 1`` to ``to``."""

    to: int
    why: str
    statements: tuple[str, ...]


#: Every step from version 1 on, in order; step ``i`` takes version ``i + 1`` to ``i + 2``.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "pending alerts and `repeat` (alert state, last notification), the history of windowed"
        " fields, notifications held by mute windows",
        (
            "ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'firing'",
            "ALTER TABLE alerts ADD COLUMN notified_at TEXT",
            _HISTORY,
            _HELD,
        ),
    ),
    Migration(
        3,
        "the last record of accounts that left the response (compared with when they return)",
        (_DEPARTED,),
    ),
    Migration(
        4,
        "several replicas on one PostgreSQL: replicas, leases, and claims on outbox rows",
        (
            "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
            "ALTER TABLE outbox ADD COLUMN claimed_until REAL",
            _REPLICAS,
            _LEASES,
        ),
    ),
)

#: Since this version ``alerts`` has ``state`` and ``notified_at``, and ``held`` exists (a
#: read-only store may read an older database: ``status`` never migrates).
ALERT_STATES_SINCE = 2
HELD_SINCE = 2
#: Since this version ``replicas`` and ``leases`` exist.
REPLICAS_SINCE = 4


def steps_from(version: int) -> tuple[Migration, ...]:
    """The migrations that bring a database at ``version`` to :data:`SCHEMA_VERSION`."""
    return MIGRATIONS[version - 1 :]


#: What PostgreSQL needs besides :data:`SCHEMA`: SQLite's ``json_extract(text, '$.key')`` as a
#: function, so the same queries read a payload's fields on both backends.
POSTGRES_EXTRA: tuple[str, ...] = (
    "CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS text"
    " LANGUAGE sql IMMUTABLE PARALLEL SAFE"
    " AS $$ SELECT (doc::jsonb) #>> string_to_array(substr(path, 3), '.') $$",
)


def postgres(statement: str) -> str:
    """A statement of :data:`SCHEMA` or :data:`MIGRATIONS` in PostgreSQL's dialect."""
    return (
        statement.replace(
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        )
        .replace(" WITHOUT ROWID", "")
        .replace(" REAL", " DOUBLE PRECISION")
    )
