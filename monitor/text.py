"""Values and text for people: the one value-to-text rule, the one way to cut text. Pure.

Shared by the pure rules and templates (summaries) and by the sinks (messages), so it imports
nothing but :mod:`monitor.encoding` and :mod:`monitor.models`:

- :func:`value_text`: a field value as text (money with its exact digits, records as JSON);
- :func:`clip`: text cut to a limit, ending in ``…``;
- :func:`one_line`: control characters and line breaks as single spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from monitor import encoding
from monitor.models import JSONValue

#: What a missing value reads as in messages.
MISSING = "—"
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")


def value_text(value: JSONValue, *, none: str = MISSING) -> str:
    """A field value for people: ``Decimal`` with its exact digits (``0.00000001``, never
    ``1E-8``), ``true``/``false``, records and lists as compact JSON, ``none`` for no value."""
    if value is None:
        return none
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return encoding.dumps(value)
    return str(value)


def money_text(value: Decimal) -> str:
    """An amount of money for people: grouped and to the cent (``1,234.50``), or with every
    digit it has when it has more (``0.00000001``, never rounded away)."""
    exact = value.normalize()
    exponent = exact.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        return f"{exact:,f}"
    return f"{value:,.2f}"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters; when cut, the start and ``…``, never after a space and
    never inside an ``&…;`` entity (the chat sinks clip text already escaped)."""
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[: limit - 1]).rstrip() + "…"


def one_line(text: str) -> str:
    """Control characters and line breaks as single spaces: safe in a header or a log line."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(printable.split())
