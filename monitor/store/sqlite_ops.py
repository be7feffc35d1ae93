"""The SQL of the state store: every operation as a plain function on a connection.

One text for both backends: :class:`~monitor.store.sqlite.SqliteStore` runs these in its one
worker thread on a ``sqlite3`` connection, :class:`~monitor.store.postgres.PostgresStore` in
its worker threads on a pooled psycopg connection (:class:`~monitor.store.dbapi.Db`). Write the
SQL both dialects share: ``?`` placeholders, ``INSERT ... ON CONFLICT (...) DO UPDATE SET
x=excluded.x`` (qualify the table's own columns: ``polls=sources.polls+1``), ``ON CONFLICT DO
NOTHING``, ``json_extract(payload, '$.key')``; not SQLite's ``INSERT OR ...`` forms. Every write of
more than one statement is one :func:`transaction`; every outbox row is written by
:func:`_queue` and read by :func:`_outbox_row`. Times in the database are ISO 8601 text in UTC
(polls, alerts, history) or epoch seconds (outbox, held).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from monitor import encoding
from monitor.cycle import Departed, PollWrite, SourceState
from monitor.errors import SchemaTooNewError, StoreError
from monitor.models import Account, ActiveAlert, JSONValue, Notification
from monitor.parse import parse_records
from monitor.rules import AlertKey, SourceHealth
from monitor.store import schema
from monitor.store.base import (
    KEEP_FINISHED_SECONDS,
    AccountRow,
    AlertRow,
    DeliveryRow,
    HeldRow,
    LeaseRow,
    Mark,
    OutboxRow,
    OutboxSummary,
    PollRow,
    ReplicaRow,
    SeriesRow,
    SinkQueue,
    SourceRow,
)
from monitor.store.dbapi import Db
from monitor.store.schema import (
    ACCOUNT_HISTORY_SINCE,
    ACTIONS_SINCE,
    ALERT_STATES_SINCE,
    HELD_SINCE,
    POSTGRES_EXTRA,
    SCHEMA,
    SCHEMA_VERSION,
    steps_from,
)
from monitor.store.schema import postgres as schema_postgres

#: The key of the advisory lock PostgreSQL replicas take to create or migrate the schema.
MIGRATION_LOCK = 0x62616C616E6365

#: A notification, the sinks it goes to, and its source: what :func:`_queue` writes.
Queued = tuple[Notification, Sequence[str], str]


# --------------------------------------------------------------------------- transactions


@contextmanager
def transaction(db: Db) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back if it raises.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never fails half-way
    for want of it (another writer makes it wait ``busy_timeout`` instead). The error that
    ended the transaction is the one raised: a ROLLBACK that fails as well (SQLite may have
    rolled back by itself on a full disk or an I/O error) is only a note on it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            try:
                db.execute("ROLLBACK")
            except Exception as failed:  # only a note on the error raised
                exc.add_note(f"and the rollback failed: {failed}")
        raise


# --------------------------------------------------------------------------- schema


def stored_version(db: Db, *, postgres: bool = False) -> int | None:
    """The schema version the database records; ``None`` for a new database."""
    table = db.execute(
        # pg_tables, not to_regclass: a plain read sees a table another replica created while
        # this one waited for the migration lock (the catalog cache may not yet)
        "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'meta'"
        " AND schemaname = current_schema()"
        if postgres
        else "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    )
    row = table.fetchone()
    if row is None or row[0] is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row is not None else None


def _is_current(db: Db, path: Path | str, *, postgres: bool = False) -> bool:
    """Whether the database is at :data:`SCHEMA_VERSION`; refuses one written by a newer
    release (or recording no version we know)."""
    found = stored_version(db, postgres=postgres)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path}: written by a newer balance-monitor (schema {found}, this release knows"
            f" up to {SCHEMA_VERSION}): upgrade balance-monitor"
        )
    if found is not None and found < 1:
        raise StoreError(f"{path}: unknown schema version {found}")
    return found == SCHEMA_VERSION


def upgrade(db: Db, path: Path | str, *, postgres: bool = False) -> None:
    """Create the schema of a new database, or migrate an older one, in one transaction (on
    PostgreSQL under a transaction-scoped advisory lock: replicas started together wait for
    the first, then find the schema current)."""
    dialect = schema_postgres if postgres else _same
    if _is_current(db, path, postgres=postgres):
        return  # the usual case: no write lock taken
    with transaction(db):
        if postgres:
            db.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        if _is_current(db, path, postgres=postgres):  # another did it while we waited
            return
        found = stored_version(db, postgres=postgres)
        if postgres:
            for statement in POSTGRES_EXTRA:
                db.execute(statement)
        if found is None:
            for statement in SCHEMA:
                db.execute(dialect(statement))
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            return
        for step in steps_from(found):
            for statement in step.statements:
                db.execute(dialect(statement))
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))


def _same(statement: str) -> str:
    return statement


# --------------------------------------------------------------------------- rows


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe_iso(text: str | None) -> datetime | None:
    return _from_iso(text) if text else None


def _record_json(account: Account) -> str:
    """The account's JSON for the ``accounts`` table: the decoded record when the fast parser
    kept it (orjson writes it in C), else the validated record with exact decimals."""
    if account.raw is not None:
        return orjson.dumps(account.raw).decode()
    return encoding.dumps(account.record)


_OUTBOX_ROW = "SELECT seq, id, sink, source, payload, created_at, attempts, next_attempt_at"


def _outbox_row(r: Sequence[Any]) -> OutboxRow:
    """An :class:`OutboxRow` from the columns of :data:`_OUTBOX_ROW`."""
    return OutboxRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6], r[7])


def _queue(db: Db, queued: Iterable[Queued], now: float) -> None:
    """Queue each notification for each of its sinks, due at once; a notification already
    queued for a sink (same id) is left as it is."""
    rows: list[tuple[str, str, str, str, float, float, float]] = []
    logged: list[tuple[Any, ...]] = []
    for notification, sinks, source in queued:
        payload = encoding.dumps(notification.payload())
        rows.extend((notification.id, sink, source, payload, now, now, now) for sink in sinks)
        logged.extend(_log_row(notification, sink, source, "pending", now) for sink in sinks)
    if rows:
        db.executemany(
            "INSERT INTO outbox (id, sink, source, payload, created_at,"
            " next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )
        _log(db, logged)


def _log_row(
    notification: Notification, sink: str, source: str, state: str, now: float
) -> tuple[Any, ...]:
    """A row of the notification log (its columns, in :func:`_log`'s order)."""
    a = notification.alert
    return (
        notification.id,
        sink,
        source,
        a.fingerprint,
        a.rule,
        a.account_number,
        a.status.value,
        a.summary,
        now,
        state,
        now,
    )


def _log(db: Db, rows: Sequence[tuple[Any, ...]]) -> None:
    """Record notifications in the log, kept ``[history] keep``: a new one as it is, one held
    until now becomes ``pending`` when it is queued; anything else is left as it is."""
    db.executemany(
        "INSERT INTO notification_log (id, sink, source, fingerprint, rule, account_number,"
        " status, summary, created_at, state, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, sink) DO UPDATE"
        " SET state=excluded.state, updated_at=excluded.updated_at"
        " WHERE notification_log.state = 'held' AND excluded.state = 'pending'",
        rows,
    )


def _alert_row(source: str, a: ActiveAlert) -> tuple[str, str, str, str, str, str, str | None, int]:
    notified = _iso(a.notified_at) if a.notified_at is not None else None
    return (
        source,
        a.rule,
        a.account_number or "",
        a.fingerprint,
        _iso(a.started_at),
        a.state,
        notified,
        a.escalated,
    )


def _write_alerts(
    db: Db,
    source: str,
    active: Mapping[AlertKey, ActiveAlert],
    before: Mapping[AlertKey, ActiveAlert] | None,
) -> None:
    """Make the source's rule alerts ``active``: all rows, or those that differ from ``before``."""
    if before is None:
        db.execute("DELETE FROM alerts WHERE source=? AND account_number != ''", (source,))
        changed = list(active.values())
    else:
        gone = [k for k in before if k not in active]
        db.executemany(
            "DELETE FROM alerts WHERE source=? AND rule=? AND account_number=?",
            [(source, rule, number or "") for rule, number in gone],
        )
        changed = [a for k, a in active.items() if before.get(k) != a]
    db.executemany(
        "INSERT INTO alerts (source, rule, account_number, fingerprint, started_at,"
        " state, notified_at, escalated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source, rule, account_number) DO UPDATE SET"
        " fingerprint=excluded.fingerprint, started_at=excluded.started_at,"
        " state=excluded.state, notified_at=excluded.notified_at,"
        " escalated=excluded.escalated",
        [_alert_row(source, a) for a in changed],
    )


# --------------------------------------------------------------------------- a poll


def load_source(db: Db, source: str) -> SourceState:
    row = db.execute(
        "SELECT failures, last_success_at FROM sources WHERE source=?", (source,)
    ).fetchone()
    failures, last_success = (row[0], row[1]) if row else (0, None)
    accounts: dict[str, Account] | None = None
    if last_success is not None:
        records = [
            encoding.loads(text)
            for (text,) in db.execute(
                "SELECT record FROM accounts WHERE source=? ORDER BY account_number",
                (source,),
            )
        ]
        accounts = dict(parse_records(records).accounts)
    departed = _load_departed(db, source) if accounts is not None else None
    active: dict[AlertKey, ActiveAlert] = {}
    down: ActiveAlert | None = None
    for rule, number, fp, started, state, notified, escalated in db.execute(
        "SELECT rule, account_number, fingerprint, started_at, state, notified_at, escalated"
        " FROM alerts WHERE source=?",
        (source,),
    ):
        alert = ActiveAlert(
            rule,
            number or None,
            fp,
            _from_iso(started),
            "pending" if state == "pending" else "firing",
            _maybe_iso(notified),
            int(escalated or 0),
        )
        if alert.account_number is None:
            down = alert
        else:
            active[(rule, alert.account_number)] = alert
    history: dict[tuple[str, str], list[tuple[datetime, JSONValue]]] = {}
    for number, name, at, value in db.execute(
        "SELECT account_number, field, observed_at, value FROM history WHERE source=?"
        " ORDER BY account_number, field, observed_at",
        (source,),
    ):
        history.setdefault((number, name), []).append((_from_iso(at), encoding.loads(value)))
    return SourceState(
        accounts, SourceHealth(failures, down), active, _maybe_iso(last_success), history, departed
    )


def _load_departed(db: Db, source: str) -> dict[str, Departed]:
    """The accounts that left the source's response, with their last record."""
    left: dict[str, datetime] = {}
    records = []
    for number, text, at in db.execute(
        "SELECT account_number, record, left_at FROM departed WHERE source=?"
        " ORDER BY account_number",
        (source,),
    ):
        left[number] = _from_iso(at)
        records.append(encoding.loads(text))
    return {n: Departed(a, left[n]) for n, a in parse_records(records).accounts.items()}


def commit(db: Db, write: PollWrite, fence: Callable[[Db], None] | None = None) -> None:
    """Write one poll in one transaction; ``fence`` (PostgreSQL: the source's lease) runs
    first inside it and refuses the whole write by raising."""
    source, poll, health = write.source, write.poll, write.health
    at = _iso(poll.at)
    now = poll.at.timestamp()
    with transaction(db):
        if fence is not None:
            fence(db)
        if write.upserts:
            db.executemany(
                "INSERT INTO accounts (source, account_number, record, observed_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (source, account_number)"
                " DO UPDATE SET record=excluded.record, observed_at=excluded.observed_at",
                [(source, a.account_number, _record_json(a), at) for a in write.upserts],
            )
        if write.deletes:
            db.executemany(
                "DELETE FROM accounts WHERE source=? AND account_number=?",
                [(source, n) for n in write.deletes],
            )
        if write.forget:
            db.executemany(
                "DELETE FROM departed WHERE source=? AND account_number=?",
                [(source, n) for n in write.forget],
            )
        if write.departed:
            db.executemany(
                "INSERT INTO departed (source, account_number, record, left_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (source, account_number)"
                " DO UPDATE SET record=excluded.record, left_at=excluded.left_at",
                [(source, a.account_number, _record_json(a), at) for a in write.departed],
            )
        if write.active is not None:
            _write_alerts(db, source, write.active, write.active_before)
        if write.history:
            db.executemany(
                "INSERT INTO history (source, account_number, field, observed_at,"
                " value) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (source, account_number, field, observed_at)"
                " DO UPDATE SET value=excluded.value",
                [(source, n, f, _iso(t), encoding.dumps(v)) for n, f, t, v in write.history],
            )
        if write.history_deletes:
            db.executemany(
                "DELETE FROM history WHERE source=? AND account_number=? AND field=?"
                " AND observed_at=?",
                [(source, n, f, _iso(t)) for n, f, t, _ in write.history_deletes],
            )
        if held := write.held:
            db.executemany(
                "INSERT INTO held (id, sink, source, payload, mute, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (d.notification.id, sink, source, payload, d.held_by, now)
                    for d in held
                    for payload in (encoding.dumps(d.notification.payload()),)
                    for sink in d.sinks
                ],
            )
            _log(
                db,
                [
                    _log_row(d.notification, sink, source, "held", now)
                    for d in held
                    for sink in d.sinks
                ],
            )
        db.execute("DELETE FROM alerts WHERE source=? AND account_number=''", (source,))
        if health.down is not None:
            d = health.down
            db.execute(
                "INSERT INTO alerts (source, rule, account_number, fingerprint, started_at)"
                " VALUES (?, ?, '', ?, ?)",
                (source, d.rule, d.fingerprint, _iso(d.started_at)),
            )
        if not write.push:  # a push of the stream is no poll: the poll record stays
            _record_poll(db, write, now)
        if write.series:
            db.executemany(
                "INSERT INTO history_journal (source, at, account_number, field, value,"
                " previous) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, at, account_number,"
                " field) DO UPDATE SET value=excluded.value, previous=excluded.previous",
                [
                    (source, now, n, f, series_text(v), series_text(p))
                    for n, f, p, v in write.series
                ],
            )
        _queue(db, [(d.notification, d.sinks, source) for d in write.queued], now)


def _record_poll(db: Db, write: PollWrite, now: float) -> None:
    """The source's health and poll counters, and the poll's outcome (the uptime bar)."""
    source, poll, health = write.source, write.poll, write.health
    at = _iso(poll.at)
    db.execute(
        "INSERT INTO sources (source, failures, polls, last_poll_at, last_result,"
        " last_error, last_success_at, account_count) VALUES (?, ?, 1, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source) DO UPDATE SET failures=excluded.failures,"
        " polls=sources.polls+1, last_poll_at=excluded.last_poll_at,"
        " last_result=excluded.last_result, last_error=excluded.last_error,"
        " last_success_at=coalesce(excluded.last_success_at, sources.last_success_at),"
        " account_count=coalesce(excluded.account_count, sources.account_count)",
        (
            source,
            health.failures,
            at,
            "ok" if poll.ok else "failed",
            poll.error,
            at if poll.ok else None,
            poll.account_count,
        ),
    )
    db.execute(
        "INSERT INTO polls (source, at, ok, error) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (source, at) DO UPDATE SET ok=excluded.ok, error=excluded.error",
        (source, now, 1 if poll.ok else 0, poll.error),
    )


def series_text(value: JSONValue) -> str | None:
    """A tracked field's value as ``account_history`` keeps it: numbers and strings as their
    text (``Decimal`` exactly), null as NULL, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | Decimal):
        return str(value)
    return encoding.dumps(value)


# --------------------------------------------------------------------------- mute windows


def held(db: Db) -> list[HeldRow]:
    return [
        HeldRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6])
        for r in db.execute(
            "SELECT seq, id, sink, source, payload, mute, created_at FROM held ORDER BY seq"
        )
    ]


def held_count(db: Db) -> int:
    return int(db.execute("SELECT count(*) FROM held").fetchone()[0])


def release(
    db: Db,
    released: Sequence[tuple[Notification, str, str]],
    settled: Sequence[int],
    now: float,
) -> None:
    with transaction(db):
        _queue(db, [(n, (sink,), source) for n, sink, source in released], now)
        # What a window or a silence held and did not release (summarised, or dropped).
        db.executemany(
            "UPDATE notification_log SET state='settled', updated_at=? WHERE state='held'"
            " AND (id, sink) IN (SELECT id, sink FROM held WHERE seq=?)",
            [(now, seq) for seq in settled],
        )
        db.executemany("DELETE FROM held WHERE seq=?", [(seq,) for seq in settled])


# --------------------------------------------------------------------------- outbox


def next_pending(db: Db, sink: str) -> OutboxRow | None:
    row = db.execute(
        _OUTBOX_ROW + " FROM outbox WHERE sink=? AND state='pending' ORDER BY seq LIMIT 1",
        (sink,),
    ).fetchone()
    return None if row is None else _outbox_row(row)


def next_batch(db: Db, sink: str, limit: int, now: float) -> list[OutboxRow]:
    rows = db.execute(
        _OUTBOX_ROW + " FROM outbox WHERE sink=? AND state='pending' AND next_attempt_at <= ?"
        " ORDER BY seq LIMIT ?",
        (sink, now, limit),
    )
    return [_outbox_row(r) for r in rows]


def mark(
    db: Db,
    seq: int,
    state: str,
    *,
    now: float,
    error: str | None,
    next_attempt_at: float | None,
) -> None:
    mark_many(db, [Mark(seq, state, error, next_attempt_at)], now)


#: Rows per ``IN (...)`` of :func:`mark_many` (SQLite binds at most 32,766 values).
_MARK_CHUNK = 500


def mark_many(db: Db, marks: Sequence[Mark], now: float) -> None:
    """Record outcomes in one transaction: each outbox row's state (its claim ends), its line
    in the notification record and, for an attempt (an expiry is none), the attempt."""
    if not marks:
        return
    with transaction(db):
        db.executemany(
            "UPDATE outbox SET state=?, attempts=attempts+?, last_error=?,"
            " next_attempt_at=coalesce(?, next_attempt_at), updated_at=?,"
            " claimed_by=NULL, claimed_until=NULL WHERE seq=?",
            [(m.state, _attempt(m), m.error, m.next_attempt_at, now, m.seq) for m in marks],
        )
        rows: dict[int, tuple[str, str]] = {}
        for start in range(0, len(marks), _MARK_CHUNK):
            chunk = [m.seq for m in marks[start : start + _MARK_CHUNK]]
            rows.update(
                (r[0], (r[1], r[2]))
                for r in db.execute(
                    f"SELECT seq, id, sink FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
            )
        found = [(m, rows[m.seq]) for m in marks if m.seq in rows]
        db.executemany(
            "UPDATE notification_log SET state=?, attempts=attempts+?, last_error=?,"
            " updated_at=? WHERE id=? AND sink=?",
            [(m.state, _attempt(m), m.error, now, ident, sink) for m, (ident, sink) in found],
        )
        db.executemany(
            "INSERT INTO delivery_attempts (id, sink, at, outcome, error) VALUES (?, ?, ?, ?, ?)",
            [
                (ident, sink, now, "retry" if m.state == "pending" else m.state, m.error)
                for m, (ident, sink) in found
                if _attempt(m)
            ],
        )


def _attempt(mark: Mark) -> int:
    """1 for an attempt at delivery, 0 for an expiry (no attempt was made)."""
    return 0 if mark.state == "expired" else 1


def retry_now(db: Db, now: float) -> None:
    db.execute(
        "UPDATE outbox SET next_attempt_at=? WHERE state='pending' AND next_attempt_at > ?",
        (now, now),
    )


def pending(db: Db, sinks: Sequence[str] | None) -> int:
    if sinks is not None and not sinks:
        return 0  # PostgreSQL refuses an empty IN ()
    if sinks is None:
        row = db.execute("SELECT count(*) FROM outbox WHERE state='pending'")
    else:
        marks = ",".join("?" * len(sinks))
        row = db.execute(
            f"SELECT count(*) FROM outbox WHERE state='pending' AND sink IN ({marks})",  # noqa: S608
            sinks,
        )
    return int(row.fetchone()[0])


def expire(
    db: Db,
    older_than: float,
    now: float,
    keep_finished: float = KEEP_FINISHED_SECONDS,
) -> list[OutboxRow]:
    with transaction(db):
        rows = [
            _outbox_row(r)
            for r in db.execute(
                _OUTBOX_ROW + " FROM outbox WHERE state='pending' AND created_at < ?",
                (older_than,),
            )
        ]
        db.executemany(
            "UPDATE outbox SET state='expired', updated_at=? WHERE seq=?",
            [(now, r.seq) for r in rows],
        )
        db.executemany(
            "UPDATE notification_log SET state='expired', updated_at=? WHERE id=? AND sink=?",
            [(now, r.id, r.sink) for r in rows],
        )
        db.execute(
            "DELETE FROM outbox WHERE state != 'pending' AND updated_at < ?"
            " AND json_extract(payload, '$.fingerprint') NOT IN"
            " (SELECT fingerprint FROM alerts WHERE state = 'firing')",
            (now - keep_finished,),
        )
    return rows


def prune_history(db: Db, before: float) -> dict[str, int]:
    pruned: dict[str, int] = {}
    with transaction(db):
        for table, column in schema.HISTORY_TABLES:
            # The ack of an episode still firing stops its reminders and escalation for as
            # long as it fires, however old.
            still = " AND fingerprint NOT IN (SELECT fingerprint FROM alerts)"
            # Names from the module's own table, never from input.
            cursor = db.execute(
                f"DELETE FROM {table} WHERE {column} < ?{still if table == 'acks' else ''}",  # noqa: S608
                (before,),
            )
            pruned[table] = cursor.rowcount
    return pruned


def outbox_sinks(db: Db) -> set[str]:
    return {r[0] for r in db.execute("SELECT DISTINCT sink FROM outbox WHERE state='pending'")}


def firing_deliveries(db: Db, sink: str) -> list[Notification]:
    rows = db.execute(
        "SELECT o.source, o.payload FROM outbox o"
        " JOIN alerts a ON a.fingerprint = json_extract(o.payload, '$.fingerprint')"
        " AND a.source = o.source AND a.state = 'firing'"
        " WHERE o.sink=? AND o.state='delivered'"
        " AND json_extract(o.payload, '$.status') = 'firing'"
        " ORDER BY o.seq",
        (sink,),
    )
    latest: dict[str, Notification] = {}
    for source, payload in rows:
        notification = Notification.from_payload(encoding.loads(payload), source=source)
        latest[notification.alert.fingerprint] = notification
    return list(latest.values())


def unresolved_events(db: Db, sink: str, delivered_before: float) -> list[Notification]:
    resolved = {
        fingerprint
        for (fingerprint,) in db.execute(
            "SELECT json_extract(payload, '$.fingerprint') FROM outbox"
            " WHERE sink=? AND json_extract(payload, '$.status') = 'resolved'",
            (sink,),
        )
    }
    rows = db.execute(
        "SELECT source, payload FROM outbox"
        " WHERE sink=? AND state='delivered' AND updated_at <= ?"
        " AND json_extract(payload, '$.kind') = 'event'"
        " AND json_extract(payload, '$.status') = 'firing'"
        " ORDER BY seq",
        (sink, delivered_before),
    )
    owed: dict[str, Notification] = {}  # a trigger delivered twice is owed one resolve
    for source, payload in rows:
        notification = Notification.from_payload(encoding.loads(payload), source=source)
        if notification.alert.fingerprint not in resolved:
            owed.setdefault(notification.alert.fingerprint, notification)
    return list(owed.values())


# --------------------------------------------------------------------------- status


def sources(db: Db) -> list[SourceRow]:
    rows = db.execute(
        "SELECT source, last_poll_at, last_result, last_error, last_success_at, failures,"
        " account_count, polls, (SELECT count(*) FROM accounts a WHERE a.source = s.source)"
        " FROM sources s ORDER BY source"
    )
    return [
        SourceRow(r[0], _maybe_iso(r[1]), r[2], r[3], _maybe_iso(r[4]), r[5], r[6], r[7], r[8])
        for r in rows
    ]


def alerts(db: Db, version: int) -> list[AlertRow]:
    # A database older than alert states (read by a read-only store) has firing alerts only.
    state = "state" if version >= ALERT_STATES_SINCE else "'firing'"
    escalated = "escalated" if version >= ACTIONS_SINCE else "0"
    rows = db.execute(
        f"SELECT source, rule, account_number, fingerprint, started_at, {state},"  # noqa: S608
        f" {escalated} FROM alerts ORDER BY started_at, source, rule, account_number"
    )
    return [
        AlertRow(
            r[0],
            r[1],
            r[2] or None,
            r[3],
            _from_iso(r[4]),
            "pending" if r[5] == "pending" else "firing",
            int(r[6] or 0),
        )
        for r in rows
    ]


def held_by_mute(db: Db, version: int) -> dict[str, int]:
    if version < HELD_SINCE:  # nothing could be held before mute windows
        return {}
    return dict(db.execute("SELECT mute, count(*) FROM held GROUP BY mute ORDER BY mute"))


def outbox_summary(db: Db) -> OutboxSummary:
    queues = tuple(
        SinkQueue(*r)
        for r in db.execute(
            "SELECT sink, count(*), min(created_at), max(attempts) FROM outbox"
            " WHERE state='pending' GROUP BY sink ORDER BY sink"
        )
    )
    failed = db.execute("SELECT count(*) FROM outbox WHERE state IN ('failed', 'expired')")
    return OutboxSummary(queues, int(failed.fetchone()[0]))


# --------------------------------------------------------------------------- account streams

#: The ``meta`` key of a source's account stream state (no table of its own: one small row per
#: source, written when the stream connects or ends).
_STREAM_KEY = "stream:"


def record_stream(db: Db, source: str, state: Mapping[str, JSONValue]) -> None:
    with transaction(db):
        write_stream(db, source, state)


def write_stream(db: Db, source: str, state: Mapping[str, JSONValue]) -> None:
    """:func:`record_stream` inside a transaction of the caller's (PostgreSQL's fenced one)."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
        (_STREAM_KEY + source, encoding.dumps(dict(state))),
    )


def streams(db: Db) -> dict[str, dict[str, JSONValue]]:
    rows = db.execute(
        "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
        (len(_STREAM_KEY), _STREAM_KEY),
    )
    found: dict[str, dict[str, JSONValue]] = {}
    for key, value in rows:
        state = encoding.loads(value)
        if isinstance(state, dict):
            found[key[len(_STREAM_KEY) :]] = state
    return found


# --------------------------------------------------------------------------- dashboard


def accounts(db: Db) -> list[AccountRow]:
    return [
        AccountRow(source, number, encoding.loads(record), _from_iso(at))
        for source, number, record, at in db.execute(
            "SELECT source, account_number, record, observed_at FROM accounts"
            " ORDER BY source, account_number"
        )
    ]


_COLUMNS = "source, account_number, field, at, value, previous"
#: Accounts per query of :func:`series` (SQLite binds at most 32,766 values).
_SERIES_CHUNK = 500


def series(
    db: Db,
    version: int,
    which: tuple[str, Sequence[str] | None, Sequence[str]],
    span: tuple[float, float],
) -> list[SeriesRow]:
    """``which`` is (source, accounts or None for the stored ones, fields); ``span`` (since,
    until).

    The rows of the range come from both history tables (the journal's recent rows and the
    compacted ones, a seek per account); the value in force at ``since`` is the ``previous``
    of a series' first row from ``since`` on, or, for a series with no row since, the
    account's stored record: no lookup depends on the length of the history."""
    source, numbers, fields = which
    since, until = span
    if version < ACCOUNT_HISTORY_SINCE or not fields:
        return []
    records = {
        n: encoding.loads(r)
        for n, r in db.execute(
            "SELECT account_number, record FROM accounts WHERE source=?", (source,)
        )
        if numbers is None or n in numbers
    }
    wanted = sorted(records) if numbers is None else list(numbers)
    names = set(fields)
    field_marks = ",".join("?" * len(fields))
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(wanted), _SERIES_CHUNK):
        chunk = wanted[start : start + _SERIES_CHUNK]
        marks = ",".join("?" * len(chunk))
        # Only marks are formatted in; every value is bound.
        found += db.execute(
            f"SELECT {_COLUMNS} FROM account_history WHERE source=?"  # noqa: S608
            f" AND account_number IN ({marks}) AND field IN ({field_marks}) AND at >= ?",
            [source, *chunk, *fields, since],
        ).fetchall()
    accounts = set(wanted)
    found += [
        r
        for r in db.execute(
            f"SELECT {_COLUMNS} FROM history_journal WHERE source=? AND at >= ?",  # noqa: S608
            (source, since),
        )
        if r[1] in accounts and r[2] in names
    ]
    found.sort(key=lambda r: (r[1], r[2], r[3]))
    first: dict[tuple[str, str], tuple[Any, ...]] = {}
    rows: list[SeriesRow] = []
    for r in found:
        first.setdefault((r[1], r[2]), r)
        if r[3] <= until:
            rows.append(SeriesRow(r[0], r[1], r[2], r[3], r[4]))
    for number in wanted:
        for name in fields:
            after = first.get((number, name))
            if after is not None and after[3] <= since:
                continue  # the series' first row is at since: it says what holds then
            if after is not None:
                value = after[5]  # the value before the series' first change since
            elif name in records.get(number, {}):
                value = series_text(records[number][name])  # unchanged since
            else:
                continue
            rows.append(SeriesRow(source, number, name, since, value))
    rows.sort(key=lambda r: (r.account_number, r.field, r.at))
    return rows


def compact_history(db: Db, before: float) -> int:
    with transaction(db):
        db.execute(
            f"INSERT INTO account_history ({_COLUMNS}) SELECT {_COLUMNS} FROM history_journal"  # noqa: S608
            " WHERE at < ? ON CONFLICT (source, account_number, field, at)"
            " DO UPDATE SET value=excluded.value, previous=excluded.previous",
            (before,),
        )
        return db.execute("DELETE FROM history_journal WHERE at < ?", (before,)).rowcount


def recent_polls(db: Db, version: int, source: str, limit: int) -> list[PollRow]:
    if version < ACCOUNT_HISTORY_SINCE:
        return []
    rows = db.execute(
        "SELECT source, at, ok, error FROM polls WHERE source=? ORDER BY at DESC LIMIT ?",
        (source, limit),
    ).fetchall()
    return [PollRow(r[0], r[1], bool(r[2]), r[3]) for r in reversed(rows)]


def deliveries(db: Db, limit: int) -> list[DeliveryRow]:
    rows = db.execute(
        "SELECT seq, id, sink, source, payload, created_at, attempts, state, last_error,"
        " updated_at FROM outbox ORDER BY seq DESC LIMIT ?",
        (limit,),
    )
    return [
        DeliveryRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6], r[7], r[8], r[9])
        for r in rows
    ]


def replicas(db: Db) -> list[ReplicaRow]:
    return [
        ReplicaRow(r[0], float(r[1]), float(r[2]), float(r[3]), r[4])
        for r in db.execute(
            "SELECT name, started_at, heartbeat_at, expires_at, version FROM replicas ORDER BY name"
        )
    ]


def leases(db: Db) -> list[LeaseRow]:
    return [
        LeaseRow(r[0], r[1], int(r[2]), float(r[3]))
        for r in db.execute("SELECT name, owner, epoch, expires_at FROM leases ORDER BY name")
    ]
