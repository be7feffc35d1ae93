"""JSON in and out with ``Decimal`` money kept exact. Pure.

The standard encoder cannot write a ``Decimal`` as a JSON number, and turning money into floats
would print float noise; :func:`dumps` writes the decimal's own digits instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from monitor.models import rfc3339

_encode_str = json.encoder.encode_basestring_ascii


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON with every non-integer number as ``Decimal``; NaN and Infinity are refused."""
    return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)


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
