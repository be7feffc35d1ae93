"""The command line in-process: its arguments, and what ``--version`` and ``--help`` import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cli import WITH_CONFIG, main, parse_args

#: What a command that only prints must not pay for (and the sinks: ``monitor.sinks.*``).
HEAVY = ("aiohttp", "apscheduler", "jinja2", "cel", "rich", "monitor.sinks", "pydantic")
GOOD = """\
[api]
url = "https://api.example.com/accounts"
token = "t"

[[sinks]]
name = "log"
type = "log"
"""


def imported_by(*args: str) -> set[str]:
    """Every module ``python -m monitor ARGS`` imports (``-X importtime`` lists them)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "monitor", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and not line.endswith("| package")
    }


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"]])
def test_printing_commands_import_nothing_heavy(args: list[str]) -> None:
    """``--version`` and ``--help`` import neither aiohttp, APScheduler, Jinja2, CEL, rich,
    pydantic nor a sink: they answer at once."""
    modules = imported_by(*args)
    assert "monitor.cli" in modules
    assert heavy(modules) == []


def test_check_config_imports_no_runtime(tmp_path: Path) -> None:
    """``check-config`` validates without the HTTP client, the scheduler or a sink."""
    path = tmp_path / "config.toml"
    path.write_text(GOOD, encoding="utf-8")
    modules = imported_by("check-config", "--config", str(path))
    assert [m for m in heavy(modules) if not m.startswith("pydantic")] == []


def test_config_before_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--config PATH`` is accepted before the command as well as after it."""
    path = tmp_path / "config.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["--config", str(path), "check-config"]) == 0
    assert main(["check-config", "--config", str(path)]) == 0
    assert main(["--config", str(path), "check-config", "--config", str(path)]) == 0
    first, second, third = capsys.readouterr().out.splitlines()
    assert first == second == third


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--config", "a.toml", "check-config", "--config", "b.toml"],
            "balance-monitor: error: --config given twice (a.toml, b.toml)",
            id="twice",
        ),
        pytest.param(
            ["--config", "a.toml", "demo"],
            "balance-monitor: error: demo reads no --config",
            id="demo",
        ),
        pytest.param(
            ["demo", "--duration", "soon"],
            "balance-monitor demo: error: argument --duration: must be a duration like '30s', "
            "'5m', '1h', '1h30m' or a number of seconds (got 'soon')",
            id="duration",
        ),
        pytest.param(
            ["demo", "--interval", "fast"],
            "balance-monitor demo: error: argument --interval: must be a duration like '30s', "
            "'5m', '1h', '1h30m' or a number of seconds (got 'fast')",
            id="interval",
        ),
    ],
)
def test_wrong_arguments_exit_2_with_one_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong command line is exit 2 and argparse's one line naming the argument."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == message


@settings(max_examples=200, deadline=None)
@given(
    command=st.sampled_from(WITH_CONFIG),
    path=st.text(min_size=1).filter(lambda p: not p.startswith("-") and "\x00" not in p),
)
def test_config_means_the_same_on_either_side_of_the_command(command: str, path: str) -> None:
    """Whatever the command and the path, ``--config PATH`` before the command, after it, or
    on both sides, is that path."""
    extras = {"test-sink": ["sink"], "silence": ["list"], "history": ["A-1"], "digest": ["close"]}
    extra = extras.get(command, [])
    after = parse_args([command, "--config", path, *extra])
    before = parse_args(["--config", path, command, *extra])
    both = parse_args(["--config", path, command, "--config", path, *extra])
    assert after.config == before.config == both.config == Path(path)
    assert after.command == before.command == command
