"""One message of Lime's account stream -> what it says. Pure.

The server sends JSON text ``{"t": <type>, "data": [...]}``: ``t = "b"`` carries balance
objects with the fields of ``GET /accounts`` (a fresh snapshot of the accounts it holds, and of
those only), ``t = "e"`` is an error ``{"t": "e", "code": ..., "description": ...}``, and the
other types (positions, orders, trades, and whatever the vendor adds) are not ours to read.
Balances are read exactly as a poll's body is (:mod:`monitor.parse`): the same validation,
the same reuse of unchanged records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from monitor.encoding import loads
from monitor.errors import ParseError
from monitor.models import Account, ParseResult
from monitor.parse import InexactError, parse_items, parse_records
from monitor.text import one_line

__all__ = ["BALANCES", "ERROR", "StreamMessage", "read_message"]

BALANCES: Final = "b"
ERROR: Final = "e"
#: The most of an error message's code or description a log line quotes.
_TEXT: Final = 200


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """A message's type (``"b"``, ``"e"`` or another), with the balances of a ``"b"`` and the
    code and description of an ``"e"`` (cut to one short line)."""

    type: str
    balances: ParseResult | None = None
    code: str | None = None
    description: str | None = None


def read_message(text: str | bytes, previous: Mapping[str, Account] | None = None) -> StreamMessage:
    """What one text message of the stream says. ``ParseError`` when it is not a JSON object
    with a text ``t``, or when a balances message has no list in ``data``."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"stream message is not JSON: {exc.msg}") from None
    if not isinstance(message, dict):
        raise ParseError("stream message is not a JSON object")
    kind = message.get("t")
    if not isinstance(kind, str):
        raise ParseError("stream message has no type (t)")
    if kind == ERROR:
        return StreamMessage(
            kind, code=_short(message.get("code")), description=_short(message.get("description"))
        )
    if kind != BALANCES:
        return StreamMessage(one_line(kind)[:_TEXT])
    items = message.get("data")
    if not isinstance(items, list):
        raise ParseError("balances message has no list of accounts in data")
    try:
        return StreamMessage(kind, balances=parse_items(items, previous))
    except InexactError:
        try:  # a number beyond a float's digits: read it as a Decimal
            exact: Any = loads(text)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"stream message is not usable JSON: {exc}") from None
        return StreamMessage(kind, balances=parse_records(exact["data"]))


def _short(value: object) -> str | None:
    """A code or a description as one line of at most :data:`_TEXT` characters."""
    if value is None:
        return None
    return one_line(str(value))[:_TEXT]
