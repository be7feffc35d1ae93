"""Per-rule message templates: a rule's ``summary`` and ``description`` keys.

Templates are Jinja2 rendered in a sandbox (:class:`jinja2.sandbox.SandboxedEnvironment`) as
plain text: no autoescaping (each sink escapes for its own format), ``StrictUndefined`` (a name
that does not exist is an error, never an empty string), the trailing newline dropped,
``trim_blocks``/``lstrip_blocks`` on (a line holding only a ``{% ... %}`` tag leaves no blank
line), and ``None`` printed as ``—``. A rendered message is stripped and clipped to
:data:`MAX_LENGTH` characters, ending in ``…`` when clipped.

:func:`compile_template` compiles a template when the configuration loads and renders it once
against :func:`sample_context`, so a syntax error (with its line), an unknown name or a sandbox
violation is a configuration error, not a lost notification. Every error is a
:class:`TemplateError` (a ``ValueError``) with a message for a person: ``line 1: unexpected '}'``,
``line 2: 'cahs' is undefined``.

Variables (:func:`template_context`):

- every field of the account's record at top level: ``cash``, ``cash_to_withdraw``,
  ``account_value_total``, ``daytrades_count``, ``restriction``, ``margin_type``, ... including
  fields the vendor adds. Money is ``Decimal`` and stays exact. Alerts without an account (a
  source going down) have no record fields; using one is an error when the alert renders.
  A vendor field not in :data:`monitor.models.KNOWN_FIELDS` is unknown when the template is
  checked: write ``{{ x | default("—") }}`` or ``{% if x is defined %}``.
- ``account_number``; ``rule`` (the rule's name); ``type``; ``severity`` (``info``,
  ``warning``, ``critical``); ``status`` (``firing`` or ``resolved``); ``source``;
- ``field``, ``previous``, ``current``: the field the alert is about and its previous and current
  value, as in the JSON payload (each may be ``None``);
- ``labels``: the rule's labels, a dict (``{{ labels.team }}``);
- ``observed_at`` and ``started_at``: ``datetime`` in UTC (``started_at`` may be ``None``);
  ``{{ observed_at.strftime("%H:%M") }}`` works;
- ``summary``: the summary the rule writes by default (handy in a ``description``).

These names always win over a record field of the same name.

Numbers are never turned into floats: a float literal in arithmetic with a ``Decimal`` becomes the
``Decimal`` it reads as (``{{ cash * 1.1 }}`` is exact).

Filters:

- ``money``: ``Decimal`` or ``int`` as ``1,234.50`` / ``-1,234.50``: thousands separators,
  always two decimals, rounded half to even; ``None`` is ``—``. ``money(signed=True)`` puts
  ``+`` before a positive amount (``+1,200.00``), for a difference such as
  ``(current - previous) | money(signed=True)``.
- ``pct``: a number that already *is* a percentage, with one decimal: ``12.345 | pct`` is
  ``12.3%``; ``pct(2)`` for two decimals, ``pct(signed=True)`` for ``+2.5%``. For a ratio,
  multiply first: ``(cash / account_value_total * 100) | pct``. ``None`` is ``—``.
- ``signed``: a number with ``+`` before it when positive (``+3``), unchanged otherwise.

Jinja's own filters and tests (``default``, ``upper``, ``is defined``, ...) are there too.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from monitor.models import (
    DEFAULT_SOURCE,
    INTEGER_FIELDS,
    KNOWN_ENUMS,
    KNOWN_FIELDS,
    MONEY_FIELDS,
    Alert,
)
from monitor.text import MISSING, clip

#: A rendered message longer than this is clipped, its last character replaced by ``…``.
MAX_LENGTH = 2000

#: What ``None`` prints as, in ``{{ ... }}`` and in the number filters.
NONE_TEXT = MISSING

#: The names of the context that are not record fields; a record field never shadows them.
CONTEXT_NAMES: frozenset[str] = frozenset(
    {
        "account_number",
        "rule",
        "type",
        "severity",
        "status",
        "source",
        "field",
        "previous",
        "current",
        "labels",
        "observed_at",
        "started_at",
        "summary",
    }
)

_TEMPLATE_FILENAME = "<template>"


class TemplateError(ValueError):
    """A template that does not compile or render; the message is for a person.

    ``lineno`` is the template line the error is on, when Jinja knows it.
    """

    def __init__(self, message: str, *, lineno: int | None = None) -> None:
        super().__init__(f"line {lineno}: {message}" if lineno is not None else message)
        self.lineno = lineno


@dataclass(frozen=True)
class MessageTemplate:
    """A compiled message template; equal to another when their texts are equal."""

    text: str
    _template: jinja2.Template = field(repr=False, compare=False)

    def render(self, context: Mapping[str, Any]) -> str:
        """The message, stripped and clipped to :data:`MAX_LENGTH`.

        Raises :class:`TemplateError` when the template fails on ``context``.
        """
        try:
            rendered = self._template.render(context)
        except Exception as exc:
            # (Jinja's errors, an operand a filter refuses, a division by zero, a macro calling
            # itself forever, a filter's own assertion) is the template's error
            raise _translate(exc) from exc
        return clip(rendered.strip(), MAX_LENGTH)


def compile_template(
    text: str, *, labels: Mapping[str, str] | None = None, account: bool = True
) -> MessageTemplate:
    """Compile ``text`` and render it once against :func:`sample_context`.

    ``labels`` are the rule's labels: given, ``{{ labels.teem }}`` is an error now; left out,
    any label passes. ``account=False`` is for rules whose alerts have no account (a source
    going down): a record field is then an error now rather than when the alert renders.
    Results are cached by the arguments.
    """
    key = tuple(sorted(labels.items())) if labels is not None else None
    return _compile(text, key, account)


@functools.lru_cache(maxsize=256)
def _compile(
    text: str, labels: tuple[tuple[str, str], ...] | None, account: bool
) -> MessageTemplate:
    try:
        compiled = _ENVIRONMENT.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or str(exc), lineno=exc.lineno) from exc
    except RecursionError:  # Jinja's parser recurses once per level of nesting
        raise TemplateError("nested too deeply") from None
    template = MessageTemplate(text, compiled)
    template.render(
        sample_context(labels=dict(labels) if labels is not None else None, account=account)
    )
    return template


def template_context(alert: Alert, *, default_summary: str | None = None) -> dict[str, Any]:
    """The variables a template of ``alert``'s rule sees (see the module docstring).

    ``default_summary`` is the rule's own summary; it defaults to ``alert.summary``.
    """
    context: dict[str, Any] = {}
    if alert.snapshot is not None:
        context.update((k, v) for k, v in alert.snapshot.items() if k not in CONTEXT_NAMES)
    context.update(
        account_number=alert.account_number,
        rule=alert.rule,
        type=alert.type,
        severity=alert.severity.value,
        status=alert.status.value,
        source=alert.source,
        field=alert.field,
        previous=alert.previous,
        current=alert.current,
        labels=dict(alert.labels),
        observed_at=alert.observed_at.astimezone(UTC),
        started_at=alert.started_at.astimezone(UTC) if alert.started_at is not None else None,
        summary=default_summary if default_summary is not None else alert.summary,
    )
    return context


_SAMPLE_MONEY: Mapping[str, Decimal] = {
    "account_value_total": Decimal("25000.00"),
    "cash": Decimal("1234.50"),
    "day_trading_buying_power": Decimal("100000.00"),
    "margin_buying_power": Decimal("50000.00"),
    "non_margin_buying_power": Decimal("25000.00"),
    "position_market_value": Decimal("23765.50"),
    "unsettled_cash": Decimal("150.00"),
    "cash_to_withdraw": Decimal("1084.50"),
}
_SAMPLE_TEXT: Mapping[str, str] = {
    "account_number": "12345678@vision",
    "trade_platform": "equity",
    "margin_type": "marginx2",
    "restriction": "none",
    "restriction_reason": "sample reason",
}


def sample_context(
    *, labels: Mapping[str, str] | None = None, account: bool = True
) -> dict[str, Any]:
    """A context with every variable filled, so that a template renders unless it is wrong.

    Every known record field is there (none when ``account`` is false) and no number is zero.
    Without ``labels``, any label exists.
    """
    context: dict[str, Any] = {}
    if account:
        for name in KNOWN_FIELDS:
            context[name] = _sample_value(name)
    observed = datetime(2024, 5, 1, 14, 30, tzinfo=UTC)
    context.update(
        account_number=_SAMPLE_TEXT["account_number"] if account else None,
        rule="sample_rule",
        type="threshold",
        severity="warning",
        status="firing",
        source=DEFAULT_SOURCE,
        field="cash",
        previous=Decimal("2500.00"),
        current=_SAMPLE_MONEY["cash"],
        labels=dict(labels) if labels is not None else _AnyLabels(),
        observed_at=observed,
        started_at=observed,
        summary="12345678@vision: cash fell to 1234.50 (< 2000)",
    )
    return context


def _sample_value(name: str) -> Any:
    if name in MONEY_FIELDS:
        return _SAMPLE_MONEY.get(name, Decimal("1000.00"))
    if name in INTEGER_FIELDS:
        return 1
    if name in _SAMPLE_TEXT:
        return _SAMPLE_TEXT[name]
    if name in KNOWN_ENUMS:
        return sorted(KNOWN_ENUMS[name])[0]
    return f"sample {name}"


class _AnyLabels(dict[str, str]):
    """Labels for checking a template when the rule's are not known: any label exists."""

    def __missing__(self, key: str) -> str:
        return f"sample {key}"


# -- filters --------------------------------------------------------------------------------------


def money(value: Any, *, signed: bool = False) -> str:
    """``Decimal("-1234.5")`` -> ``-1,234.50``; ``None`` -> ``—``."""
    if value is None:
        return NONE_TEXT
    amount = _quantize(_decimal(value, "money"), 2)
    return _with_sign(f"{amount:,.2f}", amount, signed=signed)


def pct(value: Any, digits: int = 1, *, signed: bool = False) -> str:
    """A number that is already a percentage: ``12.345`` -> ``12.3%``; ``None`` -> ``—``."""
    if value is None:
        return NONE_TEXT
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 10:
        raise ValueError(f"pct: digits must be an integer from 0 to 10, got {digits!r}")
    number = _quantize(_decimal(value, "pct"), digits)
    return _with_sign(f"{number:.{digits}f}%", number, signed=signed)


def signed(value: Any) -> str:
    """A number with ``+`` before it when positive: ``3`` -> ``+3``; ``None`` -> ``—``."""
    if value is None:
        return NONE_TEXT
    number = _decimal(value, "signed")
    return _with_sign(format(number, "f"), number, signed=True)


def _decimal(value: Any, name: str) -> Decimal:
    """An exact ``Decimal`` of a number; a float (only a template literal is one) by its repr."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # "'cahs' is undefined", not "got Undefined"
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise TypeError(f"{name} expects a number, got {type(value).__name__} {value!r}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{name} expects a finite number, got {value!r}")
    return number


def _quantize(number: Decimal, places: int) -> Decimal:
    """``number`` rounded half to even to ``places`` decimals, however long it is; never ``-0``."""
    precision = max(number.adjusted(), 0) + 1 + places
    context = decimal.Context(prec=max(precision, 28), rounding=ROUND_HALF_EVEN)
    rounded = number.quantize(Decimal(1).scaleb(-places), context=context)
    return rounded.copy_abs() if rounded.is_zero() else rounded


def _with_sign(text: str, number: Decimal, *, signed: bool) -> str:
    return f"+{text}" if signed and number > 0 else text


def _finalize(value: Any) -> Any:
    return NONE_TEXT if value is None else value


def _translate(exc: BaseException) -> TemplateError:
    """The :class:`TemplateError` of an exception raised while a template renders."""
    if isinstance(exc, jinja2.TemplateError):
        message = exc.message or type(exc).__name__
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return TemplateError(message, lineno=_template_line(exc))


def _template_line(exc: BaseException) -> int | None:
    """The template line a runtime error happened on (Jinja rewrites tracebacks to show it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _Environment(SandboxedEnvironment):
    """The sandbox, with a float literal meeting a ``Decimal`` made an exact ``Decimal``.

    ``{{ cash * 1.5 }}`` would otherwise be a ``TypeError`` (Python refuses to mix the two).
    """

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if isinstance(left, Decimal) and isinstance(right, float):
            right = _decimal(right, operator)
        elif isinstance(left, float) and isinstance(right, Decimal):
            left = _decimal(left, operator)
        return super().call_binop(context, operator, left, right)


def _environment() -> SandboxedEnvironment:
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters.update(money=money, pct=pct, signed=signed)
    return env


_ENVIRONMENT = _environment()
