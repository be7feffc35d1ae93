"""The SQL of the SQLite backend: every operation as a plain function on a connection.

:class:`~monitor.store.sqlite.SqliteStore` runs these in its one worker thread. Every write of
more than one statement is one :func:`transaction`; every outbox row is written by
:func:`_queue` and read by :func:`_outbox_row`. Times in the database are ISO 8601 text in UTC
(polls, alerts, history) or epoch seconds (outbox, held).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from monitor import encoding
from monitor.cycle import Departed, PollWrite, SourceState
from monitor.errors import StoreError
from monitor.models import Account, ActiveAlert, JSONValue, Notification
from monitor.parse import parse_records
from monitor.rules import AlertKey, SourceHealth
from monitor.store import schema
from monitor.store.base import (
    KEEP_FINISHED_SECONDS,
    AlertRow,
    HeldRow,
    Mark,
    OutboxRow,
    OutboxSummary,
    SinkQueue,
    SourceRow,
)
from monitor.store.schema import (
    ALERT_STATES_SINCE,
    HELD_SINCE,
    SCHEMA,
    SCHEMA_VERSION,
    steps_from,
)

#: A notification, the sinks it goes to, and its source: what :func:`_queue` writes.
Queued = tuple[Notification, Sequence[str], str]


# --------------------------------------------------------------------------- transactions


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
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
            except sqlite3.Error as failed:
                exc.add_note(f"and the rollback failed: {failed}")
        raise


# --------------------------------------------------------------------------- schema


def stored_version(db: sqlite3.Connection) -> int | None:
    """The schema version the database records; ``None`` for a new database."""
    table = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'")
    if table.fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row is not None else None


def _is_current(db: sqlite3.Connection, path: Path) -> bool:
    """Whether the database is at :data:`SCHEMA_VERSION`; refuses one written by a newer
    release (or recording no version we know)."""
    found = stored_version(db)
    if found is not None and found > SCHEMA_VERSION:
        raise StoreError(f"{path}: written by a newer balance-monitor (schema {found})")
    if found is not None and found < 1:
        raise StoreError(f"{path}: unknown schema version {found}")
    return found == SCHEMA_VERSION


def upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema of a new database, or migrate an older one, in one transaction."""
    if _is_current(db, path):
        return  # the usual case: no write lock taken
    with transaction(db):
        if _is_current(db, path):  # another process did it while we waited for the lock
            return
        found = stored_version(db)
        if found is None:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            return
        for step in steps_from(found):
            for statement in step.statements:
                db.execute(statement)
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))


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


def _queue(db: sqlite3.Connection, queued: Iterable[Queued], now: float) -> None:
    """Queue each notification for each of its sinks, due at once; a notification already
    queued for a sink (same id) is left as it is."""
    rows: list[tuple[str, str, str, str, float, float, float]] = []
    for notification, sinks, source in queued:
        payload = encoding.dumps(notification.payload())
        rows.extend((notification.id, sink, source, payload, now, now, now) for sink in sinks)
    if rows:
        db.executemany(
            "INSERT OR IGNORE INTO outbox (id, sink, source, payload, created_at,"
            " next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _alert_row(source: str, a: ActiveAlert) -> tuple[str, str, str, str, str, str, str | None]:
    notified = _iso(a.notified_at) if a.notified_at is not None else None
    return (
        source,
        a.rule,
        a.account_number or "",
        a.fingerprint,
        _iso(a.started_at),
        a.state,
        notified,
    )


def _write_alerts(
    db: sqlite3.Connection,
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
        "INSERT OR REPLACE INTO alerts (source, rule, account_number, fingerprint, started_at,"
        " state, notified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_alert_row(source, a) for a in changed],
    )


# --------------------------------------------------------------------------- a poll


def load_source(db: sqlite3.Connection, source: str) -> SourceState:
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
    for rule, number, fp, started, state, notified in db.execute(
        "SELECT rule, account_number, fingerprint, started_at, state, notified_at"
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


def _load_departed(db: sqlite3.Connection, source: str) -> dict[str, Departed]:
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


def commit(db: sqlite3.Connection, write: PollWrite) -> None:
    source, poll, health = write.source, write.poll, write.health
    at = _iso(poll.at)
    now = poll.at.timestamp()
    with transaction(db):
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
                "INSERT OR REPLACE INTO departed (source, account_number, record, left_at)"
                " VALUES (?, ?, ?, ?)",
                [(source, a.account_number, _record_json(a), at) for a in write.departed],
            )
        if write.active is not None:
            _write_alerts(db, source, write.active, write.active_before)
        if write.history:
            db.executemany(
                "INSERT OR REPLACE INTO history (source, account_number, field, observed_at,"
                " value) VALUES (?, ?, ?, ?, ?)",
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
                "INSERT OR IGNORE INTO held (id, sink, source, payload, mute, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (d.notification.id, sink, source, payload, d.held_by, now)
                    for d in held
                    for payload in (encoding.dumps(d.notification.payload()),)
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
        db.execute(
            "INSERT INTO sources (source, failures, polls, last_poll_at, last_result,"
            " last_error, last_success_at, account_count) VALUES (?, ?, 1, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source) DO UPDATE SET failures=excluded.failures,"
            " polls=polls+1, last_poll_at=excluded.last_poll_at,"
            " last_result=excluded.last_result, last_error=excluded.last_error,"
            " last_success_at=coalesce(excluded.last_success_at, last_success_at),"
            " account_count=coalesce(excluded.account_count, account_count)",
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
        _queue(db, [(d.notification, d.sinks, source) for d in write.queued], now)


# --------------------------------------------------------------------------- mute windows


def held(db: sqlite3.Connection) -> list[HeldRow]:
    return [
        HeldRow(r[0], r[1], r[2], r[3], encoding.loads(r[4]), r[5], r[6])
        for r in db.execute(
            "SELECT seq, id, sink, source, payload, mute, created_at FROM held ORDER BY seq"
        )
    ]


def held_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM held").fetchone()[0])


def release(
    db: sqlite3.Connection,
    released: Sequence[tuple[Notification, str, str]],
    settled: Sequence[int],
    now: float,
) -> None:
    with transaction(db):
        _queue(db, [(n, (sink,), source) for n, sink, source in released], now)
        db.executemany("DELETE FROM held WHERE seq=?", [(seq,) for seq in settled])


# --------------------------------------------------------------------------- outbox


def next_pending(db: sqlite3.Connection, sink: str) -> OutboxRow | None:
    row = db.execute(
        _OUTBOX_ROW + " FROM outbox WHERE sink=? AND state='pending' ORDER BY seq LIMIT 1",
        (sink,),
    ).fetchone()
    return None if row is None else _outbox_row(row)


def next_batch(db: sqlite3.Connection, sink: str, limit: int, now: float) -> list[OutboxRow]:
    rows = db.execute(
        _OUTBOX_ROW + " FROM outbox WHERE sink=? AND state='pending' AND next_attempt_at <= ?"
        " ORDER BY seq LIMIT ?",
        (sink, now, limit),
    )
    return [_outbox_row(r) for r in rows]


def mark(
    db: sqlite3.Connection,
    seq: int,
    state: str,
    *,
    now: float,
    error: str | None,
    next_attempt_at: float | None,
) -> None:
    db.execute(
        "UPDATE outbox SET state=?, attempts=attempts+?, last_error=?,"
        " next_attempt_at=coalesce(?, next_attempt_at), updated_at=? WHERE seq=?",
        (state, 0 if state == "expired" else 1, error, next_attempt_at, now, seq),
    )


def mark_many(db: sqlite3.Connection, marks: Sequence[Mark], now: float) -> None:
    with transaction(db):
        db.executemany(
            "UPDATE outbox SET state=?, attempts=attempts+?, last_error=?,"
            " next_attempt_at=coalesce(?, next_attempt_at), updated_at=? WHERE seq=?",
            [
                (m.state, 0 if m.state == "expired" else 1, m.error, m.next_attempt_at, now, m.seq)
                for m in marks
            ],
        )


def retry_now(db: sqlite3.Connection, now: float) -> None:
    db.execute(
        "UPDATE outbox SET next_attempt_at=? WHERE state='pending' AND next_attempt_at > ?",
        (now, now),
    )


def pending(db: sqlite3.Connection, sinks: Sequence[str] | None) -> int:
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
    db: sqlite3.Connection,
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
        db.execute(
            "DELETE FROM outbox WHERE state != 'pending' AND updated_at < ?"
            " AND json_extract(payload, '$.fingerprint') NOT IN"
            " (SELECT fingerprint FROM alerts WHERE state = 'firing')",
            (now - keep_finished,),
        )
    return rows


def prune_history(db: sqlite3.Connection, before: float) -> dict[str, int]:
    pruned: dict[str, int] = {}
    with transaction(db):
        for table, column in schema.HISTORY_TABLES:
            # Names from the module's own table, never from input.
            cursor = db.execute(f"DELETE FROM {table} WHERE {column} < ?", (before,))  # noqa: S608
            pruned[table] = cursor.rowcount
    return pruned


def outbox_sinks(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT DISTINCT sink FROM outbox WHERE state='pending'")}


def firing_deliveries(db: sqlite3.Connection, sink: str) -> list[Notification]:
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


def unresolved_events(
    db: sqlite3.Connection, sink: str, delivered_before: float
) -> list[Notification]:
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


def sources(db: sqlite3.Connection) -> list[SourceRow]:
    rows = db.execute(
        "SELECT source, last_poll_at, last_result, last_error, last_success_at, failures,"
        " account_count, polls, (SELECT count(*) FROM accounts a WHERE a.source = s.source)"
        " FROM sources s ORDER BY source"
    )
    return [
        SourceRow(r[0], _maybe_iso(r[1]), r[2], r[3], _maybe_iso(r[4]), r[5], r[6], r[7], r[8])
        for r in rows
    ]


def alerts(db: sqlite3.Connection, version: int) -> list[AlertRow]:
    # A database older than alert states (read by a read-only store) has firing alerts only.
    state = "state" if version >= ALERT_STATES_SINCE else "'firing'"
    rows = db.execute(
        f"SELECT source, rule, account_number, fingerprint, started_at, {state}"  # noqa: S608
        " FROM alerts ORDER BY started_at, source, rule, account_number"
    )
    return [
        AlertRow(
            r[0],
            r[1],
            r[2] or None,
            r[3],
            _from_iso(r[4]),
            "pending" if r[5] == "pending" else "firing",
        )
        for r in rows
    ]


def held_by_mute(db: sqlite3.Connection, version: int) -> dict[str, int]:
    if version < HELD_SINCE:  # nothing could be held before mute windows
        return {}
    return dict(db.execute("SELECT mute, count(*) FROM held GROUP BY mute ORDER BY mute"))


def outbox_summary(db: sqlite3.Connection) -> OutboxSummary:
    queues = tuple(
        SinkQueue(*r)
        for r in db.execute(
            "SELECT sink, count(*), min(created_at), max(attempts) FROM outbox"
            " WHERE state='pending' GROUP BY sink ORDER BY sink"
        )
    )
    failed = db.execute("SELECT count(*) FROM outbox WHERE state IN ('failed', 'expired')")
    return OutboxSummary(queues, int(failed.fetchone()[0]))
