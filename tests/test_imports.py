"""Imports flow one way: the facts of the layout (docs STYLE), read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MONITOR = Path(__file__).resolve().parent.parent / "monitor"
#: What the sinks share; every other module under monitor/sinks is a sink (or the registry).
SINKS_SHARED = {"monitor.sinks.base", "monitor.sinks.text"}
SINK_MODULES = sorted(
    path.stem
    for path in (MONITOR / "sinks").glob("*.py")
    if f"monitor.sinks.{path.stem}" not in SINKS_SHARED
    and path.stem not in ("__init__", "registry")
)
#: Modules shared by the pure rules and the sinks: no I/O library may creep in.
PURE = [
    "text.py",
    "bot_backoff.py",
    "bot_commands.py",
    "sinks/text.py",
    "downsample.py",
    "digest.py",
    "digest_data.py",
    "digest_schedule.py",
    "digest_render.py",
    *(f"rules/{p.name}" for p in (MONITOR / "rules").glob("*.py")),
]
IMPURE = {
    "aiohttp",
    "asyncio",
    "structlog",
    "sqlite3",
    "aiosmtplib",
    "monitor.http",
    "monitor.sinks",
}


def imported(relative: str) -> set[str]:
    """Every module ``relative`` (under monitor/) imports, at any depth of its code."""
    tree = ast.parse((MONITOR / relative).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_there_are_sinks_to_check() -> None:
    assert {"webhook", "email", "apprise", "slack"} <= set(SINK_MODULES)


@pytest.mark.parametrize("sink", SINK_MODULES)
def test_no_sink_imports_another(sink: str) -> None:
    """A sink reaches other sink code only through sinks.base and sinks.text."""
    own = f"monitor.sinks.{sink}"
    others = {
        name
        for name in imported(f"sinks/{sink}.py")
        if name.startswith("monitor.sinks.") and name != own
    }
    assert {name for name in others if not any(name.startswith(s) for s in SINKS_SHARED)} == set()


@pytest.mark.parametrize("module", ["source.py", "auth.py"])
def test_the_source_side_imports_no_sink(module: str) -> None:
    """The balances source and its tokens share HTTP code through monitor.http only."""
    assert {name for name in imported(module) if name.startswith("monitor.sinks")} == set()


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_stay_pure(module: str) -> None:
    """Text helpers and rules import no I/O library, no HTTP boundary and no sink."""
    names = imported(module)
    assert {n for n in names if any(n == i or n.startswith(f"{i}.") for i in IMPURE)} == set()
