"""JSON in and out with ``Decimal`` money kept exact. Pure.

The standard encoder cannot write a ``Decimal`` as a JSON number, and turning money into floats
would print float noise; :func:`dumps` writes the decimal's own digits instead.

:data:`MAX_DEPTH` is how deeply the values we keep may nest: the parser refuses a record that
nests deeper, so whatever it accepts can be written, read back and sent.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from monitor.models import rfc3339

__all__ = ["MAX_DEPTH", "cut_deeper_than", "dumps", "loads"]

#: The deepest nesting of arrays and objects in a record we keep, the record itself counting as
#: one level. Far below what every writer and reader of it takes (orjson writes 254 levels; the
#: standard library, SQLite's JSON functions and Python's recursion about 1000), with room for
#: the notification payload around a record.
MAX_DEPTH: Final = 64

_encode_str = json.encoder.encode_basestring_ascii
#: Python's int() refuses longer digit strings (CVE-2020-10735); such numbers become Decimals.
_INT_DIGITS: Final = sys.get_int_max_str_digits() or 4300


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent past what Decimal holds (about 10**18)
        raise ValueError(f"number out of range: {text[:40]}") from None


def _integer(text: str) -> int | Decimal:
    return int(text) if len(text) < _INT_DIGITS else _decimal(text)


def loads(data: bytes | str) -> Any:
    """Parse JSON with every non-integer number as ``Decimal``; NaN and Infinity are refused.

    An integer too long for Python's ``int()`` is a ``Decimal``; a number whose exponent no
    ``Decimal`` holds is a ``ValueError``, like any other JSON this cannot read."""
    return json.loads(
        data, parse_float=_decimal, parse_int=_integer, parse_constant=_reject_constant
    )


_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def cut_deeper_than(data: bytes, depth: int) -> bytes:
    """JSON text with each array or object nested more than ``depth`` levels replaced by
    ``[]`` at level ``depth + 1``: what a decoder that gives up on deep nesting can read,
    and still deeper than ``depth`` wherever it was cut.

    Strings are skipped whole (brackets inside them are text). Text that is not JSON stays
    not JSON, though perhaps differently broken."""
    out: list[bytes] = []
    level = 0
    start = 0  # where the text not yet copied begins
    cut_at = 0  # the level whose container is being cut out, 0 when none is
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token[0] == 0x22:  # a string
            continue
        opening = token in (b"[", b"{")
        if opening:
            level += 1
            if level == depth + 1 and not cut_at:
                out.append(data[start : match.start()])
                cut_at = level
        else:
            if cut_at and level == cut_at:
                out.append(b"[]")
                start = match.end()
                cut_at = 0
            level -= 1
    if cut_at:  # a container never closed: the text stays unbalanced, not JSON
        out.append(b"[]")
    else:
        out.append(data[start:])
    return b"".join(out)


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON; ``Decimal`` as a number with its own digits, ``datetime`` as RFC 3339.

    ``default`` turns an otherwise unencodable object into something encodable.
    """
    parts: list[str] = []
    _encode(value, parts.append, default)
    return "".join(parts)


def _encode(value: Any, out: Callable[[str], Any], default: Callable[[Any], Any] | None) -> None:
    if value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, str):
        out(_encode_str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode {value} as JSON")
        out(str(value))
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, float):
        out(json.dumps(value, allow_nan=False))
    elif isinstance(value, datetime):
        out(_encode_str(rfc3339(value)))
    elif isinstance(value, Mapping):
        out("{")
        first = True
        for key, item in value.items():
            if not first:
                out(",")
            first = False
            out(_encode_str(str(key)))
            out(":")
            _encode(item, out, default)
        out("}")
    elif isinstance(value, list | tuple):
        out("[")
        for i, item in enumerate(value):
            if i:
                out(",")
            _encode(item, out, default)
        out("]")
    elif default is not None:
        _encode(default(value), out, None)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")
