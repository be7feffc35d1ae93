"""An account's tracked fields over a time range, ready to draw or export.

One code path for the dashboard's charts, ``/api/v1/accounts/{number}/history`` and
``balance-monitor history``: :func:`account_history` reads the rows of a range (and the value
in force at its start) through :meth:`~monitor.store.Store.series`, and :func:`build_series`
turns them into step series clamped to the range and downsampled
(:func:`monitor.downsample.downsample`) so a dip survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from monitor.downsample import MAX_POINTS, Number, downsample
from monitor.models import INTEGER_FIELDS, MONEY_FIELDS, SERIES_FIELDS
from monitor.store.base import SeriesRow, Store

__all__ = [
    "RANGES",
    "Series",
    "SeriesValue",
    "account_history",
    "build_series",
    "parse_moment",
    "series_value",
]

SeriesValue = Decimal | int | str | None

#: The ranges the account page offers, by their name in the page and the API.
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
_MONEY = frozenset(MONEY_FIELDS)
_INTEGER = frozenset(INTEGER_FIELDS)


@dataclass(frozen=True, slots=True)
class Series:
    """One field of one account over ``[since, until]``: each point is the value from its
    time on (a step series), the first at ``since`` when a value was in force then."""

    source: str
    account_number: str
    field: str
    since: float
    until: float
    points: tuple[tuple[float, SeriesValue], ...]
    #: How many points the range held before downsampling.
    total: int

    @property
    def numeric(self) -> bool:
        return self.field in _MONEY or self.field in _INTEGER

    @property
    def money(self) -> bool:
        return self.field in _MONEY


def series_value(field: str, text: str | None) -> SeriesValue:
    """A stored value as the field's type: money as ``Decimal``, counts as ``int``."""
    if text is None:
        return None
    if field in _MONEY or field in _INTEGER:
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text
        return int(number) if field in _INTEGER and number == number.to_integral() else number
    return text


def build_series(
    rows: Iterable[SeriesRow],
    *,
    source: str,
    account_number: str,
    fields: Sequence[str],
    since: float,
    until: float,
    limit: int | None = MAX_POINTS,
) -> list[Series]:
    """The series of ``fields`` (in that order) from the store's rows of one account: a row
    before ``since`` moves to ``since``; the last value is carried to ``until`` so the line
    reaches the end of the range; numeric series are downsampled to ``limit`` points
    (``None``: all)."""
    by_field: dict[str, list[tuple[float, SeriesValue]]] = {f: [] for f in fields}
    for row in rows:
        if row.account_number != account_number or row.field not in by_field:
            continue
        by_field[row.field].append((max(row.at, since), series_value(row.field, row.value)))
    made = []
    for name in fields:
        points = by_field[name]
        total = len(points)
        if points and points[-1][0] < until:
            points.append((until, points[-1][1]))
        if limit is not None and name in _MONEY | _INTEGER:
            numeric = [(t, v) for t, v in points if not isinstance(v, str)]
            points = list(_as_series(downsample(numeric, limit)))
        made.append(Series(source, account_number, name, since, until, tuple(points), total))
    return made


def _as_series(
    points: Iterable[tuple[float, Number | None]],
) -> Iterable[tuple[float, SeriesValue]]:
    for t, v in points:
        yield t, v if not isinstance(v, float) else Decimal(str(v))


async def account_history(
    store: Store,
    *,
    source: str,
    account_number: str,
    fields: Sequence[str] = SERIES_FIELDS,
    since: float,
    until: float,
    limit: int | None = MAX_POINTS,
) -> list[Series]:
    """The series of ``fields`` of one account over ``[since, until]`` (epoch seconds)."""
    rows = await store.series(source, [account_number], fields, since=since, until=until)
    return build_series(
        rows,
        source=source,
        account_number=account_number,
        fields=fields,
        since=since,
        until=until,
        limit=limit,
    )


def parse_moment(text: str, now: datetime) -> datetime:
    """``--since``/``--until`` and the API's ``since``/``until``: a duration before ``now``
    (``7d``, ``90m``, ``1h30m``), or an ISO 8601 time (UTC when it names no zone)."""
    from monitor.config import parse_duration  # pydantic stays out of the pure import path

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (7d, 12h, 90m) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)
