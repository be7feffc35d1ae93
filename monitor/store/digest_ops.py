"""The store's side of digests (``[[digests]]``), in the SQL both backends share.

:func:`digest_data` is the one query a digest is built from: the stored accounts with each
one's ``account_value_total`` at the period's start (from ``account_history``), the
notifications recorded in the period (``notification_log``), the polls (``polls``) and the
alerts firing now (``alerts``) and the accounts that left (``departed``).
:func:`queue_digest` puts a digest in the outbox for its sinks, once per id and sink, and in
the notification record, like any notification.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor import encoding
from monitor.digest import DIGEST_STATUS
from monitor.digest_data import (
    AlertLine,
    DepartedAccount,
    DigestData,
    SourcePolls,
    StillFiring,
    StoredAccount,
    money,
)
from monitor.models import JSONValue
from monitor.store.dbapi import Db
from monitor.store.schema import (
    ACCOUNT_HISTORY_SINCE,
    ACTIONS_SINCE,
    ALERT_STATES_SINCE,
    DEPARTED_SINCE,
)
from monitor.store.sqlite_actions import _bump as bump_control
from monitor.store.sqlite_ops import series, transaction

#: The outbox and notification-record ``source`` of a digest (it is no one source's).
DIGEST_SOURCE = ""

_FIRING_SCHEMA_1 = "SELECT rule, source, account_number, started_at, fingerprint FROM alerts"
#: Since schema 2 ``alerts`` keeps pending alerts too (before, every row fired).
_FIRING = _FIRING_SCHEMA_1 + " WHERE state = 'firing'"


def digest_data(db: Db, version: int, since: float | None, until: float) -> DigestData:
    """Every stored account with its value at ``since``; what happened in (since, until]."""
    records: dict[tuple[str, str], dict[str, Any]] = {
        (source, number): encoding.loads(record)
        for source, number, record in db.execute(
            "SELECT source, account_number, record FROM accounts"
        )
    }
    then: dict[tuple[str, str], str | None] = {}
    if since is not None and version >= ACCOUNT_HISTORY_SINCE:
        for source in sorted({s for s, _ in records}):
            # The first poll's records are the history's starting values (no series rows):
            # a source first polled after ``since`` has no value then for any account.
            (first,) = db.execute(
                "SELECT min(at) FROM polls WHERE source = ?", (source,)
            ).fetchone()
            if first is None or float(first) > since:
                continue
            for row in series(db, version, (source, None, ["account_value_total"]), (since, since)):
                then[(row.source, row.account_number)] = row.value
    accounts = tuple(
        StoredAccount(
            source,
            number,
            record,
            then=money(then.get((source, number))),
            # No history reaches back to since: the account (or its source) was first seen
            # after it.
            new=since is not None
            and version >= ACCOUNT_HISTORY_SINCE
            and "account_value_total" in record
            and then.get((source, number)) is None,
        )
        for (source, number), record in records.items()
    )
    low = since if since is not None else float("-inf")
    # A read-only store (``digest --print``) may read a database the daemon has not migrated:
    # what its schema lacks is empty.
    alerts = tuple(
        AlertLine(status, rule, source, number, summary, _moment(at), fingerprint)
        for status, rule, source, number, summary, at, fingerprint in (
            _alert_lines(db, low, until) if version >= ACTIONS_SINCE else ()
        )
    )
    open_before = frozenset(
        fingerprint
        for fingerprint in sorted({a.fingerprint for a in alerts})
        if since is not None and _last_status(db, fingerprint, since) == "firing"
    )
    polls: list[SourcePolls] = []
    if version >= ACCOUNT_HISTORY_SINCE:
        errors: dict[str, str | None] = {}
        for source, error in db.execute(
            "SELECT source, error FROM polls WHERE ok = 0 AND at > ? AND at <= ? ORDER BY at",
            (low, until),
        ):
            errors[source] = error
        polls = [
            SourcePolls(source, int(count), int(failed or 0), errors.get(source))
            for source, count, failed in db.execute(
                "SELECT source, count(*), sum(CASE WHEN ok = 0 THEN 1 ELSE 0 END) FROM polls"
                " WHERE at > ? AND at <= ? GROUP BY source",
                (low, until),
            )
        ]
    firing = tuple(
        StillFiring(rule, source, number or None, datetime.fromisoformat(started), fingerprint)
        for rule, source, number, started, fingerprint in db.execute(
            _FIRING if version >= ALERT_STATES_SINCE else _FIRING_SCHEMA_1
        )
    )
    departed = tuple(
        DepartedAccount(
            source,
            number,
            money(encoding.loads(record).get("account_value_total")),
            datetime.fromisoformat(left_at),
        )
        for source, number, record, left_at in (
            db.execute("SELECT source, account_number, record, left_at FROM departed")
            if version >= DEPARTED_SINCE
            else ()
        )
    )
    return DigestData(accounts, alerts, tuple(polls), open_before, firing, departed)


def _alert_lines(db: Db, low: float, until: float) -> list[tuple[Any, ...]]:
    """The alert notifications recorded in (low, until], one row per notification."""
    return db.execute(
        "SELECT status, rule, source, account_number, summary, min(created_at), fingerprint"
        " FROM notification_log WHERE created_at > ? AND created_at <= ?"
        " AND status IN ('firing', 'resolved')"
        " GROUP BY id, status, rule, source, account_number, summary, fingerprint",
        (low, until),
    ).fetchall()


def _last_status(db: Db, fingerprint: str, at: float) -> str | None:
    """The status of the alert's last notification at or before ``at`` (read backwards on
    the ``created_at`` index: once per alert notified in the period, once a digest)."""
    row = db.execute(
        "SELECT status FROM notification_log WHERE fingerprint = ? AND created_at <= ?"
        " AND status IN ('firing', 'resolved') ORDER BY created_at DESC LIMIT 1",
        (fingerprint, at),
    ).fetchone()
    return None if row is None else str(row[0])


def queue_digest(  # noqa: PLR0917 - SqlStore._run passes arguments by position
    db: Db,
    payload: Mapping[str, JSONValue],
    sinks: Sequence[str],
    summary: str,
    now: float,
    announce: bool = False,
) -> None:
    """Queue the digest ``payload`` for each of ``sinks``, due at once; one already queued for
    a sink (the same id) is left as it is. ``announce``: bump ``control_version`` too (the
    running daemon's control job wakes its delivery when it moves)."""
    ident = str(payload["id"])
    fingerprint = str(payload["fingerprint"])
    body = encoding.dumps(payload)
    with transaction(db):
        db.executemany(
            "INSERT INTO outbox (id, sink, source, payload, created_at,"
            " next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(ident, sink, DIGEST_SOURCE, body, now, now, now) for sink in sinks],
        )
        db.executemany(
            "INSERT INTO notification_log (id, sink, source, fingerprint, rule, account_number,"
            " status, summary, created_at, state, updated_at)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, 'pending', ?)"
            " ON CONFLICT (id, sink) DO NOTHING",
            [
                (
                    ident,
                    sink,
                    DIGEST_SOURCE,
                    fingerprint,
                    fingerprint,
                    DIGEST_STATUS,
                    summary,
                    now,
                    now,
                )
                for sink in sinks
            ],
        )
        if announce:
            bump_control(db)


def queued(db: Db, ident: str) -> set[str]:
    """The sinks a digest with this id is already queued for or was delivered to: the
    notification record too, which outlives the outbox's finished rows (``[delivery]
    keep_finished`` may be an hour; ``[history] keep`` is never shorter in practice)."""
    return {
        sink
        for (sink,) in db.execute(
            "SELECT sink FROM outbox WHERE id = ? UNION SELECT sink FROM notification_log"
            " WHERE id = ?",
            (ident, ident),
        )
    }


def _moment(at: float) -> datetime:
    return datetime.fromtimestamp(float(at), tz=UTC)
