"""The SQL only PostgreSQL runs: lease rounds, fencing, and claims on outbox rows.

Everything else is :mod:`monitor.store.sqlite_ops`, shared by both backends. Every time here is
the database's clock (``clock_timestamp()`` in epoch seconds), never a replica's: replicas whose
clocks disagree still agree on who holds what.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitor.errors import LeaseLostError
from monitor.leases import Lease, Plan
from monitor.store import sqlite_ops as ops
from monitor.store.base import OutboxRow
from monitor.store.dbapi import Db

#: The database's clock, in epoch seconds.
NOW = "extract(epoch from clock_timestamp())::double precision"

#: What a round decides, given (live replicas, leases by name, the database's now).
Decide = Callable[[Sequence[str], dict[str, Lease], float], Plan]


@dataclass(slots=True)
class Round:
    """What a lease round did: the leases held after it (name -> epoch), those newly taken
    (with the reason), those given up and those that turned out lost."""

    held: dict[str, int] = field(default_factory=dict)
    acquired: dict[str, str] = field(default_factory=dict)  # name -> "new" or "takeover"
    released: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)


def lease_round(
    db: Db,
    *,
    me: str,
    version: str,
    lease: float,
    had: dict[str, int],
    decide: Decide,
) -> Round:
    """One round of replica ``me``: heartbeat, read, :data:`Decide`, then renew, take and give
    up leases, each a compare-and-set on its epoch (a take also checks, as it writes, that the
    lease is still free: renewing does not change the epoch). ``had`` is what ``me`` believed
    it held."""
    with ops.transaction(db):
        now = float(db.execute(f"SELECT {NOW}").fetchone()[0])
        db.execute(
            "INSERT INTO replicas (name, started_at, heartbeat_at, expires_at, version)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " heartbeat_at=excluded.heartbeat_at, expires_at=excluded.expires_at",
            (me, now, now, now + lease, version),
        )
        live = [r[0] for r in db.execute("SELECT name FROM replicas WHERE expires_at > ?", (now,))]
        leases = {
            r[0]: Lease(r[0], r[1], int(r[2]), float(r[3]))
            for r in db.execute("SELECT name, owner, epoch, expires_at FROM leases")
        }
    plan = decide(live, leases, now)
    done = Round(live=sorted(live))
    # A lease recorded as ``me``'s that this process never took (a restart under the same
    # replica name within the lease, or a second process misconfigured with the same name) is
    # taken anew, with a new epoch: the writes of whoever held it before are fenced off.
    renew = [n for n in plan.renew if n in had]
    acquire = [*plan.acquire, *(n for n in plan.renew if n not in had)]
    with ops.transaction(db):
        for name in renew:
            epoch = had[name]
            renewed = db.execute(
                f"UPDATE leases SET expires_at={NOW} + ?"  # noqa: S608 - constant SQL
                " WHERE name=? AND owner=? AND epoch=? RETURNING epoch",
                (lease, name, me, epoch),
            ).fetchone()
            if renewed is not None:
                done.held[name] = int(renewed[0])
        for name in acquire:
            row = leases.get(name)
            if row is None:
                taken = db.execute(
                    "INSERT INTO leases (name, owner, epoch, expires_at, changed_at)"  # noqa: S608
                    f" VALUES (?, ?, 1, {NOW} + ?, {NOW})"
                    " ON CONFLICT (name) DO NOTHING RETURNING epoch",
                    (name, me, lease),
                ).fetchone()
                reason = "new"
            else:
                taken = db.execute(
                    f"UPDATE leases SET owner=?, epoch=epoch+1, expires_at={NOW} + ?,"  # noqa: S608
                    f" changed_at={NOW} WHERE name=? AND epoch=? AND (owner IS NULL OR owner=?"
                    f" OR expires_at <= {NOW} OR owner NOT IN"
                    f" (SELECT name FROM replicas WHERE expires_at > {NOW})) RETURNING epoch",
                    (me, lease, name, row.epoch, me),
                ).fetchone()
                reason = "released" if row.owner is None else "takeover"
            if taken is not None:
                done.held[name] = int(taken[0])
                done.acquired[name] = reason
        for name in plan.release:
            if _release(db, me, name, had.get(name, leases[name].epoch)):
                done.released.append(name)
    done.lost = [n for n in had if n not in done.held and n not in done.released]
    return done


def _release(db: Db, me: str, name: str, epoch: int) -> bool:
    row = db.execute(
        f"UPDATE leases SET owner=NULL, expires_at=0, changed_at={NOW}"  # noqa: S608
        " WHERE name=? AND owner=? AND epoch=? RETURNING name",
        (name, me, epoch),
    ).fetchone()
    return row is not None


def release_all(db: Db, me: str) -> int:
    """Give up every lease ``me`` holds and leave the live replicas (a clean stop): the others
    take them over at their next round."""
    with ops.transaction(db):
        released = db.execute(
            f"UPDATE leases SET owner=NULL, expires_at=0, changed_at={NOW}"  # noqa: S608
            " WHERE owner=? RETURNING name",
            (me,),
        ).fetchall()
        db.execute(f"UPDATE replicas SET expires_at={NOW} WHERE name=?", (me,))  # noqa: S608
    return len(released)


def fence(db: Db, name: str, me: str, epoch: int, source: str) -> None:
    """Inside a poll's transaction: refuse it unless ``me`` still holds lease ``name`` at
    ``epoch``. ``FOR SHARE`` keeps a takeover (an UPDATE of the row) waiting until the poll's
    transaction ends, so no write lands after another replica took the source."""
    row = db.execute(
        "SELECT 1 FROM leases WHERE name=? AND owner=? AND epoch=? FOR SHARE",
        (name, me, epoch),
    ).fetchone()
    if row is None:
        raise LeaseLostError(
            f"source {source}: another replica holds its lease now (ours was epoch {epoch})",
            source=source,
        )


# --------------------------------------------------------------------------- outbox claims

_CLAIM = (
    "UPDATE outbox SET claimed_by=?, claimed_until={now} + ? FROM ({pick}) AS picked"
    " WHERE outbox.seq = picked.seq RETURNING outbox.seq, outbox.id, outbox.sink,"
    " outbox.source, outbox.payload, outbox.created_at, outbox.attempts, outbox.next_attempt_at"
)
_FREE = "(o.claimed_by IS NULL OR o.claimed_by = ? OR o.claimed_until < {now})"


def claim_next(db: Db, me: str, sink: str, ttl: float) -> OutboxRow | None:
    """Claim the sink's oldest pending row for ``ttl`` seconds, unless another replica's claim
    on it is alive (or it is locked by one claiming it now): then nothing, so one sink's rows
    go out one at a time and in order across replicas."""
    pick = (
        "SELECT o.seq FROM outbox o WHERE o.seq = (SELECT min(seq) FROM outbox"  # noqa: S608
        " WHERE sink=? AND state='pending') AND "
        + _FREE.format(now=NOW)
        + " FOR UPDATE SKIP LOCKED"
    )
    sql = _CLAIM.format(now=NOW, pick=pick)
    row = db.execute(sql, (me, ttl, sink, me)).fetchone()
    return None if row is None else ops._outbox_row(row)


def claim_batch(
    db: Db, me: str, sink: str, *, limit: int, now: float, ttl: float
) -> list[OutboxRow]:
    """Claim up to ``limit`` of the sink's oldest due pending rows, skipping rows another
    replica has claimed or is claiming."""
    pick = (
        "SELECT o.seq FROM outbox o WHERE o.sink=? AND o.state='pending'"  # noqa: S608
        " AND o.next_attempt_at <= ? AND " + _FREE.format(now=NOW) + " ORDER BY o.seq LIMIT ?"
        " FOR UPDATE SKIP LOCKED"
    )
    sql = _CLAIM.format(now=NOW, pick=pick)
    rows = db.execute(sql, (me, ttl, sink, now, me, limit)).fetchall()
    return sorted((ops._outbox_row(r) for r in rows), key=lambda r: r.seq)


def unclaim(db: Db, seq: int) -> None:
    """Let go of a claim (the attempt is recorded, or the worker stops)."""
    db.execute("UPDATE outbox SET claimed_by=NULL, claimed_until=NULL WHERE seq=?", (seq,))


def release_claims(db: Db, me: str) -> None:
    db.execute("UPDATE outbox SET claimed_by=NULL, claimed_until=NULL WHERE claimed_by=?", (me,))


def claimed(db: Db) -> list[tuple[str, str, str]]:
    """(id, sink, replica) of every live claim, for ``status``."""
    return [
        (r[0], r[1], r[2])
        for r in db.execute(
            "SELECT id, sink, claimed_by FROM outbox WHERE claimed_by IS NOT NULL"  # noqa: S608
            f" AND claimed_until > {NOW} AND state='pending' ORDER BY seq"
        )
    ]


# --------------------------------------------------------------------------- history


def compact_history(db: Db, before: float) -> int:
    """Move the journal's rows before ``before`` into ``account_history`` in one statement:
    exactly the rows deleted are the rows copied. (The two statements SQLite runs under its
    one writer would each see their own snapshot here, READ COMMITTED: a row another replica
    committed between them would be deleted without having been copied.)"""
    columns = "source, account_number, field, at, value, previous"
    return len(
        db.execute(
            f"WITH moved AS (DELETE FROM history_journal WHERE at < ? RETURNING {columns})"  # noqa: S608
            f" INSERT INTO account_history ({columns}) SELECT {columns} FROM moved"
            " ON CONFLICT (source, account_number, field, at)"
            " DO UPDATE SET value=excluded.value, previous=excluded.previous"
            " RETURNING 1",
            (before,),
        ).fetchall()
    )
