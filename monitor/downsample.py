"""Fewer points for a chart, keeping what matters: min/max per bucket. Pure.

A series of thousands of points becomes at most ``limit``: the time range is cut into equal
buckets and each bucket keeps its lowest and its highest point (in time order), so a dip or
a spike survives however short it was; the first and the last point are always kept. Values
are compared as numbers; points whose value is not a number (``None``) are kept only as
bucket edges would keep them: they never win min or max.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TypeAlias

__all__ = ["MAX_POINTS", "Point", "downsample"]

#: The most points a series is drawn with (the page and the API's default).
MAX_POINTS = 1000

Number: TypeAlias = Decimal | int | float
#: (epoch seconds, value).
Point: TypeAlias = tuple[float, Number | None]


def downsample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most ``limit`` (at least 4) of ``points`` (sorted by time): all when they fit, else
    the first, the last, and the lowest and highest of each of ``(limit - 2) // 2`` equal
    time buckets between them, in time order."""
    if limit < 4:
        raise ValueError(f"limit must be at least 4 (got {limit})")
    if len(points) <= limit:
        return list(points)
    first, last = points[0], points[-1]
    inner = points[1:-1]
    buckets = (limit - 2) // 2
    start, span = first[0], (last[0] - first[0]) or 1.0
    # Per bucket: [index of its lowest, lowest value, index of its highest, highest value].
    kept: list[list[int | Number] | None] = [None] * buckets
    for i, (at, value) in enumerate(inner):
        if value is None:
            continue
        b = min(int((at - start) / span * buckets), buckets - 1)
        seen = kept[b]
        if seen is None:
            kept[b] = [i, value, i, value]
        elif value < seen[1]:
            seen[0], seen[1] = i, value
        elif value > seen[3]:
            seen[2], seen[3] = i, value
    out = [first]
    for seen in kept:
        if seen is not None:
            out.extend(inner[int(i)] for i in sorted({seen[0], seen[2]}))
    out.append(last)
    return out
