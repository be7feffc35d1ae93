"""The lease plan (monitor/leases.py): pure, with the database's clock as a parameter."""

from __future__ import annotations

from collections import Counter

import pytest

from monitor.leases import (
    SINGLETON,
    Lease,
    Plan,
    holder,
    lease_source,
    plan,
    share,
    source_lease,
)

NOW = 1000.0
SOURCES = [source_lease(f"s{i:02}") for i in range(20)]


def held(
    owner: str | None, *names: str, epoch: int = 1, until: float = NOW + 10
) -> dict[str, Lease]:
    return {n: Lease(n, owner, epoch, until) for n in names}


def settle(replicas: list[str], leases: dict[str, Lease], rounds: int = 3) -> dict[str, Lease]:
    """Every replica runs its plan in turn, as the database would apply it (epochs grow on a
    change of owner); several rounds, so the result is the steady state."""
    leases = dict(leases)
    for _ in range(rounds):
        for me in replicas:
            decided = plan(me, replicas, SOURCES, leases, NOW, singleton=False)
            for name in decided.release:
                leases[name] = Lease(name, None, leases[name].epoch, 0)
            for name in decided.renew:
                leases[name] = Lease(name, me, leases[name].epoch, NOW + 10)
            for name in decided.acquire:
                old = leases.get(name)
                leases[name] = Lease(name, me, old.epoch + 1 if old else 1, NOW + 10)
    return leases


def counts(leases: dict[str, Lease]) -> Counter[str | None]:
    return Counter(lease.owner for lease in leases.values())


@pytest.mark.parametrize(
    ("lease", "live", "expected"),
    [
        (None, {"a"}, None),
        (Lease("x", None, 3, NOW + 5), {"a"}, None),
        (Lease("x", "a", 3, NOW + 5), {"a"}, "a"),
        (Lease("x", "a", 3, NOW), {"a"}, None),  # expired exactly now
        (Lease("x", "a", 3, NOW + 5), {"b"}, None),  # its owner stopped heartbeating
    ],
)
def test_a_lease_is_held_by_a_live_owner_until_it_expires(
    lease: Lease | None, live: set[str], expected: str | None
) -> None:
    assert holder(lease, frozenset(live), NOW) == expected


@pytest.mark.parametrize(
    ("count", "replicas", "expected"), [(20, 3, 7), (20, 1, 20), (3, 3, 1), (2, 3, 1), (0, 2, 0)]
)
def test_a_replica_s_share_is_the_ceiling(count: int, replicas: int, expected: int) -> None:
    assert share(count, replicas) == expected


def test_lease_names_round_trip() -> None:
    assert lease_source(source_lease("family")) == "family"
    assert lease_source(SINGLETON) is None


def test_a_lone_replica_takes_every_source_and_the_singleton() -> None:
    decided = plan("a", ["a"], SOURCES, {}, NOW)
    assert decided == Plan(renew=(), acquire=(*sorted(SOURCES), SINGLETON), release=())


def test_three_replicas_starting_together_spread_evenly_without_overlap() -> None:
    """Each replica's plan on the same empty table takes a disjoint part: 7, 7 and 6."""
    replicas = ["a", "b", "c"]
    taken = [set(plan(r, replicas, SOURCES, {}, NOW, singleton=False).acquire) for r in replicas]
    assert [len(t) for t in taken] == [7, 7, 6]
    assert set.union(*taken) == set(SOURCES)
    assert sum(len(t) for t in taken) == len(SOURCES)


def test_a_replica_renews_what_it_holds_and_takes_nothing_more_in_steady_state() -> None:
    leases = settle(["a", "b", "c"], {})
    for me in ("a", "b", "c"):
        decided = plan(me, ["a", "b", "c"], SOURCES, leases, NOW, singleton=False)
        assert decided.acquire == ()
        assert decided.release == ()
        assert set(decided.renew) == {n for n, lease in leases.items() if lease.owner == me}


def test_a_dead_replica_s_sources_are_shared_by_the_others() -> None:
    """c stopped heartbeating: its 6 leases are free and go to a and b (10 each)."""
    leases = settle(["a", "b", "c"], {})
    after = settle(["a", "b"], leases)
    assert counts(after) == Counter({"a": 10, "b": 10})
    moved = [n for n in SOURCES if leases[n].owner == "c"]
    assert all(after[n].epoch == leases[n].epoch + 1 for n in moved)  # a change of owner
    kept = [n for n in SOURCES if leases[n].owner != "c"]
    assert all(after[n] == leases[n] for n in kept)  # no thrash: nothing else moved


def test_an_expired_lease_of_a_live_replica_is_free() -> None:
    """b still heartbeats but did not renew the lease in time: it is free, and falls to a."""
    leases = held("b", SOURCES[0], until=NOW - 1)
    decided = plan("a", ["a", "b"], SOURCES[:1], leases, NOW, singleton=False)
    assert decided.acquire == (SOURCES[0],)
    assert plan("b", ["a", "b"], SOURCES[:1], leases, NOW, singleton=False) == Plan()


def test_a_paused_owner_renews_its_expired_lease_if_it_falls_to_it() -> None:
    """Renewing is a compare-and-set on the epoch: when the lease falls back to its last
    owner, it renews (keeps its epoch) rather than takes it anew."""
    leases = held("a", SOURCES[0], until=NOW - 1, epoch=4)
    decided = plan("a", ["a"], SOURCES[:1], leases, NOW, singleton=False)
    assert decided == Plan(renew=(SOURCES[0],))


def test_a_joining_replica_gets_a_share_and_holders_give_up_only_the_excess() -> None:
    leases = settle(["a", "b"], {})
    assert counts(leases) == Counter({"a": 10, "b": 10})
    after = settle(["a", "b", "c"], leases)
    assert sorted(counts(after).values()) == [6, 7, 7]
    changed = [n for n in SOURCES if after[n].owner != leases[n].owner]
    assert len(changed) == counts(after)["c"]  # only what c took moved


def test_rebalancing_is_stable_once_settled() -> None:
    """Another round changes nothing: holdings do not swing back and forth."""
    leases = settle(["a", "b", "c"], settle(["a", "b"], {}))
    assert settle(["a", "b", "c"], leases, rounds=5) == leases


def test_the_singleton_goes_to_the_first_live_replica_and_stays_with_its_holder() -> None:
    assert SINGLETON in plan("a", ["a", "b"], [], {}, NOW).acquire
    assert SINGLETON not in plan("b", ["a", "b"], [], {}, NOW).acquire
    leases = held("b", SINGLETON)
    assert plan("a", ["a", "b"], [], leases, NOW) == Plan()
    assert plan("b", ["a", "b"], [], leases, NOW) == Plan(renew=(SINGLETON,))


def test_a_dead_singleton_holder_is_replaced_by_the_first_live_replica() -> None:
    leases = held("a", SINGLETON)
    assert plan("b", ["b", "c"], [], leases, NOW).acquire == (SINGLETON,)
    assert plan("c", ["b", "c"], [], leases, NOW).acquire == ()
