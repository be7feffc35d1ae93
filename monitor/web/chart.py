"""Charts as SVG geometry, computed on the server: a step line, its hover points, the time
axis, and bands (restricted periods, alert episodes) on the same axis. Pure.

The templates draw what :func:`step_chart` and :func:`sparkline` return with SVG presentation
attributes and classes only (the Content-Security-Policy allows no inline style), so a chart
is there with JavaScript off; each point carries a ``<title>`` with its value and UTC time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from monitor.downsample import downsample

__all__ = ["Band", "Chart", "sparkline", "step_chart"]

WIDTH, HEIGHT = 640.0, 160.0
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 4.0, 4.0, 10.0, 18.0
#: Points that get a hover target of their own (the line keeps all of them).
HOVER_POINTS = 200


@dataclass(frozen=True, slots=True)
class Band:
    x: float
    width: float
    kind: str  # a CSS class: "restricted", "alert", "event"
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: float
    height: float
    path: str
    dots: tuple[tuple[float, float, str], ...]
    bands: tuple[Band, ...]
    ticks: tuple[tuple[float, float], ...]  # (x, epoch seconds)
    low: str
    high: str
    empty: bool


def _x(at: float, since: float, until: float) -> float:
    span = (until - since) or 1.0
    return round(PAD_LEFT + (at - since) / span * (WIDTH - PAD_LEFT - PAD_RIGHT), 1)


def step_chart(
    points: Sequence[tuple[float, Any]],
    *,
    since: float,
    until: float,
    fmt: Callable[[Any], str],
    bands: Sequence[tuple[float, float, str, str]] = (),
) -> Chart:
    """A step line through ``points`` (each value holds until the next) over ``[since,
    until]``, with ``bands`` (start, end, class, title) behind it; ``fmt`` writes a value."""
    numeric = [(t, Decimal(v)) for t, v in points if isinstance(v, Decimal | int)]
    drawn_bands = tuple(
        Band(
            _x(max(a, since), since, until),
            max(_x(min(b, until), since, until) - _x(max(a, since), since, until), 2.0),
            kind,
            title,
        )
        for a, b, kind, title in bands
        if b >= since and a <= until
    )
    ticks = _ticks(since, until)
    if not numeric:
        return Chart(WIDTH, HEIGHT, "", (), drawn_bands, ticks, "", "", True)
    values = [v for _, v in numeric]
    low, high = min(values), max(values)
    pad = (high - low) * Decimal("0.08") or (abs(high) * Decimal("0.01") or Decimal(1))
    bottom, top = low - pad, high + pad
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM

    def y(v: Decimal) -> float:
        return round(PAD_TOP + float((top - v) / (top - bottom)) * inner, 1)

    parts = []
    for i, (t, v) in enumerate(numeric):
        x, yy = _x(t, since, until), y(v)
        parts.append(f"M{x} {yy}" if i == 0 else f"H{x}V{yy}")
    end = _x(until, since, until)
    if numeric[-1][0] < until:
        parts.append(f"H{end}")
    hover = downsample(numeric, HOVER_POINTS) if len(numeric) > HOVER_POINTS else numeric
    dots = tuple(
        (_x(t, since, until), y(Decimal(v)), f"{fmt(v)} at {_utc(t)}")
        for t, v in hover
        if v is not None
    )
    return Chart(
        WIDTH, HEIGHT, "".join(parts), dots, drawn_bands, ticks, fmt(low), fmt(high), False
    )


def _ticks(since: float, until: float, count: int = 4) -> tuple[tuple[float, float], ...]:
    step = (until - since) / count
    return tuple((_x(since + i * step, since, until), since + i * step) for i in range(count + 1))


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def sparkline(
    points: Sequence[Sequence[Any]],
    *,
    since: float,
    until: float,
    width: float = 100.0,
    height: float = 24.0,
) -> str:
    """An SVG polyline's ``points`` attribute for a small step line (empty without numbers)."""
    numeric = [(float(t), Decimal(v)) for t, v in points if isinstance(v, Decimal | int)]
    if not numeric:
        return ""
    values = [v for _, v in numeric]
    low, high = min(values), max(values)
    span = (high - low) or Decimal(1)
    out: list[str] = []
    last_y = None
    for t, v in numeric:
        x = round((t - since) / ((until - since) or 1.0) * width, 1)
        yy = round(float((high - v) / span) * (height - 2) + 1, 1)
        if last_y is not None:
            out.append(f"{x},{last_y}")
        out.append(f"{x},{yy}")
        last_y = yy
    out.append(f"{width},{last_y}")
    return " ".join(out)
