"""The body of ``GET /accounts`` -> validated accounts plus per-record problems. Pure.

A body that is not a JSON array raises :class:`~monitor.errors.ParseError`: nothing in it can be
trusted. Inside the array every record stands alone: a bad record becomes a skipped
:class:`~monitor.models.Problem` and the other accounts are processed normally.

Per record, in one pass over its keys:

- ``account_number`` must be a non-empty string; the first record with a given number wins, later
  ones are skipped as duplicates (even when the first one was itself skipped).
- Money fields are JSON numbers, kept as ``Decimal`` (integers are converted); a boolean or a string
  is not a number.
- ``daytrades_count`` is a non-negative integer (an integral ``3.0`` is accepted as ``3``).
- Text fields are strings; an enumeration value we do not know is kept, with a warning
  (``skipped=False``), because the vendor adds values.
- A known field that is ``null`` is treated as absent and left out of the record.
- Unknown fields are kept as data, unchanged.
- What cannot be stored and sent makes the record unusable: arrays and objects nested deeper
  than :data:`monitor.encoding.MAX_DEPTH` (the record counting as one level), however deep, and
  text that is no Unicode (a lone surrogate, which JSON's ``\\ud800`` escapes can write), in a
  key or a value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

import orjson

from monitor.diff import raw_checks, same_raw
from monitor.encoding import MAX_DEPTH, cut_deeper_than, loads
from monitor.errors import ParseError
from monitor.models import (
    INTEGER_FIELDS,
    KNOWN_ENUMS,
    MONEY_FIELDS,
    TEXT_FIELDS,
    Account,
    JSONValue,
    ParseResult,
    Problem,
)

__all__ = [
    "InexactError",
    "check_one",
    "exact_record",
    "parse_body",
    "parse_exact",
    "parse_items",
    "parse_records",
    "problem_text",
]

_MONEY: Final = 1
_INTEGER: Final = 2
_TEXT: Final = 3
_KIND: Final[dict[str, int]] = {
    **dict.fromkeys(MONEY_FIELDS, _MONEY),
    **dict.fromkeys(INTEGER_FIELDS, _INTEGER),
    **dict.fromkeys(TEXT_FIELDS, _TEXT),
}
#: Longest excerpt of response text or of a value quoted in a message.
_EXCERPT: Final = 40
#: Integral decimals at or beyond this are refused for counts instead of being expanded into ints.
_COUNT_LIMIT: Final = Decimal(10**18)
#: Money at or beyond this is refused: no balance is that large, and arithmetic on exponents past
#: the default context's ``Emax`` raises ``decimal.Overflow`` in whatever code touches it next.
_MONEY_LIMIT: Final = Decimal("1E+30")
#: A binary float's shortest repr is exact up to 15 significant digits (IEEE 754 double).
_FLOAT_DIGITS: Final = 15
_CENTS: Final = Decimal("0.01")


class _RecordError(Exception):
    """Internal: the record being checked must be skipped because of ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_body(body: bytes, previous: Mapping[str, Account] | None = None) -> ParseResult:
    """Decode the response body of ``GET /accounts`` and validate every record in it.

    Raises :class:`ParseError` when the body is not JSON or not a JSON array.

    The fast path decodes with orjson. A record equal (:func:`monitor.diff.same_raw`) to the
    one ``previous`` holds for its account (``Account.raw``) is not validated again: that
    ``Account`` is reused, and ``ParseResult.changed`` names only the accounts that are new or
    differ. Binary floats are
    turned into ``Decimal`` through their shortest repr, exact for every number of at most 15
    significant digits; a body with a longer number, or one orjson refuses, takes the exact
    path (the standard library with ``Decimal``), which also words the error precisely.
    """
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        return parse_exact(body)
    if not isinstance(items, list):
        raise ParseError(f"response is not a JSON array of accounts (got {_json_type(items)})")
    try:
        return _parse_decoded(items, previous or {})
    except InexactError:
        return parse_exact(body)


def parse_items(items: list[Any], previous: Mapping[str, Account] | None = None) -> ParseResult:
    """The records of a list orjson decoded (a stream push's ``data``), as :func:`parse_body`'s
    fast path reads them. Raises :class:`InexactError` when a number needs the exact path
    (decode the text with :func:`monitor.encoding.loads`, then :func:`parse_records`)."""
    return _parse_decoded(items, previous or {})


def _parse_decoded(items: list[Any], previous: Mapping[str, Account]) -> ParseResult:
    """The fast path's records: reuse unchanged accounts, validate the rest."""
    accounts: dict[str, Account] = {}
    problems: list[Problem] = []
    seen: set[str] = set()
    changed: set[str] = set()
    for index, item in enumerate(items):
        if type(item) is dict:
            number = item.get("account_number")
            if type(number) is str and number not in seen:
                old = previous.get(number)
                # same_raw, with its common case (no key to look at again) inline.
                if old is not None and (
                    same_raw(old, item) if old.checks else (old.raw is not None and old.raw == item)
                ):
                    seen.add(number)
                    accounts[number] = old
                    continue
            exact = exact_record(item)
        else:
            exact = item
        if check_one(index, exact, seen, accounts, problems, raw=item):
            changed.add(exact["account_number"])
    return ParseResult(accounts=accounts, problems=tuple(problems), changed=frozenset(changed))


class InexactError(Exception):
    """A number has more digits than a binary float keeps; use the exact path."""


def _from_float(value: float, *, money: bool) -> Decimal:
    text = repr(value)
    if len(text) > _FLOAT_DIGITS and sum(c.isdigit() for c in text.partition("e")[0]) > (
        _FLOAT_DIGITS
    ):
        raise InexactError
    number = Decimal(text)
    if money and "e" not in text and len(text) - text.find(".") < 3:
        return number.quantize(_CENTS)  # 2524.5 was sent as 2524.50: money shows cents
    return number


def exact_record(item: dict[str, Any]) -> dict[str, Any]:
    """The record with every binary float as ``Decimal`` (nested ones too); raises
    :class:`InexactError` for a number a binary float did not keep exactly."""
    return {
        key: _from_float(value, money=_KIND.get(key) == _MONEY)
        if type(value) is float
        else (_exact_value(value, 2) if isinstance(value, list | dict) else value)
        for key, value in item.items()
    }


def _exact_value(value: Any, level: int) -> Any:
    """``value`` (at nesting ``level``) with its floats as ``Decimal``; a container deeper than
    :data:`MAX_DEPTH` is left as it is (its record is refused) and not recursed into."""
    if type(value) is float:
        return _from_float(value, money=False)
    if level > MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [_exact_value(v, level + 1) for v in value]
    if isinstance(value, dict):
        return {k: _exact_value(v, level + 1) for k, v in value.items()}
    return value


def parse_exact(body: bytes) -> ParseResult:
    """The exact path: the standard library with ``Decimal`` for every non-integer number."""
    if not body.strip():
        raise ParseError("response is not JSON: empty body")
    try:
        items = loads(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"response is not JSON: {_decode_error_text(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"response is not JSON: invalid {exc.encoding} at byte {exc.start}: {exc.reason}"
        ) from exc
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's digit limit
        raise ParseError(f"response is not JSON: {exc}") from exc
    except RecursionError:
        items = _decode_deep(body)
    if not isinstance(items, list):
        raise ParseError(f"response is not a JSON array of accounts (got {_json_type(items)})")
    return parse_records(items)


def _decode_deep(body: bytes) -> Any:
    """A body nested too deeply for the decoder: each container past :data:`MAX_DEPTH` levels
    of a record is cut down to ``[]`` (still too deep: that record is refused, the others are
    read as they are)."""
    try:
        return loads(cut_deeper_than(body, MAX_DEPTH + 1))
    except (ValueError, RecursionError):  # broken as well as deep: say what we know
        raise ParseError("response is not JSON: nested too deeply") from None


def parse_records(items: list[Any]) -> ParseResult:
    """Validate already-decoded account records (decoded with :func:`monitor.encoding.loads`)."""
    accounts: dict[str, Account] = {}
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        check_one(index, item, seen, accounts, problems)
    return ParseResult(accounts=accounts, problems=tuple(problems))


def check_one(
    index: int,
    item: Any,
    seen: set[str],
    accounts: dict[str, Account],
    problems: list[Problem],
    *,
    raw: Any = None,
) -> bool:
    """Validate one record (decoded with exact numbers; ``raw`` as orjson decoded it, when it
    did) into ``accounts``, or into a problem; True when it was accepted."""
    if not isinstance(item, dict):
        problems.append(Problem(f"record is not an object (got {_json_type(item)})", index=index))
        return False
    number = item.get("account_number")
    if not isinstance(number, str) or not number.strip() or not _is_text(number):
        message = _account_number_problem(item)
        problems.append(Problem(message, field="account_number", index=index))
        return False
    if number in seen:
        problems.append(
            Problem(
                "duplicate account_number",
                account_number=number,
                field="account_number",
                index=index,
            )
        )
        return False
    seen.add(number)
    warnings: list[tuple[str, str]] = []
    try:
        record = _check_record(item, warnings)
    except _RecordError as exc:
        problems.append(Problem(exc.message, account_number=number, field=exc.field, index=index))
        return False
    checks = raw_checks(raw) if raw is not None else ()
    accounts[number] = Account(number, MappingProxyType(record), raw=raw, checks=checks)
    for field, message in warnings:
        problems.append(
            Problem(message, account_number=number, field=field, index=index, skipped=False)
        )
    return True


def problem_text(p: Problem) -> str:
    """One human line, e.g. ``record 3 (12345678@vision): cash: expected a number, got string;
    record skipped``."""
    where = "record" if p.index is None else f"record {p.index}"
    if p.account_number is not None:
        where = f"{where} ({p.account_number})"
    outcome = "record skipped" if p.skipped else "value kept"
    return f"{where}: {p.message}; {outcome}"


def _check_record(item: dict[str, Any], warnings: list[tuple[str, str]]) -> dict[str, JSONValue]:
    """The normalised record; raises :class:`_RecordError` on the first unusable field."""
    record: dict[str, JSONValue] = {}
    for name, value in item.items():
        kind = _KIND.get(name)
        if kind is None:
            if not _is_text(name):
                shown = name.encode("utf-8", "backslashreplace").decode()
                raise _RecordError(shown, f"{shown}: the field's name is {_NOT_TEXT}")
            if isinstance(value, str):
                if not _is_text(value):
                    raise _RecordError(name, f"{name}: {_NOT_TEXT}")
            elif isinstance(value, list | dict):
                problem = _unstorable(value)
                if problem is not None:
                    raise _RecordError(name, f"{name}: {problem}")
            record[name] = value
        elif value is None:
            continue  # a known field that is null counts as absent
        elif kind == _MONEY:
            record[name] = _money(name, value)
        elif kind == _INTEGER:
            record[name] = _count(name, value)
        else:
            if not isinstance(value, str):
                raise _RecordError(name, f"{name}: expected a string, got {_json_type(value)}")
            if not _is_text(value):
                raise _RecordError(name, f"{name}: {_NOT_TEXT}")
            allowed = KNOWN_ENUMS.get(name)
            if allowed is not None and value not in allowed:
                warnings.append((name, f"{name}: unknown value {_quote(value)}"))
            record[name] = value
    return record


_NOT_TEXT: Final = "not Unicode text (a lone surrogate)"


def _is_text(text: str) -> bool:
    """Whether ``text`` is Unicode text, which UTF-8 (SQLite, logs, sinks) can write: no lone
    surrogate."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _unstorable(value: JSONValue) -> str | None:
    """Why an unknown field's value cannot be stored: nested deeper than :data:`MAX_DEPTH`
    levels of its record, or text that is no Unicode; ``None`` when it can. Iterative: any
    depth is answered, without recursion."""
    todo: list[tuple[JSONValue, int]] = [(value, 2)]  # the record is level 1
    while todo:
        item, level = todo.pop()
        if isinstance(item, str):
            if not _is_text(item):
                return _NOT_TEXT
            continue
        if isinstance(item, dict):
            if not all(_is_text(key) for key in item):
                return f"a key is {_NOT_TEXT}"
            children: Iterable[JSONValue] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        todo.extend((child, level + 1) for child in children)
    return None


def _money(name: str, value: object) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _RecordError(name, f"{name}: expected a finite number, got {value}")
        money = value
    elif isinstance(value, int) and not isinstance(value, bool):
        money = Decimal(value)
    elif isinstance(value, float):
        raise _RecordError(
            name, f"{name}: got a binary float; decode with monitor.encoding.loads to keep it exact"
        )
    else:
        raise _RecordError(name, f"{name}: expected a number, got {_json_type(value)}")
    if money.copy_abs() >= _MONEY_LIMIT:
        raise _RecordError(name, f"{name}: out of range, got {_quote(str(money))}")
    return money


def _count(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.copy_abs() < _COUNT_LIMIT
        and value == value.to_integral_value()
    ):
        number = int(value)
    else:
        got = _quote(str(value)) if isinstance(value, Decimal) else _json_type(value)
        raise _RecordError(name, f"{name}: expected an integer, got {got}")
    if number < 0:
        raise _RecordError(name, f"{name}: expected a non-negative integer, got {number}")
    return number


def _account_number_problem(item: dict[str, Any]) -> str:
    if "account_number" not in item or item["account_number"] is None:
        return "account_number: missing"
    value = item["account_number"]
    if isinstance(value, str) and value.strip():
        return f"account_number: {_NOT_TEXT}"
    got = "a blank string" if isinstance(value, str) else _json_type(value)
    return f"account_number: expected a non-empty string, got {got}"


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type (``object``, ``array``, ``string``, ...)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def _quote(text: str) -> str:
    """``repr`` of ``text``, cut to an excerpt when long."""
    if len(text) > _EXCERPT:
        return repr(text[:_EXCERPT]) + "..."
    return repr(text)


def _decode_error_text(exc: json.JSONDecodeError) -> str:
    where = f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
    rest = exc.doc[exc.pos : exc.pos + _EXCERPT + 1]
    if not rest:
        return where
    return f"{where}, near {_quote(rest)}"
