"""The text the chat, email and Apprise sinks share (``monitor/sinks/text.py``) where the sinks'
own tests do not pin it down: whole lines within a limit."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from store_helpers import notification

from monitor.sinks.text import facts, join_lines


@pytest.mark.parametrize(
    ("limit", "joined"),
    [
        (14, "aaaa\nbbbb\ncccc"),
        (12, "aaaa\nbbbb\n+1"),
        (11, "aaaa\n+2"),
        (6, "+3"),
    ],
)
def test_join_lines_keeps_whole_lines_and_counts_the_rest(limit: int, joined: str) -> None:
    """All lines when they fit; otherwise whole lines only, the last ones making way for a line
    that counts them, down to that line alone (the count of every line)."""
    assert join_lines(["aaaa", "bbbb", "cccc"], limit, rest=lambda n: f"+{n}") == joined


def test_a_source_down_alert_has_no_empty_account_or_field_facts() -> None:
    """``source_down`` is of a source, not an account: the chat sinks' facts (Discord fields,
    the Teams FactSet, Telegram's lines) say the source and the failures, not ``Account: —``,
    ``Field: —``, ``Previous: —``."""
    alert = replace(
        notification("n-1").alert,
        rule="source_down",
        account_number=None,
        field=None,
        previous=None,
        current=3,
        source="ib",
    )
    assert facts(alert) == {"Current": "3", "Source": "ib"}


def test_an_account_alert_has_every_fact() -> None:
    alert = replace(
        notification("n-1").alert,
        account_number="12345678@ib",
        field="cash",
        previous=Decimal("10.00"),
        current=None,
        source="ib",
    )
    assert facts(alert) == {
        "Account": "12345678@ib",
        "Field": "cash",
        "Previous": "10.00",
        "Current": "—",
        "Source": "ib",
    }
