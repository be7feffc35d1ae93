"""The cyclic garbage collector, for a daemon whose heap is mostly long-lived.

A monitor's heap is the config, the scheduler's jobs and, per source, the last accounts (an
unchanged account is the same object poll after poll, for months). CPython's collector scans
every object it tracks in each full collection, so with many sources it kept rescanning that
heap: with 10,000 sources, four full collections of about 0.7 s each per 10 s cycle, the event
loop stalled for over a second at a time and polls came late (docs/benchmarks.md, issue 12).

What we do about it, and nothing else (reference counting still frees almost everything):

* :func:`tune`: collect the youngest generation every :data:`YOUNG` allocations instead of 700:
  a poll allocates thousands of short-lived containers, nearly all freed by reference counting
  before a collection would see them.
* :func:`settle`: a full collection, then ``gc.freeze()``: what is alive now (the heap after
  start-up, after the first polls, after a reload) moves to the permanent generation and is no
  longer scanned. Called again every hour by the maintenance job after ``gc.unfreeze()``, so
  cyclic garbage among once-frozen objects is reclaimed within the hour, at the cost of one
  full collection an hour. Then the C allocator is asked to give its free memory back to the
  system (glibc's ``malloc_trim``; nothing elsewhere): the first poll decodes every account
  once, and without it the process would keep that peak for good.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import time
from typing import Any, Final

__all__ = ["OLDER", "YOUNG", "settle", "tune"]

#: Allocations (net of deallocations) between collections of the youngest generation.
YOUNG: Final = 50_000
#: Collections of one generation between collections of the next (CPython's defaults).
OLDER: Final = (10, 10)


def tune() -> None:
    """Set the collector's thresholds for the daemon (once, at start)."""
    gc.set_threshold(YOUNG, *OLDER)


def settle() -> float:
    """Collect everything, freeze what is left, give free memory back; seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _trim()
    return time.perf_counter() - started


def _trim() -> None:
    """glibc's ``malloc_trim(0)``: free memory at the heap's top and in its holes goes back
    to the system. A no-op where the C library has no such function."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
