"""Tests for monitor.encoding: JSON with exact Decimal money and RFC 3339 datetimes."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from monitor.encoding import cut_deeper_than, dumps, loads
from monitor.models import Severity

PLUS_2 = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-7, "-7"),
        (2**70, "1180591620717411303424"),
        ("", '""'),
        ("plain", '"plain"'),
        ('quote " and \\ back', '"quote \\" and \\\\ back"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ("café ✓", '"caf\\u00e9 \\u2713"'),
        ("€ 𝄞", '"\\u20ac \\ud834\\udd1e"'),
        (Decimal("512.25"), "512.25"),
        (Decimal("1000.00"), "1000.00"),
        (Decimal("-0.01"), "-0.01"),
        (Decimal("-0"), "-0"),
        (Decimal("0.1"), "0.1"),
        (Decimal("1E+3"), "1E+3"),
        (Decimal("0.0000001"), "1E-7"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (0.1, "0.1"),
        (2.5, "2.5"),
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), '"2024-05-01T12:00:00Z"'),
        (datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=PLUS_2), '"2024-05-01T12:00:00.123456Z"'),
        (Severity.CRITICAL, '"critical"'),
        ([], "[]"),
        ({}, "{}"),
        ((1, "a"), '[1,"a"]'),
        ({"b": 1, "a": [Decimal("1.10"), None]}, '{"b":1,"a":[1.10,null]}'),
        ({1: "int key"}, '{"1":"int key"}'),
        (
            {"deep": {"deeper": [{"deepest": [Decimal("0.01")]}]}},
            '{"deep":{"deeper":[{"deepest":[0.01]}]}}',
        ),
    ],
)
def test_dumps(value: Any, text: str) -> None:
    """Compact JSON; Decimal keeps its own digits, datetimes are RFC 3339 UTC with Z, ASCII out."""
    assert dumps(value) == text


@pytest.mark.parametrize(
    "value",
    [
        Decimal("512.25"),
        Decimal("1000.00"),
        Decimal("0.10"),
        Decimal("-25011.73"),
        Decimal("1E-7"),
        Decimal("98765432109876543210.0123456789"),
        "unicode: é ✓ 𝄞 \u0000 \u2028",
        {"cash": Decimal("512.25"), "ok": True, "none": None, "n": 3, "list": [Decimal("0.01")]},
        [[[]], [{}], {"a": {"b": {"c": [Decimal("-0.00")]}}}],
        {"empty": "", "é": "key with accent"},
    ],
)
def test_round_trip_is_exact(value: Any) -> None:
    """loads(dumps(x)) == x with every Decimal's digits (and exponent) kept."""
    back = loads(dumps(value))
    assert back == value
    assert repr(back) == repr(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512.25", Decimal("512.25")),
        ("1e3", Decimal("1E+3")),
        ("-0.0", Decimal("-0.0")),
        ("7", 7),
        ("[1, 1.0]", [1, Decimal("1.0")]),
        ('{"a": {"b": [0.1]}}', {"a": {"b": [Decimal("0.1")]}}),
        ('"\\u00e9"', "é"),
        ('"2024-05-01T12:00:00Z"', "2024-05-01T12:00:00Z"),
    ],
)
def test_loads(text: str, expected: Any) -> None:
    """Every non-integer number is a Decimal, integers stay int, strings are left alone."""
    got = loads(text)
    assert got == expected
    assert repr(got) == repr(expected)


def test_loads_accepts_bytes() -> None:
    """Bytes (an HTTP body) are parsed like text."""
    assert loads(b'{"x": 0.3}') == {"x": Decimal("0.3")}


def test_loads_keeps_an_integer_too_long_for_int_as_a_decimal() -> None:
    """Python's ``int()`` refuses more than 4,300 digits: such an integer is a ``Decimal``."""
    digits = "9" * 5000
    assert loads(f"[{digits}, 12]") == [Decimal(digits), 12]


def test_loads_refuses_a_number_no_decimal_holds() -> None:
    """An exponent past what ``Decimal`` holds is a ``ValueError``, like any unreadable JSON."""
    with pytest.raises(ValueError, match="number out of range: 1e99999999999999999999"):
        loads("[1e99999999999999999999]")


@pytest.mark.parametrize(
    ("text", "depth", "cut"),
    [
        pytest.param(b"[[1],[[2]]]", 3, b"[[1],[[2]]]", id="shallow-enough-unchanged"),
        pytest.param(b"[[1],[[2]]]", 2, b"[[1],[[]]]", id="one-level-cut"),
        pytest.param(b'[{"a":{"b":[3]}},"[[[{"]', 2, b'[{"a":[]},"[[[{"]', id="strings-skipped"),
        pytest.param(b'["\\"]", [[1]]]', 2, b'["\\"]", [[]]]', id="escaped-quote"),
        pytest.param(b"[" * 3000 + b"]" * 3000, 3, b"[[[[]]]]", id="deep"),
        pytest.param(b"[[[[", 1, b"[[]", id="never-closed-stays-broken"),
        pytest.param(b"]][[1]]", 1, b"]][[1]]", id="stray-closers-stay-broken"),
    ],
)
def test_cut_deeper_than(text: bytes, depth: int, cut: bytes) -> None:
    """Each container past ``depth`` levels becomes ``[]`` one level deeper: readable by any
    decoder, and still too deep where it was cut; text that is not JSON stays not JSON."""
    assert cut_deeper_than(text, depth) == cut


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"cash": Infinity}'])
def test_loads_refuses_nan_and_infinity(text: str) -> None:
    """NaN and Infinity are not JSON: loading them is a ValueError."""
    with pytest.raises(ValueError, match="is not valid JSON"):
        loads(text)


@pytest.mark.parametrize(
    "value",
    [
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        float("nan"),
        float("inf"),
        [float("-inf")],
        {"cash": Decimal("NaN")},
    ],
)
def test_dumps_refuses_nan_and_infinity(value: Any) -> None:
    """A non-finite number anywhere is a ValueError rather than invalid JSON."""
    with pytest.raises(ValueError, match=r"(?i)nan|inf|json"):
        dumps(value)


def test_dumps_refuses_naive_datetimes() -> None:
    """A datetime without a timezone cannot be written as RFC 3339."""
    with pytest.raises(ValueError, match="naive datetime"):
        dumps({"at": datetime(2024, 5, 1, 12, 0)})  # noqa: DTZ001


@pytest.mark.parametrize(
    ("value", "name"),
    [(object(), "object"), ({1, 2}, "set"), (date(2024, 5, 1), "date"), (b"raw", "bytes")],
)
def test_dumps_refuses_unknown_types(value: Any, name: str) -> None:
    """Without default=, an unknown type is a TypeError naming the type."""
    with pytest.raises(TypeError, match=f"^cannot encode {name} as JSON$"):
        dumps({"nested": [value]})


class Money:
    def __init__(self, amount: str) -> None:
        self.amount = Decimal(amount)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Money("1.50"), '{"amount":1.50}'),
        ([Money("2"), Money("3.0")], '[{"amount":2},{"amount":3.0}]'),
        ({"a": {"b": Money("0.01")}}, '{"a":{"b":{"amount":0.01}}}'),
        ({"plain": Decimal("1.0")}, '{"plain":1.0}'),
    ],
)
def test_dumps_default_fallback(value: Any, text: str) -> None:
    """default= turns unknown objects into encodable ones, at any depth, only when needed."""
    assert dumps(value, default=lambda o: {"amount": o.amount}) == text


def test_default_result_must_be_encodable() -> None:
    """What default= returns is not passed to default= again: an unknown type in it fails."""
    with pytest.raises(TypeError, match="cannot encode Money as JSON"):
        dumps(Money("1"), default=lambda o: [o])


@pytest.mark.parametrize(
    "value",
    [
        {"s": 'é\n"', "n": [1, Decimal("2.50"), None, True], "d": {}},
        [Decimal("-1E+2"), "\u2028"],
    ],
)
def test_output_is_standard_json(value: Any) -> None:
    """The standard library parses what dumps writes, to the same numbers."""
    text = dumps(value)
    assert re.fullmatch(r"[\x20-\x7e]*", text)
    assert json.loads(text, parse_float=Decimal) == value
