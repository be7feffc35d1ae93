"""Tests for monitor.diff: (previous, current) accounts -> changes."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from monitor.diff import changed_fields, diff, raw_checks, same_raw
from monitor.models import Account, Change
from monitor.parse import parse_body

A = "11111111@cor"
B = "22222222@vision"
C = "33333333@demo"


def account(number: str, **fields: Any) -> Account:
    return Account(number, MappingProxyType({"account_number": number, **fields}))


def accounts(*items: Account) -> dict[str, Account]:
    return {item.account_number: item for item in items}


BASE = account(A, margin_type="cash", restriction="none", cash=Decimal("100.00"), daytrades_count=0)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({}, {}, {}, id="nothing"),
        pytest.param({"cash": Decimal(1)}, {"cash": Decimal(1)}, {}, id="same-money"),
        pytest.param({"cash": Decimal("1.0")}, {"cash": Decimal("1.00")}, {}, id="1.0-vs-1.00"),
        pytest.param({"cash": Decimal(0)}, {"cash": Decimal("-0.00")}, {}, id="zero-vs-minus-zero"),
        pytest.param({"x": 1}, {"x": Decimal("1.0")}, {}, id="int-vs-decimal"),
        pytest.param(
            {"cash": Decimal("512.25")},
            {"cash": Decimal("512.26")},
            {"cash": (Decimal("512.25"), Decimal("512.26"))},
            id="money-cent",
        ),
        pytest.param(
            {"cash": Decimal(1)},
            {"cash": Decimal(-1)},
            {"cash": (Decimal(1), Decimal(-1))},
            id="money-sign",
        ),
        pytest.param({"cash": None}, {}, {}, id="none-vs-missing"),
        pytest.param({}, {"restriction_reason": None}, {}, id="missing-vs-none"),
        pytest.param(
            {},
            {"cash_to_withdraw": Decimal(5)},
            {"cash_to_withdraw": (None, Decimal(5))},
            id="field-appears",
        ),
        pytest.param(
            {"cash_to_withdraw": Decimal(5)},
            {},
            {"cash_to_withdraw": (Decimal(5), None)},
            id="field-disappears",
        ),
        pytest.param(
            {"restriction": "none"},
            {"restriction": "restricted"},
            {"restriction": ("none", "restricted")},
            id="enum",
        ),
        pytest.param({"daytrades_count": 3}, {"daytrades_count": 3}, {}, id="same-count"),
        pytest.param(
            {"daytrades_count": 3},
            {"daytrades_count": 4},
            {"daytrades_count": (3, 4)},
            id="count",
        ),
        pytest.param({"x": "1"}, {"x": 1}, {"x": ("1", 1)}, id="string-vs-number"),
        pytest.param({"x": True}, {"x": 1}, {"x": (True, 1)}, id="true-vs-1"),
        pytest.param({"x": 0}, {"x": False}, {"x": (0, False)}, id="0-vs-false"),
        pytest.param({"x": True}, {"x": False}, {"x": (True, False)}, id="bool-flip"),
        pytest.param({"x": True}, {"x": True}, {}, id="same-bool"),
        pytest.param({"x": None}, {"x": False}, {"x": (None, False)}, id="null-vs-false"),
        pytest.param({"x": [1, 2]}, {"x": [Decimal("1.0"), 2]}, {}, id="list-numeric"),
        pytest.param({"x": [1]}, {"x": [True]}, {"x": ([1], [True])}, id="list-bool"),
        pytest.param({"x": [1]}, {"x": [1, 1]}, {"x": ([1], [1, 1])}, id="list-length"),
        pytest.param({"x": {"a": 1}}, {"x": {"a": Decimal(1)}}, {}, id="dict-numeric"),
        pytest.param({"x": {"a": 1}}, {"x": {"b": 1}}, {"x": ({"a": 1}, {"b": 1})}, id="dict-keys"),
        pytest.param(
            {"x": {"a": 1}}, {"x": {"a": False}}, {"x": ({"a": 1}, {"a": False})}, id="dict-bool"
        ),
        pytest.param({"x": [1]}, {"x": {"0": 1}}, {"x": ([1], {"0": 1})}, id="list-vs-dict"),
        pytest.param({"x": [1]}, {"x": 1}, {"x": ([1], 1)}, id="list-vs-scalar"),
        pytest.param({"x": "a"}, {"x": ["a"]}, {"x": ("a", ["a"])}, id="scalar-vs-list"),
    ],
)
def test_changed_fields(
    before: dict[str, Any], after: dict[str, Any], expected: dict[str, tuple[Any, Any]]
) -> None:
    """Values compare as JSON data: numbers numerically, missing as null, booleans as booleans."""
    assert changed_fields(account(A, **before), account(A, **after)) == expected


def test_changed_fields_without_previous_lists_every_value() -> None:
    """With no previous account every non-null field counts as changed from None."""
    current = account(A, cash=Decimal(1), restriction_reason=None, zeta=2)
    assert changed_fields(None, current) == {
        "account_number": (None, A),
        "cash": (None, Decimal(1)),
        "zeta": (None, 2),
    }


def test_changed_fields_orders_known_then_unknown_sorted() -> None:
    """Known fields come in KNOWN_FIELDS order, then unknown fields sorted by name."""
    before = account(A, zeta=1, cash=Decimal(1), alpha=1, margin_type="cash", daytrades_count=0)
    after = account(
        A, daytrades_count=1, alpha=2, margin_type="marginx1", zeta=2, cash=Decimal(2), mid=0
    )
    assert list(changed_fields(before, after)) == [
        "margin_type",
        "cash",
        "daytrades_count",
        "alpha",
        "mid",
        "zeta",
    ]


def test_first_poll_reports_nothing() -> None:
    """With no previous snapshot there is nothing to compare: no changes."""
    assert diff(None, accounts(BASE, account(B))) == []


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        pytest.param({}, {}, [], id="both-empty"),
        pytest.param(accounts(BASE), accounts(BASE), [], id="same-object"),
        pytest.param(
            accounts(BASE),
            accounts(
                account(
                    A, margin_type="cash", restriction="none", cash=Decimal(100), daytrades_count=0
                )
            ),
            [],
            id="equal-values",
        ),
        pytest.param(
            accounts(BASE),
            accounts(
                account(
                    A,
                    margin_type="cash",
                    restriction="none",
                    cash=Decimal("99.99"),
                    daytrades_count=0,
                )
            ),
            [Change("changed", A, "cash", Decimal("100.00"), Decimal("99.99"))],
            id="money-change",
        ),
        pytest.param(
            accounts(BASE),
            accounts(BASE, account(B, cash=Decimal(5))),
            [Change("added", B, current={"account_number": B, "cash": Decimal(5)})],
            id="added",
        ),
        pytest.param(
            accounts(BASE, account(B, cash=Decimal(5))),
            accounts(BASE),
            [Change("removed", B, previous={"account_number": B, "cash": Decimal(5)})],
            id="removed",
        ),
        pytest.param(
            accounts(account(A)),
            {},
            [Change("removed", A, previous={"account_number": A})],
            id="all-removed",
        ),
    ],
)
def test_diff(
    previous: dict[str, Account], current: dict[str, Account], expected: list[Change]
) -> None:
    """Accounts in both give per-field changes; the others are added or removed."""
    assert diff(previous, current) == expected


def test_diff_order_is_by_account_then_field() -> None:
    """Changes are sorted by account number, then by field order, whatever the input order."""
    previous = accounts(
        account(C, cash=Decimal(1), restriction="none", extra="a"),
        account(A, cash=Decimal(1)),
    )
    current = accounts(
        account(B, cash=Decimal(2)),
        account(C, extra="b", cash=Decimal(2), restriction="restricted"),
    )
    assert diff(previous, current) == [
        Change("removed", A, previous={"account_number": A, "cash": Decimal(1)}),
        Change("added", B, current={"account_number": B, "cash": Decimal(2)}),
        Change("changed", C, "restriction", "none", "restricted"),
        Change("changed", C, "cash", Decimal(1), Decimal(2)),
        Change("changed", C, "extra", "a", "b"),
    ]


def test_diff_of_parsed_bodies() -> None:
    """Two parsed responses differ only where the JSON values differ numerically."""
    first = parse_body(
        b'[{"account_number": "1@cor", "cash": 1.0, "restriction_reason": null, "n": 7},'
        b' {"account_number": "2@cor", "cash": 10}]'
    )
    second = parse_body(
        b'[{"account_number": "2@cor", "cash": 10.50},'
        b' {"account_number": "1@cor", "cash": 1.00, "n": 7.0}]'
    )
    assert diff(first.accounts, second.accounts) == [
        Change("changed", "2@cor", "cash", Decimal(10), Decimal("10.50")),
    ]


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        pytest.param({"x": 1}, {"x": 1}, True, id="same"),
        pytest.param({"x": 1}, {"x": 1.0}, True, id="1-vs-1.0"),
        pytest.param({"x": 1}, {"x": True}, False, id="1-vs-true"),
        pytest.param({"x": True}, {"x": 1}, False, id="true-vs-1"),
        pytest.param({"x": 0.0}, {"x": False}, False, id="0.0-vs-false"),
        pytest.param({"x": [1, {"y": 0}]}, {"x": [True, {"y": 0}]}, False, id="nested-true"),
        pytest.param({"x": {"y": 0}}, {"x": {"y": False}}, False, id="nested-false"),
        pytest.param({"x": [1, 2]}, {"x": [1, 2]}, True, id="same-list"),
        pytest.param({"x": 2}, {"x": 3}, False, id="different"),
    ],
)
def test_same_raw_is_json_equality(
    before: dict[str, Any], after: dict[str, Any], same: bool
) -> None:
    """The parser's fast path asks the diff whether a decoded record is last poll's: ``==``
    alone would call ``true`` and ``1`` equal."""
    previous = Account("A", MappingProxyType(before), raw=before, checks=raw_checks(before))
    assert same_raw(previous, after) is same
    assert same_raw(previous, after) is (changed_fields(previous, Account("A", after)) == {})


def test_raw_checks_names_only_the_keys_equality_can_confuse() -> None:
    raw = {"account_number": "A", "cash": 2.5, "n": 0, "one": 1.0, "b": False, "l": [], "s": "1"}
    assert raw_checks(raw) == ("n", "one", "b", "l")
    assert raw_checks({"cash": 2.5, "s": "0"}) == ()
    assert raw_checks({"n": 0}) is raw_checks({"n": 1})  # shared, not one per account


def test_a_record_without_raw_is_never_the_same() -> None:
    assert same_raw(Account("A", MappingProxyType({"x": 1})), {"x": 1}) is False
