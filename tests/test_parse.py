"""Tests for monitor.parse: body -> accounts plus per-record problems."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from monitor.encoding import MAX_DEPTH
from monitor.errors import ParseError
from monitor.models import Account, Problem
from monitor.parse import parse_body, parse_records, problem_text

NUMBER = "12345678@vision"

FULL_RECORD = {
    "account_number": NUMBER,
    "trade_platform": "ETNA",
    "margin_type": "marginx2",
    "restriction": "none",
    "restriction_reason": None,
    "daytrades_count": 0,
    "account_value_total": 25011.73,
    "cash": 512.25,
    "day_trading_buying_power": 0,
    "margin_buying_power": 20000.1,
    "non_margin_buying_power": 10000.05,
    "position_market_value": 24499.48,
    "unsettled_cash": 0,
    "cash_to_withdraw": 512.25,
}


def body_of(*records: Any) -> bytes:
    """The JSON array of ``records``; floats are written with Python's shortest repr."""
    return json.dumps(list(records)).encode()


def record(**fields: Any) -> dict[str, Any]:
    return {"account_number": NUMBER, **fields}


# --- the body as a whole ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "response is not JSON: empty body", id="empty"),
        pytest.param(b" \r\n\t", "response is not JSON: empty body", id="whitespace"),
        pytest.param(
            b"not json",
            "response is not JSON: Expecting value at line 1 column 1 (char 0), near 'not json'",
            id="text",
        ),
        pytest.param(
            b"[{",
            "response is not JSON: Expecting property name enclosed in double quotes"
            " at line 1 column 3 (char 2)",
            id="truncated",
        ),
        pytest.param(
            b"[]\n[]",
            "response is not JSON: Extra data at line 2 column 1 (char 3), near '[]'",
            id="extra-data",
        ),
        pytest.param(
            b'[{"cash": 1,}]',
            "response is not JSON: Expecting property name enclosed in double quotes"
            " at line 1 column 13 (char 12), near '}]'",
            id="trailing-comma",
        ),
        pytest.param(
            b"\xff[]",
            "response is not JSON: invalid utf-8 at byte 0: invalid start byte",
            id="invalid-utf8",
        ),
        pytest.param(b'[{"cash": NaN}]', "response is not JSON: NaN is not valid JSON", id="nan"),
        pytest.param(
            b'[{"cash": Infinity}]',
            "response is not JSON: Infinity is not valid JSON",
            id="infinity",
        ),
        pytest.param(
            b'[{"cash": -Infinity}]',
            "response is not JSON: -Infinity is not valid JSON",
            id="minus-infinity",
        ),
        pytest.param(b"[" * 100_000, "response is not JSON: nested too deeply", id="deep"),
        pytest.param(
            b'{"code": "api_error", "message": "boom"}',
            "response is not a JSON array of accounts (got object)",
            id="object",
        ),
        pytest.param(b'"[]"', "response is not a JSON array of accounts (got string)", id="string"),
        pytest.param(b"1", "response is not a JSON array of accounts (got number)", id="int"),
        pytest.param(b"1.5", "response is not a JSON array of accounts (got number)", id="decimal"),
        pytest.param(b"true", "response is not a JSON array of accounts (got boolean)", id="bool"),
        pytest.param(b"null", "response is not a JSON array of accounts (got null)", id="null"),
    ],
)
def test_body_that_is_not_an_array_raises(body: bytes, message: str) -> None:
    """A body that is not JSON, or JSON that is not an array, raises ParseError naming the cause."""
    with pytest.raises(ParseError) as info:
        parse_body(body)
    assert str(info.value) == message


def test_html_error_page_is_quoted_as_a_short_excerpt() -> None:
    """A non-JSON body is quoted only as a short excerpt, never whole."""
    page = b"<html><head><title>502 Bad Gateway</title></head><body>" + b"x" * 10_000 + b"</html>"
    with pytest.raises(ParseError) as info:
        parse_body(page)
    message = str(info.value)
    assert message.startswith(
        "response is not JSON: Expecting value at line 1 column 1 (char 0), near '<html><head>"
    )
    assert message.endswith("...")
    assert len(message) < 160


def test_decode_error_keeps_its_cause() -> None:
    """The JSON error is chained as the cause of the ParseError."""
    with pytest.raises(ParseError) as info:
        parse_body(b"{")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


@pytest.mark.parametrize(
    "body",
    [b"[]", b" [ ] ", b"\xef\xbb\xbf[]", "[]".encode("utf-16")],
    ids=["compact", "spaced", "utf8-bom", "utf16"],
)
def test_empty_array_is_zero_accounts(body: bytes) -> None:
    """An empty array is a valid answer: no accounts, no problems."""
    result = parse_body(body)
    assert dict(result.accounts) == {}
    assert result.problems == ()


# --- good records ----------------------------------------------------------------------------


def test_documented_example_parses_with_exact_money() -> None:
    """A full record keeps every field; money is the exact Decimal of the JSON text."""
    result = parse_body(body_of(FULL_RECORD))
    assert result.problems == ()
    account = result.accounts[NUMBER]
    assert account.account_number == NUMBER
    assert dict(account.record) == {
        "account_number": NUMBER,
        "trade_platform": "ETNA",
        "margin_type": "marginx2",
        "restriction": "none",
        "daytrades_count": 0,
        "account_value_total": Decimal("25011.73"),
        "cash": Decimal("512.25"),
        "day_trading_buying_power": Decimal(0),
        "margin_buying_power": Decimal("20000.1"),
        "non_margin_buying_power": Decimal("10000.05"),
        "position_market_value": Decimal("24499.48"),
        "unsettled_cash": Decimal(0),
        "cash_to_withdraw": Decimal("512.25"),
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param('"cash": 512.25', {"cash": Decimal("512.25")}, id="decimal-exact"),
        pytest.param('"cash": 0.1', {"cash": Decimal("0.1")}, id="no-float-noise"),
        pytest.param('"cash": 1.10', {"cash": Decimal("1.10")}, id="trailing-zero-kept"),
        pytest.param('"cash": -1500.5', {"cash": Decimal("-1500.5")}, id="negative-cash-debit"),
        pytest.param('"cash": 100', {"cash": Decimal(100)}, id="int-to-decimal"),
        pytest.param('"cash": 1e3', {"cash": Decimal("1E+3")}, id="exponent"),
        pytest.param(
            '"cash": 12345678901234567890.123456789',
            {"cash": Decimal("12345678901234567890.123456789")},
            id="beyond-float-precision",
        ),
        pytest.param('"cash": null', {}, id="null-money-absent"),
        pytest.param('"cash_to_withdraw": null', {}, id="null-optional-money-absent"),
        pytest.param('"daytrades_count": 3', {"daytrades_count": 3}, id="count"),
        pytest.param('"daytrades_count": 3.0', {"daytrades_count": 3}, id="integral-decimal-count"),
        pytest.param('"daytrades_count": 0', {"daytrades_count": 0}, id="zero-count"),
        pytest.param('"daytrades_count": null', {}, id="null-count-absent"),
        pytest.param('"trade_platform": "transaq"', {"trade_platform": "transaq"}, id="text"),
        pytest.param('"restriction_reason": null', {}, id="null-text-absent"),
        pytest.param(
            '"restriction_reason": "PDT"', {"restriction_reason": "PDT"}, id="restriction-reason"
        ),
        pytest.param('"margin_type": "cash"', {"margin_type": "cash"}, id="known-enum"),
        pytest.param('"restriction": "restricted"', {"restriction": "restricted"}, id="restricted"),
        pytest.param('"new_field": "x"', {"new_field": "x"}, id="unknown-string"),
        pytest.param('"new_field": null', {"new_field": None}, id="unknown-null-kept"),
        pytest.param('"new_field": true', {"new_field": True}, id="unknown-bool"),
        pytest.param('"new_field": 7', {"new_field": 7}, id="unknown-int-unchanged"),
        pytest.param('"new_field": 1.5', {"new_field": Decimal("1.5")}, id="unknown-decimal"),
        pytest.param(
            '"new_field": {"a": [1, "b"]}', {"new_field": {"a": [1, "b"]}}, id="unknown-nested"
        ),
    ],
)
def test_field_values_are_normalised(fields: str, expected: dict[str, Any]) -> None:
    """Each field type is kept, converted or dropped (known null) as documented."""
    body = f'[{{"account_number": "{NUMBER}", {fields}}}]'.encode()
    result = parse_body(body)
    assert result.problems == ()
    assert dict(result.accounts[NUMBER].record) == {"account_number": NUMBER, **expected}


def test_money_values_have_decimal_type() -> None:
    """Money is a Decimal both for JSON decimals and JSON integers, never float or int."""
    result = parse_body(b'[{"account_number": "1@cor", "cash": 5, "unsettled_cash": 5.5}]')
    record = result.accounts["1@cor"].record
    assert type(record["cash"]) is Decimal
    assert type(record["unsettled_cash"]) is Decimal


def test_record_keeps_response_field_order() -> None:
    """The record lists the fields in the order the response had them."""
    body = b'[{"zeta": 1, "cash": 2, "account_number": "1@cor", "alpha": 3}]'
    record = parse_body(body).accounts["1@cor"].record
    assert list(record) == ["zeta", "cash", "account_number", "alpha"]


def test_record_is_read_only() -> None:
    """An account's record cannot be modified after parsing."""
    account = parse_body(body_of(record(cash=1))).accounts[NUMBER]
    with pytest.raises(TypeError):
        account.record["cash"] = Decimal(2)  # type: ignore[index]


def test_input_items_are_not_modified() -> None:
    """parse_records leaves the decoded items as they were."""
    items: list[Any] = [{"account_number": "1@cor", "cash": 5, "restriction_reason": None}]
    parse_records(items)
    assert items == [{"account_number": "1@cor", "cash": 5, "restriction_reason": None}]


# --- problems --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        pytest.param(
            "12345678@vision",
            Problem("record is not an object (got string)", index=0),
            id="string-record",
        ),
        pytest.param([], Problem("record is not an object (got array)", index=0), id="array"),
        pytest.param(None, Problem("record is not an object (got null)", index=0), id="null"),
        pytest.param(7, Problem("record is not an object (got number)", index=0), id="number"),
        pytest.param(
            ("not", "json"), Problem("record is not an object (got tuple)", index=0), id="tuple"
        ),
        pytest.param(
            {"cash": 1},
            Problem("account_number: missing", field="account_number", index=0),
            id="no-account-number",
        ),
        pytest.param(
            {"account_number": None},
            Problem("account_number: missing", field="account_number", index=0),
            id="null-account-number",
        ),
        pytest.param(
            {"account_number": 12345678},
            Problem(
                "account_number: expected a non-empty string, got number",
                field="account_number",
                index=0,
            ),
            id="numeric-account-number",
        ),
        pytest.param(
            {"account_number": ""},
            Problem(
                "account_number: expected a non-empty string, got a blank string",
                field="account_number",
                index=0,
            ),
            id="empty-account-number",
        ),
        pytest.param(
            {"account_number": "  "},
            Problem(
                "account_number: expected a non-empty string, got a blank string",
                field="account_number",
                index=0,
            ),
            id="blank-account-number",
        ),
        pytest.param(
            record(cash="512.25"),
            Problem("cash: expected a number, got string", NUMBER, "cash", 0),
            id="money-as-string",
        ),
        pytest.param(
            record(cash=True),
            Problem("cash: expected a number, got boolean", NUMBER, "cash", 0),
            id="money-as-bool",
        ),
        pytest.param(
            record(margin_buying_power={"amount": 1}),
            Problem(
                "margin_buying_power: expected a number, got object",
                NUMBER,
                "margin_buying_power",
                0,
            ),
            id="money-as-object",
        ),
        pytest.param(
            record(unsettled_cash=[1]),
            Problem("unsettled_cash: expected a number, got array", NUMBER, "unsettled_cash", 0),
            id="money-as-array",
        ),
        pytest.param(
            record(cash=1.5),
            Problem(
                "cash: got a binary float; decode with monitor.encoding.loads to keep it exact",
                NUMBER,
                "cash",
                0,
            ),
            id="money-as-float",
        ),
        pytest.param(
            record(cash=Decimal("NaN")),
            Problem("cash: expected a finite number, got NaN", NUMBER, "cash", 0),
            id="money-nan-decimal",
        ),
        pytest.param(
            record(cash=Decimal("1E+999999999")),
            Problem("cash: out of range, got '1E+999999999'", NUMBER, "cash", 0),
            id="money-huge-exponent",
        ),
        pytest.param(
            record(cash=-(10**40)),
            Problem("cash: out of range, got '-1" + "0" * 38 + "'...", NUMBER, "cash", 0),
            id="money-huge-int",
        ),
        pytest.param(
            record(daytrades_count="3"),
            Problem(
                "daytrades_count: expected an integer, got string", NUMBER, "daytrades_count", 0
            ),
            id="count-as-string",
        ),
        pytest.param(
            record(daytrades_count=False),
            Problem(
                "daytrades_count: expected an integer, got boolean", NUMBER, "daytrades_count", 0
            ),
            id="count-as-bool",
        ),
        pytest.param(
            record(daytrades_count=Decimal("3.5")),
            Problem(
                "daytrades_count: expected an integer, got '3.5'", NUMBER, "daytrades_count", 0
            ),
            id="count-fractional",
        ),
        pytest.param(
            record(daytrades_count=Decimal("1E+999999999")),
            Problem(
                "daytrades_count: expected an integer, got '1E+999999999'",
                NUMBER,
                "daytrades_count",
                0,
            ),
            id="count-huge-exponent",
        ),
        pytest.param(
            record(daytrades_count=-1),
            Problem(
                "daytrades_count: expected a non-negative integer, got -1",
                NUMBER,
                "daytrades_count",
                0,
            ),
            id="count-negative",
        ),
        pytest.param(
            record(daytrades_count=Decimal("-2.0")),
            Problem(
                "daytrades_count: expected a non-negative integer, got -2",
                NUMBER,
                "daytrades_count",
                0,
            ),
            id="count-negative-decimal",
        ),
        pytest.param(
            record(trade_platform=1),
            Problem("trade_platform: expected a string, got number", NUMBER, "trade_platform", 0),
            id="text-as-number",
        ),
        pytest.param(
            record(margin_type=["cash"]),
            Problem("margin_type: expected a string, got array", NUMBER, "margin_type", 0),
            id="enum-as-array",
        ),
        pytest.param(
            record(restriction=False),
            Problem("restriction: expected a string, got boolean", NUMBER, "restriction", 0),
            id="enum-as-bool",
        ),
        pytest.param(
            record(restriction_reason={"code": 1}),
            Problem(
                "restriction_reason: expected a string, got object",
                NUMBER,
                "restriction_reason",
                0,
            ),
            id="reason-as-object",
        ),
    ],
)
def test_bad_record_is_skipped_with_a_problem(item: Any, problem: Problem) -> None:
    """A record with an unusable value is left out and reported with its index and field."""
    result = parse_records([item])
    assert dict(result.accounts) == {}
    assert result.problems == (problem,)


def nested(levels: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``levels`` arrays (built without recursion)."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


#: A record counts as one level: an unknown field may nest this many more.
ROOM = MAX_DEPTH - 1


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        pytest.param(
            record(extra=nested(ROOM + 1)),
            Problem("extra: nested deeper than 64 levels", NUMBER, "extra", 0),
            id="one-level-too-deep",
        ),
        pytest.param(
            record(extra={"a": [{"b": nested(ROOM)}]}),
            Problem("extra: nested deeper than 64 levels", NUMBER, "extra", 0),
            id="too-deep-inside-objects",
        ),
        pytest.param(
            record(extra=nested(5000)),
            Problem("extra: nested deeper than 64 levels", NUMBER, "extra", 0),
            id="far-too-deep",
        ),
        pytest.param(
            {"account_number": "\ud800"},
            Problem(
                "account_number: not Unicode text (a lone surrogate)",
                field="account_number",
                index=0,
            ),
            id="account-number-lone-surrogate",
        ),
        pytest.param(
            record(trade_platform="x\udfff"),
            Problem(
                "trade_platform: not Unicode text (a lone surrogate)", NUMBER, "trade_platform", 0
            ),
            id="text-lone-surrogate",
        ),
        pytest.param(
            record(extra="\ud800"),
            Problem("extra: not Unicode text (a lone surrogate)", NUMBER, "extra", 0),
            id="unknown-lone-surrogate",
        ),
        pytest.param(
            record(extra=[{"ok": ["\udc00"]}]),
            Problem("extra: not Unicode text (a lone surrogate)", NUMBER, "extra", 0),
            id="nested-lone-surrogate",
        ),
        pytest.param(
            record(extra={"\ud800": 1}),
            Problem("extra: a key is not Unicode text (a lone surrogate)", NUMBER, "extra", 0),
            id="nested-key-lone-surrogate",
        ),
        pytest.param(
            {**record(), "\ud800x": 1},
            Problem(
                "\\ud800x: the field's name is not Unicode text (a lone surrogate)",
                NUMBER,
                "\\ud800x",
                0,
            ),
            id="field-name-lone-surrogate",
        ),
    ],
)
def test_a_record_the_store_could_not_write_is_skipped(item: Any, problem: Problem) -> None:
    """Nesting deeper than ``MAX_DEPTH`` levels (the record being one), however deep, and text
    that is no Unicode (a lone surrogate, which JSON's escapes can write) cannot be stored or
    sent: the record is skipped with a problem naming the field."""
    result = parse_records([item])
    assert dict(result.accounts) == {}
    assert result.problems == (problem,)


def test_a_record_as_deep_as_the_store_writes_is_kept() -> None:
    """An unknown field may nest up to ``MAX_DEPTH`` levels with its record; a surrogate pair
    is ordinary text."""
    item = record(extra={"a": nested(ROOM - 1)}, emoji="\ud83d\ude00")
    result = parse_body(json.dumps([item]).encode())
    assert result.problems == ()
    assert result.accounts[NUMBER].record["extra"] == {"a": nested(ROOM - 1)}
    assert result.accounts[NUMBER].record["emoji"] == "\N{GRINNING FACE}"


@pytest.mark.parametrize("depth", [300, 1000, 5000], ids=["past-orjson-writes", "past-json", "far"])
def test_only_the_record_too_deep_for_the_decoders_is_skipped(depth: int) -> None:
    """A record nested deeper than the JSON decoders read is skipped on its own: the others
    are read as usual."""
    deep = "[" * depth + "]" * depth
    body = f'[{{"account_number":"A","extra":{deep}}},{{"account_number":"B","cash":1.5}}]'
    result = parse_body(body.encode())
    assert list(result.accounts) == ["B"]
    assert result.accounts["B"].record["cash"] == Decimal("1.5")
    assert [(p.account_number, p.field, p.message) for p in result.problems] == [
        ("A", "extra", "extra: nested deeper than 64 levels")
    ]


@pytest.mark.parametrize(
    ("number", "kept"),
    [
        pytest.param("1" * 5000, {"extra": Decimal("1" * 5000)}, id="int-past-int-digits"),
        pytest.param("1e400", {"extra": Decimal("1E+400")}, id="past-a-float"),
    ],
)
def test_numbers_past_a_float_or_an_int_are_kept_exactly(number: str, kept: dict[str, Any]) -> None:
    """An unknown field's number that no float holds, or too long for ``int()``, is kept as
    the decimal it says."""
    result = parse_body(f'[{{"account_number":"A","extra":{number}}}]'.encode())
    assert result.problems == ()
    assert dict(result.accounts["A"].record) == {"account_number": "A", **kept}


def test_a_number_no_decimal_holds_is_a_parse_error() -> None:
    """An exponent past what ``Decimal`` holds is not JSON we can read: a ParseError."""
    with pytest.raises(ParseError, match="number out of range: 1e99999999999999999999"):
        parse_body(b'[{"account_number":"A","extra":1e99999999999999999999}]')


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param(
            {"margin_type": "portfolio"},
            Problem("margin_type: unknown value 'portfolio'", NUMBER, "margin_type", 0, False),
            id="margin-type",
        ),
        pytest.param(
            {"restriction": "frozen"},
            Problem("restriction: unknown value 'frozen'", NUMBER, "restriction", 0, False),
            id="restriction",
        ),
        pytest.param(
            {"restriction": "NONE"},
            Problem("restriction: unknown value 'NONE'", NUMBER, "restriction", 0, False),
            id="case-sensitive",
        ),
        pytest.param(
            {"margin_type": ""},
            Problem("margin_type: unknown value ''", NUMBER, "margin_type", 0, False),
            id="empty",
        ),
        pytest.param(
            {"margin_type": "m" * 100},
            Problem(
                "margin_type: unknown value '" + "m" * 40 + "'...", NUMBER, "margin_type", 0, False
            ),
            id="long-value-excerpt",
        ),
    ],
)
def test_unknown_enum_value_is_kept_with_a_warning(
    fields: dict[str, str], problem: Problem
) -> None:
    """An enumeration value we do not know stays in the record and yields a not-skipped problem."""
    result = parse_records([record(**fields)])
    assert dict(result.accounts[NUMBER].record) == record(**fields)
    assert result.problems == (problem,)


def test_skipped_record_reports_no_enum_warning() -> None:
    """A record that is skipped yields only the problem that skipped it."""
    result = parse_records([record(margin_type="portfolio", cash="1")])
    assert result.problems == (Problem("cash: expected a number, got string", NUMBER, "cash", 0),)


def test_bad_records_do_not_affect_good_ones() -> None:
    """Good records around bad ones are parsed normally; problems carry their array index."""
    body = body_of(
        {"account_number": "1@cor", "cash": 1.5},
        "garbage",
        {"account_number": "2@cor", "cash": "oops"},
        {"cash": 3},
        {"account_number": "3@cor", "margin_type": "portfolio", "cash": 3},
        {"account_number": "1@cor", "cash": 99},
        {"account_number": "4@demo", "daytrades_count": 2},
    )
    result = parse_body(body)
    assert {number: dict(a.record) for number, a in result.accounts.items()} == {
        "1@cor": {"account_number": "1@cor", "cash": Decimal("1.5")},
        "3@cor": {"account_number": "3@cor", "margin_type": "portfolio", "cash": Decimal(3)},
        "4@demo": {"account_number": "4@demo", "daytrades_count": 2},
    }
    assert result.problems == (
        Problem("record is not an object (got string)", index=1),
        Problem("cash: expected a number, got string", "2@cor", "cash", 2),
        Problem("account_number: missing", field="account_number", index=3),
        Problem("margin_type: unknown value 'portfolio'", "3@cor", "margin_type", 4, False),
        Problem("duplicate account_number", "1@cor", "account_number", 5),
    )


@pytest.mark.parametrize(
    ("items", "kept_cash"),
    [
        pytest.param(
            [record(cash=1), record(cash=2)], Decimal(1), id="first-good-wins-over-later-good"
        ),
        pytest.param([record(cash="x"), record(cash=2)], None, id="first-skipped-still-wins"),
    ],
)
def test_duplicate_account_number_keeps_the_first(
    items: list[Any], kept_cash: Decimal | None
) -> None:
    """A later record with an account number already seen is skipped as a duplicate."""
    result = parse_records(items)
    account = result.accounts.get(NUMBER)
    assert (account.get("cash") if account is not None else None) == kept_cash
    assert result.problems[-1] == Problem("duplicate account_number", NUMBER, "account_number", 1)


def test_many_accounts_parse() -> None:
    """A large array is parsed completely, each account under its number."""
    records = [dict(FULL_RECORD, account_number=f"{i:08d}@vision") for i in range(5_000)]
    result = parse_body(body_of(*records))
    assert len(result.accounts) == 5_000
    assert result.problems == ()
    assert isinstance(result.accounts["00004999@vision"], Account)


# --- problem_text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        pytest.param(
            Problem("cash: expected a number, got string", NUMBER, "cash", 3),
            "record 3 (12345678@vision): cash: expected a number, got string; record skipped",
            id="skipped",
        ),
        pytest.param(
            Problem("margin_type: unknown value 'portfolio'", NUMBER, "margin_type", 0, False),
            "record 0 (12345678@vision): margin_type: unknown value 'portfolio'; value kept",
            id="warning",
        ),
        pytest.param(
            Problem("record is not an object (got string)", index=7),
            "record 7: record is not an object (got string); record skipped",
            id="no-account-number",
        ),
        pytest.param(
            Problem("something odd", NUMBER),
            "record (12345678@vision): something odd; record skipped",
            id="no-index",
        ),
    ],
)
def test_problem_text(problem: Problem, text: str) -> None:
    """A problem reads as one line: where, what, and whether the record was skipped."""
    assert problem_text(problem) == text
