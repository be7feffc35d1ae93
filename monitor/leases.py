"""Who polls what: the pure decisions behind several replicas sharing one PostgreSQL.

Each replica, at every round (:class:`monitor.replica.Replica`), reads the lease rows and the
live replicas with the database's clock and asks :func:`plan` what to do about its own leases:
renew those it holds, take free ones, give up those over its share. Every replica runs the same
function on the same rows, so they agree without talking to each other; the database's
compare-and-set on the lease's epoch settles the rare race.

- A source's lease is free when it has no row, no owner, has expired, or its owner is no
  longer a live replica.
- Each live replica's share is ``ceil(leases / replicas)``: a replica never holds more, and
  gives up the excess (``rebalance``) only when the count of live replicas changed the share, so
  holdings never swing back and forth.
- Free leases are handed out in name order, one at a time, to the replica holding the fewest
  (ties by name), up to each share: each replica takes those that fall to it.
- The ``singleton`` lease (periodic work done by one replica) is held by whoever holds it; when
  free, the first live replica by name takes it.

No clock is read here: ``now`` is the database's, passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The name of the lease of the work one replica does for all (mute windows, pruning).
SINGLETON = "singleton"
#: The prefix of a source's lease name.
SOURCE_PREFIX = "source:"


def source_lease(source: str) -> str:
    return SOURCE_PREFIX + source


def lease_source(name: str) -> str | None:
    """The source a lease name is for (``None``: not a source's lease)."""
    return name.removeprefix(SOURCE_PREFIX) if name.startswith(SOURCE_PREFIX) else None


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease row: who holds it, the epoch of that holding, until when (epoch seconds)."""

    name: str
    owner: str | None
    epoch: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What one replica does to its leases this round."""

    renew: tuple[str, ...] = ()
    acquire: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


def holder(lease: Lease | None, live: frozenset[str], now: float) -> str | None:
    """Who holds ``lease`` now: a live replica whose holding has not expired, or nobody."""
    if lease is None or lease.owner is None or lease.expires_at <= now:
        return None
    return lease.owner if lease.owner in live else None


def share(count: int, replicas: int) -> int:
    """The most leases one of ``replicas`` live replicas holds of ``count``."""
    return math.ceil(count / replicas) if replicas else count


def plan(
    me: str,
    live: Sequence[str],
    wanted: Sequence[str],
    leases: Mapping[str, Lease],
    now: float,
    *,
    singleton: bool = True,
) -> Plan:
    """What replica ``me`` does this round, given the live replicas (``me`` among them), the
    source leases every replica wants held (``wanted``) and the lease rows."""
    alive = frozenset(live) | {me}
    names = sorted(set(wanted))
    holders = {name: holder(leases.get(name), alive, now) for name in names}
    mine = [n for n in names if holders[n] == me]
    # What I hold but has expired unseen (a long pause): renewing it is a compare-and-set on
    # its epoch, which fails if another replica took it meanwhile.
    stale_mine = [
        n
        for n in names
        if holders[n] is None and (lease := leases.get(n)) is not None and lease.owner == me
    ]
    cap = share(len(names), len(alive))
    counts = dict.fromkeys(sorted(alive), 0)
    for name in names:
        owner = holders[name]
        if owner is not None:
            counts[owner] += 1
    release: list[str] = []
    if len(mine) > cap:  # a replica joined: give up the excess, the last names first
        release = mine[cap:]
        mine = mine[:cap]
        counts[me] = cap
    renew = list(mine)
    acquire: list[str] = []
    for name in names:
        if holders[name] is not None:
            continue
        under = [r for r in sorted(alive) if counts[r] < cap]
        if not under:
            break
        taker = min(under, key=lambda r: (counts[r], r))
        counts[taker] += 1
        if taker == me:
            (renew if name in stale_mine else acquire).append(name)
    if singleton:
        single = holder(leases.get(SINGLETON), alive, now)
        lease = leases.get(SINGLETON)
        if single == me or (single is None and lease is not None and lease.owner == me):
            renew.append(SINGLETON)
        elif single is None and min(alive) == me:
            acquire.append(SINGLETON)
    return Plan(tuple(renew), tuple(acquire), tuple(release))
