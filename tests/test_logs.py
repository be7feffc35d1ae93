"""Log set-up: JSON off a terminal, console lines on one, coloured unless ``NO_COLOR``."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from monitor.logs import configure


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def logged(stream: io.StringIO, fmt: str | None = None) -> str:
    configure("info", fmt, stream=stream)
    structlog.get_logger("test").warning("poll_failed", source="default")
    return stream.getvalue()


@pytest.mark.parametrize(
    ("no_color", "coloured"),
    [
        pytest.param(None, True, id="unset"),
        pytest.param("", True, id="empty"),
        pytest.param("1", False, id="set"),
        pytest.param("no", False, id="any-value"),
    ],
)
def test_console_colours_follow_no_color_on_a_terminal(
    no_color: str | None, coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, console lines are coloured unless NO_COLOR is set to a non-empty value
    (https://no-color.org)."""
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    text = logged(Terminal())
    assert "poll_failed" in text
    assert ("\x1b[" in text) is coloured


def test_off_a_terminal_lines_are_json_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal the default format is JSON lines, never coloured."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    text = logged(io.StringIO())
    assert text.startswith("{")
    assert "\x1b[" not in text
