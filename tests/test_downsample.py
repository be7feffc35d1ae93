"""Downsampling for charts: at most the limit, and the extremes survive."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.downsample import MAX_POINTS, Point, downsample


def test_a_series_that_fits_is_kept_whole() -> None:
    """Up to the limit nothing is dropped."""
    points: list[Point] = [(float(t), Decimal(t)) for t in range(10)]
    assert downsample(points, 10) == points


def test_a_one_point_dip_survives() -> None:
    """A cash dip that lasted one poll among 100,000 is still drawn."""
    points: list[Point] = [(float(t), Decimal("5000.00")) for t in range(100_000)]
    points[54_321] = (54_321.0, Decimal("12.34"))
    out = downsample(points)
    assert len(out) <= MAX_POINTS
    assert (54_321.0, Decimal("12.34")) in out
    assert out[0] == points[0]
    assert out[-1] == points[-1]


def test_nulls_never_win_min_or_max() -> None:
    """A null (a field the vendor left out) is not a number to draw."""
    points: list[Point] = [(float(t), None if t % 2 else t) for t in range(100)]
    out = downsample(points, 10)
    assert len(out) <= 10
    assert all(v is not None for _, v in out[1:-1])


def test_a_limit_below_four_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        downsample([(0.0, 1)], 3)


@given(
    values=st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=3000),
    limit=st.integers(4, 400),
)
def test_extremes_survive_and_the_limit_holds(values: list[int], limit: int) -> None:
    """Whatever the series: at most ``limit`` points, in time order, all taken from the input,
    and its lowest and highest values are among them."""
    points: list[Point] = [(float(t), v) for t, v in enumerate(values)]
    out = downsample(points, limit)
    assert len(out) <= limit
    assert [t for t, _ in out] == sorted({t for t, _ in out})
    assert set(out) <= set(points)
    kept = [v for _, v in out]
    assert min(values) in kept
    assert max(values) in kept
