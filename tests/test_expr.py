"""Tests for monitor.expr: CEL rule conditions, compiled and checked once, evaluated per account."""

from __future__ import annotations

import builtins
from decimal import Decimal
from typing import Any

import pytest

from monitor.expr import Expression, ExpressionError, compile_expression
from monitor.models import MONEY_FIELDS, JSONValue

EXAMPLE = "daytrades_count >= 3 && account_value_total < 25000.0 && margin_type != 'cash'"

RECORD: dict[str, JSONValue] = {
    "account_number": "12345678@vision",
    "trade_platform": "ETNA",
    "margin_type": "marginx1",
    "restriction": "none",
    "daytrades_count": 4,
    "account_value_total": Decimal("24999.99"),
    "cash": Decimal("-1200.50"),
    "day_trading_buying_power": Decimal("0"),
    "margin_buying_power": Decimal("11000.00"),
    "non_margin_buying_power": Decimal("5500.00"),
    "position_market_value": Decimal("26200.49"),
    "unsettled_cash": Decimal("0"),
}


def record(**fields: JSONValue) -> dict[str, JSONValue]:
    return {**RECORD, **fields}


def check(text: str, rec: dict[str, JSONValue], previous: dict[str, JSONValue] | None) -> bool:
    return compile_expression(text).evaluate(rec, previous)


# -- compile time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "excerpt"),
    [
        pytest.param(
            "daytrades_count >= 3 &&", 1, 24, "daytrades_count >= 3 &&", id="dangling-and"
        ),
        pytest.param(
            "daytrades_count >= 3 &&\n  account_value_total <",
            2,
            24,
            "  account_value_total <",
            id="second-line",
        ),
        pytest.param("cash >> 1.0", 1, 7, "cash >> 1.0", id="bad-operator"),
        pytest.param("(cash > 1.0", 1, 12, "(cash > 1.0", id="unclosed-paren"),
        pytest.param("margin_type == 'cash", 1, 16, "margin_type == 'cash", id="unclosed-string"),
        pytest.param(
            "margin_type == 'é' &&", 1, 22, "margin_type == 'é' &&", id="columns-in-chars"
        ),
        pytest.param("", 1, 1, "", id="empty"),
    ],
)
def test_syntax_error_names_line_and_column_with_a_caret(
    text: str, line: int, column: int, excerpt: str
) -> None:
    """A syntax error says where, as "line L, column C", and shows the line with a caret."""
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    message = str(info.value)
    assert f"syntax error in expression at line {line}, column {column}: " in message
    assert message.endswith(f"\n    {excerpt}\n    {' ' * (column - 1)}^")


def test_syntax_error_reads_as_english() -> None:
    """The parser's token soup is summarised: an expression that stops early says so."""
    with pytest.raises(
        ExpressionError,
        match=r"at line 2, column 1: unexpected end of expression, expecting a value\n",
    ):
        compile_expression("cash <\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "daytrade_count >= 3",
            "unknown field 'daytrade_count'; did you mean 'daytrades_count'?",
            id="typo",
        ),
        pytest.param(
            "daytrades_count >= 3 || daytrade > 1",
            "unknown field 'daytrade'; did you mean 'daytrades_count'?",
            id="behind-a-short-circuit",
        ),
        pytest.param(
            "has(previous.csh) && previous.csh > 1.0",
            "unknown field 'previous.csh'; did you mean 'cash'?",
            id="previous-typo",
        ),
        pytest.param("zzz == 1", "unknown field 'zzz'; the fields are account_number, ", id="none"),
        pytest.param("pattern_day_trader", "unknown field 'pattern_day_trader'", id="undeclared"),
    ],
)
def test_unknown_field_is_a_compile_error(text: str, message: str) -> None:
    """A name that is not a field is refused at config load, with the likeliest correction."""
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("cash < 'x'", "No such overload", id="double-vs-string"),
        pytest.param("margin_type > 3", "No such overload", id="string-vs-int"),
        pytest.param("cash + 1 > 0.0", "float + int", id="double-plus-int"),
        pytest.param(
            EXAMPLE + " && cash < 'x'", "No such overload", id="behind-two-short-circuits"
        ),
        pytest.param("restriction.startsWith(1)", "", id="bad-argument"),
        pytest.param("nosuchfunction(cash)", "unknown function 'nosuchfunction'", id="fn"),
    ],
)
def test_type_error_is_a_compile_error(text: str, message: str) -> None:
    """Operands of the wrong types fail the test evaluation, which names the fields' types."""
    with pytest.raises(ExpressionError, match="cannot be evaluated: ") as info:
        compile_expression(text)
    assert message in str(info.value)


def test_type_error_message_lists_the_fields_used_and_their_types() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("daytrades_count > 1 && margin_type < cash")
    assert str(info.value).endswith(
        "(fields used: cash (double), daytrades_count (int), margin_type (string))"
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("cash + 1.0", "double", id="arithmetic"),
        pytest.param("margin_type", "string", id="a-string-field"),
        pytest.param("daytrades_count", "int", id="an-int-field"),
        pytest.param("cash > 0.0 ? 1 : 0", "int", id="conditional"),
        pytest.param("[cash]", "list", id="list"),
        pytest.param("null", "null", id="null"),
    ],
)
def test_non_boolean_result_is_a_compile_error(text: str, kind: str) -> None:
    with pytest.raises(ExpressionError, match=f"the result must be true or false, not {kind} "):
        compile_expression(text)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "exec('1')",
        "open('/etc/passwd') != null",
        "margin_type.__class__ == null",
        "lambda: 1",
        "import os",
    ],
)
def test_python_is_not_reachable(text: str) -> None:
    """Python syntax and builtins mean nothing to CEL: each is a syntax error or unknown name."""
    with pytest.raises(ExpressionError):
        compile_expression(text)


def test_no_python_eval_exec_or_compile_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling and evaluating work with Python's eval, exec and compile made unusable."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Python code evaluation is not allowed")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)
    text = EXAMPLE + " && cash != 123.456"  # a text no other test compiled: not from the cache
    assert compile_expression(text).evaluate(RECORD, None) is True


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(EXAMPLE, id="example"),
        pytest.param("account_value_total < 25000", id="int-literal-vs-double"),
        pytest.param("daytrades_count >= 3.0", id="double-literal-vs-int"),
        pytest.param("double(daytrades_count) * 2.5 > cash", id="explicit-conversion"),
        pytest.param("[cash, margin_buying_power].exists(v, v < 0.0)", id="macro-variable"),
        pytest.param("{'a': 1}.all(k, v, v > 0) || true", id="two-macro-variables"),
        pytest.param("margin_type in ['cash', 'marginx1'] && restriction == 'none'", id="in"),
        pytest.param("restriction_reason == null || restriction_reason.contains('PDT')", id="nul"),
        pytest.param("account_number.endsWith('@demo') && size(trade_platform) > 0", id="strings"),
        pytest.param("has(previous.cash) && previous.cash - cash > 1000.0", id="previous"),
        pytest.param("'previous.nonsense' != margin_type", id="previous-inside-a-string"),
        pytest.param("true", id="constant"),
    ],
)
def test_valid_expressions_compile(text: str) -> None:
    expression = compile_expression(text)
    assert expression.text == text


def test_compile_is_cached_by_text() -> None:
    """The same text gives the same object; extra fields are part of the key."""
    first = compile_expression("cash < 100.0")
    assert compile_expression("cash < 100.0") is first
    assert compile_expression("cash < 100.0", extra_fields=["x"]) is not first
    assert compile_expression("cash < 100.0", extra_fields=("x",)) is compile_expression(
        "cash < 100.0", extra_fields={"x"}
    )


def test_variables_are_the_names_read() -> None:
    expression = compile_expression(EXAMPLE + " && has(previous.cash)")
    assert expression.variables == (
        "account_value_total",
        "daytrades_count",
        "margin_type",
        "previous",
    )


# -- evaluation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, True, id="pattern-day-trader-under-25k"),
        pytest.param({"daytrades_count": 2}, False, id="two-day-trades"),
        pytest.param({"account_value_total": Decimal("25000.00")}, False, id="exactly-25k"),
        pytest.param({"account_value_total": Decimal("25000.01")}, False, id="over-25k"),
        pytest.param({"account_value_total": Decimal("-3.5")}, True, id="negative"),
        pytest.param({"margin_type": "cash"}, False, id="cash-account"),
        pytest.param({"margin_type": "portfolio"}, True, id="unknown-enum-value"),
    ],
)
def test_issue_example(fields: dict[str, JSONValue], expected: bool) -> None:
    assert check(EXAMPLE, record(**fields), None) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("cash < 0.0", True, id="negative-cash"),
        pytest.param("cash == -1200.5", True, id="decimal-as-double"),
        pytest.param("cash < -1200", True, id="vs-int-literal"),
        pytest.param("cash + position_market_value == 24999.99", True, id="sum"),
        pytest.param("margin_buying_power == 2.0 * non_margin_buying_power", True, id="product"),
        pytest.param("unsettled_cash == 0", True, id="zero"),
        pytest.param("daytrades_count + 1 == 5", True, id="int-arithmetic"),
        pytest.param("day_trading_buying_power > 0.0", False, id="false"),
    ],
)
def test_money_is_a_double(text: str, expected: bool) -> None:
    """Decimal money becomes a CEL double; daytrades_count stays an int."""
    assert check(text, RECORD, None) is expected


@pytest.mark.parametrize(
    ("previous_cash", "expected"),
    [
        pytest.param(Decimal("-5000.00"), False, id="rose"),
        pytest.param(Decimal("-199.50"), False, id="fell-by-1001"),
        pytest.param(Decimal("-199.49"), True, id="fell-by-more-than-1000"),
    ],
)
def test_previous_is_the_previous_record(previous_cash: Decimal, expected: bool) -> None:
    text = "previous.cash - cash > 1001.0 && previous.margin_type == margin_type"
    assert check(text, RECORD, record(cash=previous_cash)) is expected


def test_has_previous_is_false_without_a_previous_record() -> None:
    text = "has(previous.cash) && previous.cash - cash > 1000.0"
    assert check(text, RECORD, None) is False
    assert check(text, RECORD, {"account_number": "12345678@vision"}) is False
    assert check(text, RECORD, record(cash=Decimal(5000))) is True


def test_previous_field_without_previous_record_cannot_be_evaluated() -> None:
    """Compiles (the samples have a previous record), fails on an account's first poll."""
    expression = compile_expression("previous.cash > cash")
    with pytest.raises(ExpressionError, match=r"no such key 'cash' .*has\(previous\.cash\)"):
        expression.evaluate(RECORD, None)


@pytest.mark.parametrize(
    ("text", "fields", "expected"),
    [
        pytest.param("restriction_reason == null", {"restriction_reason": None}, True, id="none"),
        pytest.param("restriction_reason == null", {}, True, id="absent-known-field-is-null"),
        pytest.param("restriction_reason != null", {"restriction_reason": "PDT"}, True, id="set"),
        pytest.param(
            "restriction_reason != null && restriction_reason.startsWith('PDT')",
            {"restriction_reason": None},
            False,
            id="guarded",
        ),
        pytest.param("cash_to_withdraw == null", {}, True, id="absent-money"),
    ],
)
def test_null_fields(text: str, fields: dict[str, JSONValue], expected: bool) -> None:
    assert check(text, record(**fields), None) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("restriction_reason.startsWith('PDT')", "unknown function 'startsWith', or not one"),
        ("cash_to_withdraw < 100.0", "No such overload"),
    ],
)
def test_null_used_as_a_value_cannot_be_evaluated(text: str, message: str) -> None:
    """A null field (absent, or null in the response) fails where a value is needed."""
    expression = compile_expression(text)
    with pytest.raises(ExpressionError, match=message):
        expression.evaluate(record(restriction_reason=None), None)


def test_extra_fields_are_variables_when_declared() -> None:
    """A vendor's newer scalar field is readable when the rule declares it (not type-checked)."""
    expression = compile_expression(
        "pattern_day_trader == true && cash < 0.0", extra_fields=["pattern_day_trader"]
    )
    assert expression.evaluate(record(pattern_day_trader=True), None) is True
    assert expression.evaluate(record(pattern_day_trader=False), None) is False
    with pytest.raises(ExpressionError, match="the record has no field 'pattern_day_trader'"):
        expression.evaluate(RECORD, None)


def test_extra_fields_that_are_lists_or_maps_are_not_variables() -> None:
    expression = compile_expression("tags == null", extra_fields=["tags"])
    with pytest.raises(ExpressionError, match="the record has no field 'tags'"):
        expression.evaluate(record(tags=["a"]), None)


def test_previous_keeps_only_scalar_fields() -> None:
    expression = compile_expression(
        "has(previous.tags) || has(previous.n)", extra_fields=["tags", "n"]
    )
    assert expression.evaluate(RECORD, record(tags=["a"], n={"a": 1})) is False
    assert expression.evaluate(RECORD, record(n=2)) is True


def test_integer_beyond_int64_becomes_a_double() -> None:
    expression = compile_expression("big > 1.0e19", extra_fields=["big"])
    assert expression.evaluate(record(big=2**70), None) is True


def test_non_boolean_at_evaluation_is_an_error() -> None:
    """An undeclared-type extra field can still make the result a non-boolean at run time."""
    expression = compile_expression("flag", extra_fields=["flag"])
    assert expression.evaluate(record(flag=True), None) is True
    with pytest.raises(ExpressionError, match=r"not string \('yes'\)"):
        expression.evaluate(record(flag="yes"), None)


def test_expression_error_is_a_value_error() -> None:
    """Config validation (pydantic validators) turns a ValueError into a validation error."""
    assert issubclass(ExpressionError, ValueError)
    assert isinstance(compile_expression("true"), Expression)


def test_expression_over_many_fields_is_checked_with_fewer_samples() -> None:
    """Past 256 combinations of sample values, a smaller set still finds a type error."""
    many = " && ".join(f"{name} < 1.0" for name in MONEY_FIELDS)
    assert compile_expression(many + " && margin_type != restriction").text.startswith(many)
    with pytest.raises(ExpressionError, match="No such overload"):
        compile_expression(many + " && margin_type != restriction && cash < 'x'")
