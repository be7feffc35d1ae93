from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from monitor.models import KNOWN_FIELDS, Alert, JSONValue, Severity, Status
from monitor.templates import (
    CONTEXT_NAMES,
    MAX_LENGTH,
    MessageTemplate,
    TemplateError,
    compile_template,
    money,
    pct,
    sample_context,
    signed,
    template_context,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RECORD: Mapping[str, JSONValue] = {
    "account_number": "12345678@vision",
    "trade_platform": "equity",
    "margin_type": "marginx2",
    "restriction": "none",
    "restriction_reason": None,
    "account_value_total": Decimal("25000.00"),
    "cash": Decimal("1234.5"),
    "cash_to_withdraw": Decimal("1000.00"),
    "daytrades_count": 2,
    "vendor_extra": "added later",
}


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "status": Status.FIRING,
        "fingerprint": "fp",
        "rule": "low_cash",
        "type": "threshold",
        "severity": Severity.WARNING,
        "account_number": "12345678@vision",
        "field": "cash",
        "previous": Decimal("2500.00"),
        "current": Decimal("1234.5"),
        "summary": "12345678@vision: cash fell to 1234.5 (< 2000)",
        "observed_at": NOW,
        "snapshot": RECORD,
        "labels": {"team": "ops"},
        "started_at": NOW - timedelta(minutes=5),
    }
    fields.update(overrides)
    return Alert(**fields)


def source_wide_alert() -> Alert:
    return make_alert(
        rule="source_down",
        type="source_down",
        account_number=None,
        field=None,
        previous=None,
        current=None,
        snapshot=None,
        summary="source default is down",
    )


def render(text: str, alert: Alert | None = None, **kwargs: Any) -> str:
    return compile_template(text).render(template_context(alert or make_alert(), **kwargs))


# -- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ account_number }} cash {{ cash|money }}", "12345678@vision cash 1,234.50"),
        (
            "{{ rule }}/{{ type }}/{{ severity }}/{{ status }}/{{ source }}/{{ field }}",
            "low_cash/threshold/warning/firing/default/cash",
        ),
        ("{{ previous|money }} -> {{ current|money }}", "2,500.00 -> 1,234.50"),
        ("{{ (current - previous)|money(signed=True) }}", "-1,265.50"),
        ("{{ (cash_to_withdraw - 200)|money(signed=True) }}", "+800.00"),
        ("{{ (cash / account_value_total * 100)|pct }}", "4.9%"),
        ("{{ daytrades_count|signed }} day trades", "+2 day trades"),
        ("{{ labels.team }}", "ops"),
        ("{{ vendor_extra|default('n/a') }}", "added later"),
        ("{{ (cash * 1.1)|money }} {{ 0.5 + cash }}", "1,357.95 1235.0"),
        ("{{ margin_type|upper }}", "MARGINX2"),
        (
            "{{ observed_at.strftime('%H:%M') }} since {{ started_at.strftime('%H:%M') }}",
            "12:00 since 11:55",
        ),
        ("reason: {{ restriction_reason }}", "reason: —"),
        ("{{ summary }}", "12345678@vision: cash fell to 1234.5 (< 2000)"),
        ("  padded \n\n", "padded"),
        ("<b>{{ account_number }}</b> & co", "<b>12345678@vision</b> & co"),
    ],
)
def test_render_fields_and_filters(text: str, expected: str) -> None:
    """Record fields, alert attributes and the filters render as plain, stripped text."""
    assert render(text) == expected


def test_block_tags_leave_no_blank_lines() -> None:
    """trim_blocks/lstrip_blocks: a line holding only a tag disappears from the message."""
    text = (
        "Cash is {{ cash|money }}.\n"
        "  {% if restriction != 'none' %}\n"
        "Restricted!\n"
        "  {% endif %}\n"
        "Value {{ account_value_total|money }}.\n"
    )
    assert render(text) == "Cash is 1,234.50.\nValue 25,000.00."


def test_money_stays_exact_in_arithmetic() -> None:
    """Money is Decimal in the context, so sums of many digits are never rounded through float."""
    alert = make_alert(snapshot={**RECORD, "cash": Decimal("1234567890123456.785")})
    assert render("{{ cash|money }}", alert) == "1,234,567,890,123,456.78"
    assert render("{{ (cash + 0.01)|money }}", alert) == "1,234,567,890,123,456.80"


def test_default_summary_is_available_to_descriptions() -> None:
    """`summary` is the rule's default text, not the rendered template's."""
    assert render("Details: {{ summary }}", default_summary="built in") == "Details: built in"


def test_resolved_status() -> None:
    alert = make_alert(status=Status.RESOLVED)
    assert render("{% if status == 'resolved' %}ok{% else %}bad{% endif %}", alert) == "ok"


# -- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (Decimal("1234.5"), {}, "1,234.50"),
        (Decimal("-1234.5"), {}, "-1,234.50"),
        (Decimal("0"), {}, "0.00"),
        (Decimal("-0.004"), {}, "0.00"),
        (Decimal("0.005"), {}, "0.00"),
        (Decimal("0.015"), {}, "0.02"),
        (Decimal("2.675"), {}, "2.68"),
        (Decimal("2.665"), {}, "2.66"),
        (Decimal("-2.665"), {}, "-2.66"),
        (Decimal("1.23456789"), {}, "1.23"),
        (Decimal("12"), {}, "12.00"),
        (Decimal("1E+3"), {}, "1,000.00"),
        (
            Decimal("123456789012345678901234567890.125"),
            {},
            "123,456,789,012,345,678,901,234,567,890.12",
        ),
        (1234567, {}, "1,234,567.00"),
        (-5, {}, "-5.00"),
        (0.1, {}, "0.10"),
        (None, {}, "—"),
        (None, {"signed": True}, "—"),
        (Decimal("1200"), {"signed": True}, "+1,200.00"),
        (Decimal("-1200"), {"signed": True}, "-1,200.00"),
        (Decimal("0.001"), {"signed": True}, "0.00"),
    ],
)
def test_money(value: Any, kwargs: dict[str, Any], expected: str) -> None:
    assert money(value, **kwargs) == expected


@pytest.mark.parametrize("value", ["12.50", True, [1], Decimal("NaN"), Decimal("Infinity")])
def test_money_refuses_what_is_not_a_finite_number(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="money expects"):
        money(value)


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (Decimal("12.345"), {}, "12.3%"),
        (Decimal("12.35"), {}, "12.4%"),
        (Decimal("12.25"), {}, "12.2%"),
        (Decimal("12.345"), {"digits": 2}, "12.34%"),
        (Decimal("99.6"), {"digits": 0}, "100%"),
        (50, {}, "50.0%"),
        (Decimal("-0.04"), {}, "0.0%"),
        (Decimal("-3.21"), {}, "-3.2%"),
        (Decimal("2.5"), {"signed": True}, "+2.5%"),
        (None, {}, "—"),
    ],
)
def test_pct(value: Any, kwargs: dict[str, Any], expected: str) -> None:
    """`pct` takes a number that already is a percentage, rounded half to even."""
    assert pct(value, **kwargs) == expected


def test_pct_in_a_template() -> None:
    assert render("{{ 12.345|pct(2) }} {{ 2.5|pct(signed=True) }}") == "12.34% +2.5%"


@pytest.mark.parametrize("digits", [-1, 11, True, 1.5])
def test_pct_refuses_bad_digits(digits: Any) -> None:
    with pytest.raises(ValueError, match="digits"):
        pct(Decimal(1), digits)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "+3"),
        (0, "0"),
        (-2, "-2"),
        (Decimal("1.50"), "+1.50"),
        (Decimal("1E+2"), "+100"),
        (None, "—"),
    ],
)
def test_signed(value: Any, expected: str) -> None:
    assert signed(value) == expected


# -- errors at compile time ---------------------------------------------------------------------


def test_typo_is_caught_at_compile_with_its_name_and_line() -> None:
    with pytest.raises(TemplateError, match="'cahs' is undefined") as info:
        compile_template("Cash:\n{{ cahs|money }}")
    assert info.value.lineno == 2
    assert str(info.value) == "line 2: 'cahs' is undefined"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("{{ cash }", 1, "unexpected '}'"),
        ("ok\n{% if cash %}\nno end", 3, "endif"),
        ("{{ cash | nosuchfilter }}", 1, "nosuchfilter"),
    ],
)
def test_syntax_error_names_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as info:
        compile_template(text)
    assert info.value.lineno == line
    assert str(info.value).startswith(f"line {line}: ")


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ observed_at.__class__.__subclasses__() }}",
        "{{ cash.__reduce_ex__(2) }}",
    ],
)
def test_sandbox_violations_fail_at_compile(text: str) -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        compile_template(text)


def test_template_error_is_a_value_error() -> None:
    """So a pydantic validator raising it reports a validation error on the rule's key."""
    assert issubclass(TemplateError, ValueError)


def test_filter_misuse_fails_at_compile() -> None:
    with pytest.raises(TemplateError, match=r"line 1: TypeError: money expects a number, got str"):
        compile_template("{{ restriction|money }}")


def test_unknown_vendor_fields_need_a_default() -> None:
    """A field the vendor may add is unknown when checking; `default` makes it optional."""
    with pytest.raises(TemplateError, match="'vendor_extra' is undefined"):
        compile_template("{{ vendor_extra }}")
    template = compile_template("{{ vendor_extra|default('n/a') }}")
    assert template.render(template_context(make_alert())) == "added later"
    assert template.render(template_context(make_alert(snapshot={}))) == "n/a"


def test_labels_are_checked_when_the_rule_s_labels_are_given() -> None:
    compile_template("{{ labels.anything }}")
    compile_template("{{ labels.team }}", labels={"team": "ops"})
    with pytest.raises(TemplateError, match="teem"):
        compile_template("{{ labels.teem }}", labels={"team": "ops"})


def test_record_fields_fail_at_compile_for_rules_without_an_account() -> None:
    compile_template("{{ source }} is down", account=False)
    with pytest.raises(TemplateError, match="'cash' is undefined"):
        compile_template("{{ cash }}", account=False)


# -- errors at render time ----------------------------------------------------------------------


def test_record_field_of_a_source_wide_alert_fails_at_render() -> None:
    template = compile_template("{{ source }}: {{ cash|money }}")
    with pytest.raises(TemplateError, match="'cash' is undefined"):
        template.render(template_context(source_wide_alert()))


def test_operation_on_a_missing_value_fails_at_render() -> None:
    template = compile_template("x\n{{ (current - previous)|money }}")
    with pytest.raises(TemplateError, match="TypeError") as info:
        template.render(template_context(make_alert(previous=None)))
    assert info.value.lineno == 2


def test_division_by_zero_fails_at_render() -> None:
    template = compile_template("{{ (cash / account_value_total * 100)|pct }}")
    alert = make_alert(snapshot={**RECORD, "account_value_total": Decimal(0)})
    with pytest.raises(TemplateError, match=r"DivisionByZero|ZeroDivision"):
        template.render(template_context(alert))


# -- caching and clipping -----------------------------------------------------------------------


def test_compiled_templates_are_cached_by_text() -> None:
    text = "{{ cash|money }} cached"
    first = compile_template(text)
    assert compile_template(text) is first
    assert compile_template(text, labels={"team": "ops"}) is not first
    assert compile_template(text, labels={"team": "ops"}) == first  # equal by text
    assert isinstance(first, MessageTemplate)
    assert first.text == text


def test_long_results_are_clipped() -> None:
    clipped = compile_template("{{ 'x' * 3000 }}").render(sample_context())
    assert len(clipped) == MAX_LENGTH
    assert clipped == "x" * (MAX_LENGTH - 1) + "…"
    exact = compile_template(f"  {{{{ 'y' * {MAX_LENGTH} }}}}  ").render(sample_context())
    assert exact == "y" * MAX_LENGTH


# -- context ------------------------------------------------------------------------------------


def test_context_has_record_fields_and_alert_names() -> None:
    context = template_context(make_alert())
    assert set(context) == set(RECORD) | CONTEXT_NAMES
    assert context["cash"] == Decimal("1234.5")
    assert isinstance(context["cash"], Decimal)
    assert context["labels"] == {"team": "ops"}
    assert context["status"] == "firing"
    assert type(context["status"]) is str
    assert context["started_at"] == NOW - timedelta(minutes=5)


def test_record_fields_never_shadow_alert_names() -> None:
    record = {**RECORD, "status": "vendor status", "rule": "vendor rule", "summary": "x"}
    context = template_context(make_alert(snapshot=record))
    assert context["status"] == "firing"
    assert context["rule"] == "low_cash"
    assert context["summary"] == make_alert().summary


def test_times_are_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    alert = make_alert(observed_at=NOW.astimezone(plus_two), started_at=None)
    context = template_context(alert)
    assert context["observed_at"].tzinfo == UTC
    assert context["observed_at"] == NOW
    assert context["started_at"] is None


def test_source_wide_alert_has_no_record_fields() -> None:
    context = template_context(source_wide_alert())
    assert set(context) == CONTEXT_NAMES
    assert context["account_number"] is None


def test_sample_context_fills_every_name() -> None:
    context = sample_context()
    assert set(KNOWN_FIELDS) | CONTEXT_NAMES <= set(context)
    assert all(context[name] is not None for name in context)
    every = " ".join(f"{{{{ {name} }}}}" for name in sorted(context))
    compile_template(every)
    assert set(sample_context(account=False)) == CONTEXT_NAMES


# -- templates that would break the checker ----------------------------------------------------


def test_a_template_nested_too_deeply_is_a_template_error() -> None:
    """Thousands of nested parentheses made Jinja's parser recurse out of the stack: a
    RecursionError, and a traceback from check-config. It is a TemplateError like any other."""
    text = "{{ " + "( " * 5000 + "1" + " )" * 5000 + " }}"
    with pytest.raises(TemplateError, match="nested too deeply"):
        compile_template(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{{ 'x' | truncate(-1) }}", "AssertionError", id="jinja-assertion"),
        pytest.param(
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError", id="recursion"
        ),
    ],
)
def test_whatever_a_template_raises_is_a_template_error(text: str, message: str) -> None:
    """A template is code the user wrote: any exception it raises while it renders (a filter's
    assertion included) is its TemplateError, never another exception."""
    with pytest.raises(TemplateError, match=message):
        compile_template(text)
