"""monitor.heap: the collector's thresholds, and settling (collect, then freeze) the heap."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from monitor import heap


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_collects_the_youngest_generation_far_less_often() -> None:
    """The youngest generation waits for YOUNG allocations; the older ones keep the defaults."""
    heap.tune()
    assert gc.get_threshold() == (heap.YOUNG, *heap.OLDER)
    assert heap.YOUNG >= 10_000


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_settle_frees_cyclic_garbage_and_freezes_what_is_alive() -> None:
    """Garbage in a cycle is collected; what is alive afterwards is frozen, not scanned."""
    gc.disable()
    try:
        garbage = weakref.ref(_Node())  # a cycle nobody refers to: only the collector frees it
        alive = _Node()
        assert garbage() is not None
        seconds = heap.settle()
        assert garbage() is None
        assert gc.get_freeze_count() > 0
        assert not any(o is alive for o in gc.get_objects())  # frozen: not in any generation
        assert seconds >= 0
    finally:
        gc.enable()


def test_settle_again_reclaims_garbage_among_objects_frozen_before() -> None:
    """An object frozen by one settle that later becomes cyclic garbage is freed by the next:
    nothing leaks for longer than one maintenance period."""
    gc.disable()
    try:
        kept = [_Node()]
        node = weakref.ref(kept[0])
        heap.settle()
        kept.clear()  # the frozen node is now unreachable cyclic garbage
        gc.collect()
        assert node() is not None  # a plain collection does not look at frozen objects
        heap.settle()
        assert node() is None
    finally:
        gc.enable()
