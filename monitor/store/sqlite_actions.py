"""The SQL of what operators do (silences, acknowledgements) and of the notification record.

Run by :class:`~monitor.store.sqlite.SqliteStore` in its worker thread, like
:mod:`monitor.store.sqlite_ops`. Every write of a silence or an acknowledgement bumps the
``control_version`` in ``meta`` in the same transaction: the daemon reads that one value every
second or so and reads the silences and acks again only when it moved. The SQL is portable
(explicit columns, ``ON CONFLICT``, epoch-second REAL times) so PostgreSQL can run the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitor import encoding
from monitor.digest import DIGEST_STATUS
from monitor.models import Notification
from monitor.silences import Ack, Silence
from monitor.store.base import AlertRef, AttemptRow, NotificationRecord
from monitor.store.dbapi import Db
from monitor.store.sqlite_ops import _queue, transaction

__all__ = [
    "acks",
    "add_ack",
    "add_silence",
    "bot_offset",
    "control_version",
    "expire_silence",
    "find_alert",
    "find_firing",
    "last_firing",
    "notifications",
    "set_bot_offset",
    "silences",
]

_SILENCE = (
    "SELECT id, starts_at, ends_at, rule, account, source, labels, comment, author,"
    " created_at, expired_at FROM silences"
)
_ACK = (
    "SELECT fingerprint, rule, account_number, source, acked_at, author, comment,"
    " notification_id FROM acks"
)


def _silence(r: Sequence[Any]) -> Silence:
    return Silence(
        r[0], r[1], r[2], r[3], r[4], r[5], encoding.loads(r[6]), r[7], r[8], r[9], r[10]
    )


def _bump(db: Db) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('control_version', '1') ON CONFLICT (key)"
        " DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)"
    )


def control_version(db: Db) -> int:
    row = db.execute("SELECT value FROM meta WHERE key='control_version'").fetchone()
    return int(row[0]) if row is not None else 0


# --------------------------------------------------------------------------- silences


def add_silence(db: Db, silence: Silence) -> None:
    with transaction(db):
        db.execute(
            "INSERT INTO silences (id, starts_at, ends_at, rule, account, source, labels,"
            " comment, author, created_at, expired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                silence.id,
                silence.starts_at,
                silence.ends_at,
                silence.rule,
                silence.account,
                silence.source,
                encoding.dumps(dict(silence.labels)),
                silence.comment,
                silence.author,
                silence.created_at,
                silence.expired_at,
            ),
        )
        _bump(db)


def expire_silence(db: Db, ident: str, now: float) -> Silence | None:
    with transaction(db):
        cursor = db.execute(
            "UPDATE silences SET expired_at=?, ends_at=? WHERE id=? AND ends_at > ?"
            " AND expired_at IS NULL",
            (now, now, ident, now),
        )
        if cursor.rowcount:
            _bump(db)
        row = db.execute(_SILENCE + " WHERE id=?", (ident,)).fetchone()
    return None if row is None else _silence(row)


def silences(db: Db, include_ended: bool, now: float) -> list[Silence]:
    if include_ended:
        rows = db.execute(_SILENCE + " ORDER BY starts_at, id")
    else:
        rows = db.execute(_SILENCE + " WHERE ends_at > ? ORDER BY starts_at, id", (now,))
    return [_silence(r) for r in rows]


# --------------------------------------------------------------------------- acknowledgements


def add_ack(
    db: Db,
    ack: Ack,
    queued: Sequence[tuple[Notification, str, str]],
) -> bool:
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO acks (fingerprint, rule, account_number, source, acked_at, author,"
            " comment, notification_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (fingerprint) DO NOTHING",
            (
                ack.fingerprint,
                ack.rule,
                ack.account_number,
                ack.source,
                ack.at,
                ack.author,
                ack.comment,
                ack.notification_id,
            ),
        )
        if cursor.rowcount == 0:
            return False
        _queue(db, [(n, (sink,), source) for n, sink, source in queued], ack.at)
        _bump(db)
    return True


def acks(db: Db) -> list[Ack]:
    return [Ack(*r) for r in db.execute(_ACK + " ORDER BY acked_at")]


def find_alert(db: Db, ident: str) -> AlertRef | None:
    """The alert episode a notification id or a fingerprint names (a digest's names none:
    it is nothing to acknowledge nor to silence)."""
    row = db.execute(
        "SELECT fingerprint, rule, account_number, source, id FROM notification_log"
        " WHERE (id=? OR fingerprint=?) AND status != ? ORDER BY created_at DESC LIMIT 1",
        (ident, ident, DIGEST_STATUS),
    ).fetchone()
    if row is not None:
        return _ref(db, row[0], row[1], row[2], row[3], row[4] if row[4] == ident else None)
    row = db.execute(
        "SELECT fingerprint, rule, account_number, source FROM alerts WHERE fingerprint=?",
        (ident,),
    ).fetchone()
    return None if row is None else _ref(db, row[0], row[1], row[2] or None, row[3], None)


def find_firing(db: Db, rule: str, account: str) -> list[AlertRef]:
    """The firing alerts of ``rule`` on ``account`` (one per source)."""
    rows = db.execute(
        "SELECT fingerprint, rule, account_number, source FROM alerts"
        " WHERE rule=? AND account_number=? AND state='firing' ORDER BY source",
        (rule, account),
    ).fetchall()
    return [_ref(db, r[0], r[1], r[2] or None, r[3], None) for r in rows]


def _ref(  # noqa: PLR0917 - the columns of the row it completes
    db: Db,
    fingerprint: str,
    rule: str,
    account: str | None,
    source: str,
    notification_id: str | None,
) -> AlertRef:
    firing = db.execute(
        "SELECT 1 FROM alerts WHERE fingerprint=? AND state='firing'", (fingerprint,)
    ).fetchone()
    return AlertRef(fingerprint, rule, account, source, firing is not None, notification_id)


def last_firing(db: Db, fingerprint: str) -> list[tuple[Notification, str, str]]:
    """The last firing notification of the episode queued for each sink: (it, sink, source)."""
    rows = db.execute(
        "SELECT o.payload, o.sink, o.source FROM notification_log l"
        " JOIN outbox o ON o.id = l.id AND o.sink = l.sink"
        " WHERE l.fingerprint=? AND l.status='firing' ORDER BY l.created_at, o.seq",
        (fingerprint,),
    )
    latest: dict[str, tuple[Notification, str, str]] = {}
    for payload, sink, source in rows:
        latest[sink] = (
            Notification.from_payload(encoding.loads(payload), source=source),
            sink,
            source,
        )
    return list(latest.values())


# --------------------------------------------------------------------------- the record


#: The record's columns a reader may ask to equal a value.
_FILTERED = frozenset({"rule", "sink", "state", "source", "account_number"})


def notifications(
    db: Db,
    *,
    since: float,
    equal: Mapping[str, str | None],
    limit: int,
) -> list[NotificationRecord]:
    """The record from ``since`` on, newest first; ``equal``: a column of those below and the
    value it must have (``None``: any)."""
    where = ["created_at >= ?"]
    args: list[Any] = [since]
    for column, value in equal.items():
        if column not in _FILTERED:
            raise ValueError(f"not a column to filter the record by: {column}")
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    # Column names from _FILTERED, never from input: the values are parameters.
    sql = (
        "SELECT id, sink, source, fingerprint, rule, account_number, status, summary,"  # noqa: S608
        " created_at, state, attempts, last_error, updated_at FROM notification_log"
        f" WHERE {' AND '.join(where)} ORDER BY created_at DESC, id, sink LIMIT ?"
    )
    rows = db.execute(
        sql,
        [*args, limit],
    ).fetchall()
    acked: dict[str, Ack] = {}
    for fingerprint in {r[3] for r in rows}:
        found = db.execute(_ACK + " WHERE fingerprint=?", (fingerprint,)).fetchone()
        if found is not None:
            acked[fingerprint] = Ack(*found)
    out = []
    for r in rows:
        attempts = tuple(
            AttemptRow(at, outcome, error)
            for at, outcome, error in db.execute(
                "SELECT at, outcome, error FROM delivery_attempts WHERE id=? AND sink=?"
                " ORDER BY seq",
                (r[0], r[1]),
            )
        )
        out.append(
            NotificationRecord(
                *(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]),
                updated_at=r[12],
                attempts=attempts,
                ack=acked.get(r[3]),
            )
        )
    return out


# --------------------------------------------------------------------------- the Telegram bot


def bot_offset(db: Db, bot: str) -> int | None:
    row = db.execute("SELECT next_update_id FROM bot_offsets WHERE bot=?", (bot,)).fetchone()
    return int(row[0]) if row is not None else None


def set_bot_offset(db: Db, bot: str, next_update_id: int, now: float) -> None:
    """Never moves back: a stale writer (a replica handing over) cannot make a bot replay."""
    db.execute(
        "INSERT INTO bot_offsets (bot, next_update_id, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (bot) DO UPDATE SET next_update_id = excluded.next_update_id,"
        " updated_at = excluded.updated_at"
        " WHERE bot_offsets.next_update_id < excluded.next_update_id",
        (bot, next_update_id, now),
    )
