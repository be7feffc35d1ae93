"""The SQLite schema and its migrations, in one place.

A new database gets :data:`SCHEMA` and records :data:`SCHEMA_VERSION`. An older one is brought
up by the steps of :data:`MIGRATIONS` from its version on, each taking version ``N`` to
``N + 1``; :func:`monitor.store.sqlite.upgrade` applies them all in one transaction. A database
written by a newer release is refused and left as it is.

To change the schema: change :data:`SCHEMA`, add the step that takes the previous version to
the new one, and raise :data:`SCHEMA_VERSION` (a test checks that the steps reach it).
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
    escalated INTEGER NOT NULL DEFAULT 0,
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
    UNIQUE (id, sink)
)"""
_OUTBOX_PENDING = "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, state, seq)"
# Issue 16: silences, acknowledgements, escalation and the record of notifications.
_SILENCES = """
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    rule TEXT,
    account TEXT,
    source TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expired_at REAL
)"""
_ACKS = """
CREATE TABLE IF NOT EXISTS acks (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    account_number TEXT,
    source TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    acked_at REAL NOT NULL,
    notification_id TEXT
)"""
#: One row per notification and sink, kept ``[history] keep`` (the outbox keeps a week).
_NOTIFICATION_LOG = """
CREATE TABLE IF NOT EXISTS notification_log (
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    account_number TEXT,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (id, sink)
)"""
_NOTIFICATION_LOG_CREATED = (
    "CREATE INDEX IF NOT EXISTS notification_log_created ON notification_log (created_at)"
)
_DELIVERY_ATTEMPTS = """
CREATE TABLE IF NOT EXISTS delivery_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
)"""
_DELIVERY_ATTEMPTS_ID = (
    "CREATE INDEX IF NOT EXISTS delivery_attempts_id ON delivery_attempts (id, sink)"
)
#: Bumped by every write of a silence or an acknowledgement: the daemon looks at it every
#: second or so and reads them again when it moved.
_CONTROL_VERSION = "INSERT INTO meta (key, value) VALUES ('control_version', '0')"

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
    _SILENCES,
    _ACKS,
    _NOTIFICATION_LOG,
    _NOTIFICATION_LOG_CREATED,
    _DELIVERY_ATTEMPTS,
    _DELIVERY_ATTEMPTS_ID,
    _CONTROL_VERSION,
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
        "silences, acknowledgements, escalation steps sent, and the record of every"
        " notification and delivery attempt",
        (
            "ALTER TABLE alerts ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0",
            _SILENCES,
            _ACKS,
            _NOTIFICATION_LOG,
            _NOTIFICATION_LOG_CREATED,
            _DELIVERY_ATTEMPTS,
            _DELIVERY_ATTEMPTS_ID,
            _CONTROL_VERSION,
        ),
    ),
)

#: Since this version ``alerts`` has ``state`` and ``notified_at``, and ``held`` exists (a
#: read-only store may read an older database: ``status`` never migrates).
#: The tables ``[history] keep`` bounds, each with its column of epoch seconds:
#: :meth:`~monitor.store.Store.prune_history` deletes their rows older than the retention.
HISTORY_TABLES: tuple[tuple[str, str], ...] = (
    ("notification_log", "created_at"),
    ("delivery_attempts", "at"),
    ("silences", "ends_at"),
    ("acks", "acked_at"),
)
#: Since this version silences, acks and the notification log exist.
ACTIONS_SINCE = 4

ALERT_STATES_SINCE = 2
HELD_SINCE = 2


def steps_from(version: int) -> tuple[Migration, ...]:
    """The migrations that bring a database at ``version`` to :data:`SCHEMA_VERSION`."""
    return MIGRATIONS[version - 1 :]
