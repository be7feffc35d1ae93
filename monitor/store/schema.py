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

SCHEMA_VERSION = 8

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
    claimed_by TEXT,
    claimed_until REAL,
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
#: An alert's notifications (``ack``, the bot's buttons, a digest's alert lines) and an
#: account's (the dashboard's account page), newest first, without reading the whole log.
_NOTIFICATION_LOG_FINGERPRINT = (
    "CREATE INDEX IF NOT EXISTS notification_log_fingerprint"
    " ON notification_log (fingerprint, created_at)"
)
_NOTIFICATION_LOG_ACCOUNT = (
    "CREATE INDEX IF NOT EXISTS notification_log_account"
    " ON notification_log (account_number, created_at)"
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
# The dashboard's series. A poll appends the tracked fields that changed to history_journal,
# keyed by time so the rows of a poll land together at the end of the table (a few pages per
# poll, however many accounts the book has); the hourly maintenance moves them into
# account_history, keyed by account for the charts' reads. Each row holds the value from ``at``
# on (epoch seconds) and the one before it (``previous``; NULL for an account seen for the
# first time), as text: the number's digits or the string, NULL for null.
_HISTORY_JOURNAL = """
CREATE TABLE IF NOT EXISTS history_journal (
    source TEXT NOT NULL,
    at REAL NOT NULL,
    account_number TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT,
    previous TEXT,
    PRIMARY KEY (source, at, account_number, field)
) WITHOUT ROWID"""
_ACCOUNT_HISTORY = """
CREATE TABLE IF NOT EXISTS account_history (
    source TEXT NOT NULL,
    account_number TEXT NOT NULL,
    field TEXT NOT NULL,
    at REAL NOT NULL,
    value TEXT,
    previous TEXT,
    PRIMARY KEY (source, account_number, field, at)
) WITHOUT ROWID"""
# Every poll's outcome (the dashboard's uptime bar), epoch seconds.
_POLLS = """
CREATE TABLE IF NOT EXISTS polls (
    source TEXT NOT NULL,
    at REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (source, at)
) WITHOUT ROWID"""
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
#: Issue 17: the Telegram bot's ``getUpdates`` offset, by sink name: the next ``update_id`` to
#: ask for, written after each update is handled (a restart neither replays nor skips).
_BOT_OFFSETS = """
CREATE TABLE IF NOT EXISTS bot_offsets (
    bot TEXT PRIMARY KEY,
    next_update_id INTEGER NOT NULL,
    updated_at REAL NOT NULL
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
    _SILENCES,
    _ACKS,
    _NOTIFICATION_LOG,
    _NOTIFICATION_LOG_CREATED,
    _NOTIFICATION_LOG_FINGERPRINT,
    _NOTIFICATION_LOG_ACCOUNT,
    _DELIVERY_ATTEMPTS,
    _DELIVERY_ATTEMPTS_ID,
    _CONTROL_VERSION,
    _HISTORY_JOURNAL,
    _ACCOUNT_HISTORY,
    _POLLS,
    _REPLICAS,
    _LEASES,
    _BOT_OFFSETS,
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
    Migration(
        5,
        "the dashboard's history: each account's tracked fields when they change, each poll's"
        " outcome",
        (_HISTORY_JOURNAL, _ACCOUNT_HISTORY, _POLLS),
    ),
    Migration(
        6,
        "several replicas on one PostgreSQL: replicas, leases, and claims on outbox rows",
        (
            "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
            "ALTER TABLE outbox ADD COLUMN claimed_until REAL",
            _REPLICAS,
            _LEASES,
        ),
    ),
    Migration(7, "the Telegram bot's getUpdates offset", (_BOT_OFFSETS,)),
    Migration(
        8,
        "the notification log indexed by alert and by account (ack, the dashboard's account"
        " page and the digests read them without scanning the log)",
        (_NOTIFICATION_LOG_FINGERPRINT, _NOTIFICATION_LOG_ACCOUNT),
    ),
)

#: The tables ``[history] keep`` bounds, each with its column of epoch seconds:
#: :meth:`~monitor.store.Store.prune_history` deletes their rows older than the retention.
HISTORY_TABLES: tuple[tuple[str, str], ...] = (
    ("notification_log", "created_at"),
    ("delivery_attempts", "at"),
    ("silences", "ends_at"),
    ("acks", "acked_at"),
    ("history_journal", "at"),
    ("account_history", "at"),
    ("polls", "at"),
)
#: Since this version silences, acks and the notification log exist.
ACTIONS_SINCE = 4

#: Since this version ``alerts`` has ``state`` and ``notified_at``, and ``held`` exists (a
#: read-only store may read an older database: ``status`` never migrates).
ALERT_STATES_SINCE = 2
HELD_SINCE = 2
#: Since this version ``departed`` exists.
DEPARTED_SINCE = 3
#: Since this version ``history_journal``, ``account_history`` and ``polls`` exist.
ACCOUNT_HISTORY_SINCE = 5
#: Since this version ``replicas`` and ``leases`` exist.
REPLICAS_SINCE = 6
#: Since this version ``bot_offsets`` exists.
BOT_OFFSETS_SINCE = 7


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
