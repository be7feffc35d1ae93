"""The fast path of parse_body: orjson, reuse of unchanged records, exact fallbacks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from monitor.parse import parse_body, parse_exact


def body(*records: str) -> bytes:
    return ("[" + ",".join(records) + "]").encode()


A = '{"account_number": "A", "cash": 2524.54, "daytrades_count": 1, "restriction": "none"}'
B = '{"account_number": "B", "cash": 100.5, "extra": {"nested": [0.25, 1]}}'


def test_first_parse_reports_every_account_as_changed() -> None:
    """Without previous accounts, every accepted account is new."""
    result = parse_body(body(A, B))

    assert result.changed == frozenset({"A", "B"})
    assert result.accounts["A"].record["cash"] == Decimal("2524.54")


def test_an_unchanged_record_reuses_the_previous_account() -> None:
    """A record equal to the previous poll's is neither validated again nor reported changed."""
    first = parse_body(body(A, B))
    changed_b = B.replace("100.5", "99.75")

    second = parse_body(body(A, changed_b), first.accounts)

    assert second.changed == frozenset({"B"})
    assert second.accounts["A"] is first.accounts["A"]
    assert second.accounts["B"].record["cash"] == Decimal("99.75")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2524.54", "2524.54"),
        ("100.5", "100.50"),
        ("7", "7"),
        ("0.0", "0.00"),
        ("-12.125", "-12.125"),
        ("1e3", "1000.00"),
    ],
)
def test_money_keeps_its_digits_and_shows_cents(text: str, expected: str) -> None:
    """Money decoded as a binary float comes back as the same decimal, with at least cents."""
    result = parse_body(body(f'{{"account_number": "A", "cash": {text}}}'))

    assert str(result.accounts["A"].record["cash"]) == expected


def test_nested_floats_of_unknown_fields_become_decimals() -> None:
    """Unknown fields are kept as data, their numbers exact too."""
    result = parse_body(body(B))

    assert result.accounts["B"].record["extra"] == {"nested": [Decimal("0.25"), 1]}


@pytest.mark.parametrize(
    "number", ["12345678901234567.89", "0.12345678901234567", "123456789012345678901234567890"]
)
def test_numbers_a_float_cannot_hold_take_the_exact_path(number: str) -> None:
    """More than 15 significant digits (or an int beyond 64 bits) is parsed exactly instead."""
    data = body(f'{{"account_number": "A", "cash": 1.5, "extra": {number}}}')

    result = parse_body(data)

    assert result.changed is None  # the exact path does not compare with the previous poll
    assert result.accounts == parse_exact(data).accounts
    assert str(result.accounts["A"].record["extra"]) == number


def test_bad_records_are_problems_on_the_fast_path_too() -> None:
    """A record with a non-number in a money field is skipped with a problem naming it."""
    result = parse_body(body(A, '{"account_number": "C", "cash": "abc"}'))

    assert set(result.accounts) == {"A"}
    assert [(p.account_number, p.field) for p in result.problems] == [("C", "cash")]
    assert result.changed == frozenset({"A"})
