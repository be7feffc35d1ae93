"""Tests for monitor.text: values as text and text cut to a limit, for rules and sinks alike."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from monitor.text import MISSING, clip, one_line, value_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (Decimal("512.250"), "512.250"),
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-3"), "-3"),
        (7, "7"),
        (True, "true"),
        (False, "false"),
        ("restricted", "restricted"),
        ({"cash": Decimal("1.10")}, '{"cash":1.10}'),
        ([1, "a"], '[1,"a"]'),
    ],
)
def test_value_text(value: Any, shown: str) -> None:
    """Money keeps its exact digits, missing values are a dash, records are JSON."""
    assert value_text(value) == shown


@pytest.mark.parametrize(("none", "shown"), [("none", "none"), ("", ""), (MISSING, "—")])
def test_value_text_names_no_value_as_asked(none: str, shown: str) -> None:
    """Rules say ``none``, Alertmanager annotations leave it empty, messages show a dash."""
    assert value_text(None, none=none) == shown
    assert value_text(Decimal("1.50"), none=none) == "1.50"


@pytest.mark.parametrize(
    ("text", "limit", "clipped"),
    [
        ("short", 5, "short"),
        ("", 3, ""),
        ("abcdef", 5, "abcd…"),
        ("ab cdef", 4, "ab…"),  # no space before the ellipsis
        ("a &amp; b", 5, "a…"),  # never inside an entity, nor after the space before it
        ("a &amp; b", 8, "a &amp;…"),
        ("x" * 500, 200, "x" * 199 + "…"),
    ],
)
def test_clip(text: str, limit: int, clipped: str) -> None:
    """At most ``limit`` characters; a cut text ends in ``…``, never after a space or inside
    an ``&…;`` entity."""
    assert clip(text, limit) == clipped
    assert len(clip(text, limit)) <= limit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("one line", "one line"),
        ("  two\r\nlines \t here ", "two lines here"),
        ("bell\x07and\x00nul", "bell and nul"),
        ("", ""),
    ],
)
def test_one_line(text: str, expected: str) -> None:
    """Line breaks, tabs and other control characters become single spaces."""
    assert one_line(text) == expected
