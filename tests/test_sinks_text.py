"""The text the chat, email and Apprise sinks share (``monitor/sinks/text.py``) where the sinks'
own tests do not pin it down: whole lines within a limit."""

from __future__ import annotations

import pytest

from monitor.sinks.text import join_lines


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
