"""Rule conditions in the Common Expression Language (CEL). Pure.

An ``expression`` rule's ``when`` is a CEL expression (https://cel.dev), evaluated once per
account; the rule fires while it is ``true``::

    when = "daytrades_count >= 3 && account_value_total < 25000.0 && margin_type != 'cash'"

CEL is a small, side-effect-free language with no loops, no I/O and no access to Python: an
expression can only read the values given to it. It is compiled by the ``cel`` package (the Rust
implementation, ``common-expression-language`` on PyPI); nothing here calls Python's ``eval``.

Variables:

- Every field of the account's record, by name: the money fields (``cash``,
  ``account_value_total``, ...) are ``double``; ``daytrades_count`` is an ``int``; the text fields
  (``margin_type``, ``restriction``, ``restriction_reason``, ...) are ``string``. A known field
  that the record lacks (an optional one, or a ``null`` in the response) is ``null``: compare it
  with ``== null`` / ``!= null``, as any other use of a ``null`` fails.
- ``previous``: a map of the same account's record at the previous poll, with the fields it had
  (``previous.cash``). It is empty on the first poll of an account: ``previous.cash`` then fails,
  which the rule treats as "cannot be evaluated"; test with the ``has()`` macro instead to make
  the expression simply false: ``has(previous.cash) && previous.cash - cash > 1000.0``.
- Fields the vendor adds after this release are variables too, when their value is a string,
  number, boolean or null; an expression may only name them when the rule lists them in its
  ``fields`` key (they are not type-checked in advance).

Numbers: comparisons (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``) work across ``int`` and
``double``, so ``account_value_total < 25000`` and ``daytrades_count >= 3.0`` both work.
Arithmetic does not convert: ``cash + 1`` is an error, write ``cash + 1.0`` or
``double(daytrades_count) * 2.5``. Money is a ``double`` (binary floating point) inside an
expression: fine for thresholds, not for exact cent equality. The standard functions are there:
``size()``, ``startsWith()``, ``endsWith()``, ``contains()``, ``matches()`` (RE2), ``in`` lists,
``? :``, ``int()``, ``double()``, ``string()``.

:func:`compile_expression` rejects, when the configuration is loaded: a syntax error (with its
line and column); a variable that is not a field (``daytrade_count``, with a suggestion) or a
``previous.<name>`` that is not one; and anything that fails or is not a boolean when the
expression is test-evaluated over sample records with every known field (a string compared with
a number, ``cash + 1``, ``cash > 0.0 ? 1 : 0``). Sample values vary, so most parts of an
expression are exercised despite ``&&``/``||`` short-circuits, but not provably all of them.
"""

from __future__ import annotations

import difflib
import enum
import functools
import itertools
import math
import re
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, TypeAlias

from monitor.models import INTEGER_FIELDS, KNOWN_ENUMS, KNOWN_FIELDS, MONEY_FIELDS, JSONValue


def _cel_without_its_cli() -> None:
    """Import ``cel`` without ``cel.cli``, its interactive shell, which its ``__init__`` imports
    (typer, prompt_toolkit, pygments and rich: about 100 ms and several MiB for every start and
    every ``check-config`` with an expression rule); a stand-in takes its place meanwhile."""
    if "cel" in sys.modules:
        return
    stand_in = types.ModuleType("cel.cli")
    sys.modules.setdefault("cel.cli", stand_in)
    try:
        import cel  # noqa: F401
    finally:
        if sys.modules.get("cel.cli") is stand_in:
            del sys.modules["cel.cli"]


_cel_without_its_cli()

import cel  # noqa: E402

__all__ = ["PREVIOUS", "Expression", "ExpressionError", "compile_expression"]

#: The variable holding the previous poll's record of the account.
PREVIOUS: Final = "previous"

CelScalar: TypeAlias = str | int | float | bool | None
Activation: TypeAlias = dict[str, CelScalar | dict[str, CelScalar]]


class ExpressionError(ValueError):
    """An expression cannot be compiled or evaluated; the message says why, for a human."""


class _Missing(enum.Enum):
    TOKEN = 0


_MISSING: Final = _Missing.TOKEN
#: What the ``cel`` extension raises from ``compile`` (ValueError) and ``execute`` (the rest).
_CEL_ERRORS: Final = (ValueError, TypeError, RuntimeError, LookupError, ArithmeticError)
_INT64: Final = range(-(2**63), 2**63)
_KNOWN: Final = frozenset(KNOWN_FIELDS)
#: Past this many combinations of sample values, the test evaluation uses fewer samples.
_MAX_SAMPLES: Final = 256

_POSITION: Final = re.compile(r"<input>:(\d+):(\d+): (?:Syntax error: )?([^\n]*)")
_OPERAND_SET: Final = re.compile(r"\{[^}]*IDENTIFIER\}")
_UNDEFINED: Final = re.compile(r"Undefined variable or function: '([^']*)'")
_STRING: Final = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\"""")
#: ``list.exists(x, ...)``, ``map.all(k, v, ...)``: names bound by a macro, not variables.
_BOUND: Final = re.compile(r"\.\s*\w+\s*\(\s*([A-Za-z_]\w*)\s*,(?:\s*([A-Za-z_]\w*)\s*,)?")
_PREVIOUS_FIELD: Final = re.compile(r"(?<![\w.])previous\s*\.\s*([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled CEL expression; build it with :func:`compile_expression`."""

    text: str
    #: The variables the expression reads (fields and ``previous``), sorted.
    variables: tuple[str, ...]
    _program: cel.Program = field(repr=False, compare=False)

    def evaluate(
        self, record: Mapping[str, JSONValue], previous: Mapping[str, JSONValue] | None
    ) -> bool:
        """The expression's value over an account's record and its previous one (or ``None``).

        Raises :class:`ExpressionError` when it cannot be evaluated: a missing key or variable,
        operands of the wrong types (``null`` included), or a result that is not a boolean.
        """
        activation: Activation = {}
        for name in self.variables:
            if name == PREVIOUS:
                activation[name] = _scalars(previous) if previous is not None else {}
                continue
            value = _to_cel(record.get(name, _MISSING))
            if value is not _MISSING:
                activation[name] = value
            elif name in _KNOWN:
                activation[name] = None
        try:
            result: Any = self._program.execute(activation)
        except _CEL_ERRORS as exc:
            raise ExpressionError(_problem(exc, self.variables)) from exc
        if not isinstance(result, bool):
            raise ExpressionError(
                f"the result must be true or false, not {_cel_type(result)} ({result!r})"
            )
        return result


def compile_expression(text: str, *, extra_fields: Iterable[str] = ()) -> Expression:
    """Compile ``text`` once (cached by text and ``extra_fields``) and check it.

    ``extra_fields`` names fields beyond :data:`monitor.models.KNOWN_FIELDS` that the expression
    may read (the vendor's newer fields); their types are unknown, so they are not test-evaluated.
    Raises :class:`ExpressionError` for a syntax error, an unknown name, or an expression that
    fails or is not a boolean over the sample records.
    """
    return _compile(text, frozenset(extra_fields))


@functools.lru_cache(maxsize=256)
def _compile(text: str, extra_fields: frozenset[str]) -> Expression:
    try:
        program = cel.compile(text)
    except ValueError as exc:
        raise ExpressionError(_syntax_message(text, str(exc))) from exc
    fields = _KNOWN | extra_fields
    code = _STRING.sub("''", text)
    bound = {name for match in _BOUND.finditer(code) for name in match.groups() if name}
    names = sorted(set(program.variables()) - bound)
    for name in names:
        if name != PREVIOUS and name not in fields:
            raise ExpressionError(_unknown_message(text, name, name, fields))
    for match in _PREVIOUS_FIELD.finditer(code):
        if match[1] not in fields:
            raise ExpressionError(_unknown_message(text, match[1], match[0], fields))
    expression = Expression(text, tuple(names), program)
    _test_evaluate(expression, extra_fields)
    return expression


def _test_evaluate(expression: Expression, extra_fields: frozenset[str]) -> None:
    for record, previous in _samples(expression.variables):
        try:
            expression.evaluate(record, previous)
        except ExpressionError as exc:
            if _names_missing(exc.__cause__) & extra_fields:
                continue  # an extra field: absent from the samples, its type is unknown
            types = ", ".join(
                f"{name} ({_cel_type(_to_cel(record[name]))})"
                for name in expression.variables
                if name in record
            )
            uses = f" (fields used: {types})" if types else ""
            raise ExpressionError(
                f"expression {expression.text!r} cannot be evaluated: {exc}{uses}"
            ) from exc


#: Two or more values per field, far apart, so that comparisons with usual thresholds go both ways.
_SAMPLE_VALUES: Final[Mapping[str, tuple[JSONValue, ...]]] = {
    **dict.fromkeys(MONEY_FIELDS, (Decimal("-1E12"), Decimal("1E12"))),
    **dict.fromkeys(INTEGER_FIELDS, (-1000, 1000)),
    **{name: tuple(sorted(values)) for name, values in KNOWN_ENUMS.items()},
    "account_number": ("12345678@demo", "87654321@vision"),
    "trade_platform": ("ETNA", "transaq"),
    "restriction_reason": ("", "pattern day trader"),
}


def _samples(
    variables: tuple[str, ...],
) -> Iterator[tuple[dict[str, JSONValue], dict[str, JSONValue]]]:
    """Sample (record, previous) pairs: every known field set, the used ones varied."""

    def values(name: str) -> tuple[JSONValue, ...]:
        return _SAMPLE_VALUES.get(name, ("", "x"))

    base = {name: values(name)[0] for name in KNOWN_FIELDS}
    previous_variants = [base, {name: values(name)[-1] for name in KNOWN_FIELDS}]
    used = [name for name in variables if name in _KNOWN]
    axes: list[tuple[Any, ...]] = [values(name) for name in used]
    if PREVIOUS in variables:
        axes.append(tuple(previous_variants))
    if math.prod(len(axis) for axis in axes) <= _MAX_SAMPLES:
        combinations: Iterable[tuple[Any, ...]] = itertools.product(*axes)
    else:
        longest = max(len(axis) for axis in axes)
        combinations = (tuple(axis[i % len(axis)] for axis in axes) for i in range(longest))
    for combination in combinations:
        record = {**base, **dict(zip(used, combination, strict=False))}
        previous = combination[-1] if PREVIOUS in variables else base
        yield record, previous


def _to_cel(value: JSONValue | _Missing) -> CelScalar | _Missing:
    """A record's value as CEL sees it; ``_MISSING`` for lists, maps and absent values."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return float(value)
    if isinstance(value, list | dict):
        return _MISSING
    return value


def _scalars(record: Mapping[str, JSONValue]) -> dict[str, CelScalar]:
    out: dict[str, CelScalar] = {}
    for name, raw in record.items():
        value = _to_cel(raw)
        if value is not _MISSING:
            out[name] = value
    return out


def _cel_type(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "bool", int: "int", float: "double", str: "string", list: "list", dict: "map"}
    return names.get(type(value), type(value).__name__)


def _names_missing(exc: BaseException | None) -> set[str]:
    """The variable or map key that ``exc`` (from ``cel``) says is missing, if any."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return {exc.args[0]}
    if isinstance(exc, RuntimeError) and (match := _UNDEFINED.search(str(exc))):
        return {match[1]}
    return set()


def _problem(exc: BaseException, variables: tuple[str, ...]) -> str:
    for name in _names_missing(exc):
        if isinstance(exc, KeyError):
            return f"no such key {name!r} (for previous.{name}, guard it with has(previous.{name}))"
        if name in variables:
            return f"the record has no field {name!r}"
        return f"unknown function {name!r}, or not one for these arguments (a null field?)"
    return str(exc).rstrip(".")


def _syntax_message(text: str, message: str) -> str:
    match = _POSITION.search(message)
    if match is None:
        return f"syntax error in expression {text!r}: {message}"
    line, column = int(match[1]), int(match[2])
    reason = _OPERAND_SET.sub("a value", match[3])
    reason = reason.replace("mismatched input '<EOF>'", "unexpected end of expression,")
    reason = reason.replace("'<EOF>'", "the end")
    lines = text.split("\n")
    excerpt = lines[line - 1].rstrip("\r") if line <= len(lines) else ""
    caret = "".join(c if c == "\t" else " " for c in excerpt[: column - 1]) + "^"
    return (
        f"syntax error in expression at line {line}, column {column}: {reason}\n"
        f"    {excerpt}\n    {caret}"
    )


def _unknown_message(text: str, name: str, shown: str, fields: frozenset[str]) -> str:
    guess = difflib.get_close_matches(name, sorted(fields), n=1)
    if guess:
        hint = f"; did you mean {guess[0]!r}?"
    else:
        hint = f"; the fields are {', '.join(KNOWN_FIELDS)}"
    return f"expression {text!r} reads an unknown field {shown!r}{hint}"
