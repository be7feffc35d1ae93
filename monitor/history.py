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
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.downsample import MAX_POINTS, Number, downsample
from monitor.models import INTEGER_FIELDS, MONEY_FIELDS, SERIES_FIELDS
from monitor.store.base import AccountRow, SeriesRow, Store

__all__ = [
    "RANGES",
    "Series",
    "SeriesValue",
    "UnknownAccountError",
    "account_history",
    "build_series",
    "export",
    "find_account",
    "history_json",
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


class UnknownAccountError(LookupError):
    """No such account in the store (or not in the source asked for)."""


async def find_account(store: Store, number: str, source: str | None = None) -> AccountRow:
    """The stored account ``number`` (of ``source``, else of the first source that has it)."""
    rows = await store.accounts()
    for row in rows:
        if row.account_number == number and source in (None, row.source):
            return row
    where = f" in source {source!r}" if source is not None else ""
    raise UnknownAccountError(f"no account {number!r}{where}")


def series_json(series: Series) -> dict[str, Any]:
    """One series as the API and ``history --format json`` give it."""
    return {
        "field": series.field,
        "money": series.money,
        "numeric": series.numeric,
        "total": series.total,
        "points": [[t, v] for t, v in series.points],
    }


def history_json(
    account: AccountRow, since: float, until: float, series: Sequence[Series]
) -> dict[str, Any]:
    """The answer of ``/api/v1/accounts/{number}/history`` (and ``history --format json``)."""
    return {
        "source": account.source,
        "account_number": account.account_number,
        "since": since,
        "until": until,
        "series": [series_json(s) for s in series],
    }


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


def export(
    account: AccountRow, since: float, until: float, series: Sequence[Series], fmt: str
) -> str:
    """``history --format``: ``json`` (the API's answer), ``csv`` or ``table`` (one row per
    point: UTC time, field, value; the point carried to ``until`` is left out)."""
    if fmt == "json":
        from monitor import encoding

        return encoding.dumps(history_json(account, since, until, series))
    rows = [
        (_utc(t), s.field, "" if v is None else str(v))
        for s in series
        for i, (t, v) in enumerate(s.points)
        if not (i == len(s.points) - 1 and i > 0 and t == until)
    ]
    rows.sort()
    if fmt == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["time", "field", "value"])
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    header = ("time (UTC)", "field", "value")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [
        f"{account.account_number} ({account.source}), {_utc(since)} to {_utc(until)}",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not rows:
        lines.append("(no values in this range)")
    return "\n".join(lines)


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
