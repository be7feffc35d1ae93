"""``balance-monitor init [PATH]``: the real CLI writes the packaged example configuration, never
over an existing file, and says what to do next."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from e2e_helpers import Cli, Result, child_env

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Cli]:
    """The CLI, run in the test's folder (no API token: init and check-config need none)."""
    runner = Cli(tmp_path, child_env())
    try:
        yield runner
    finally:
        await runner.aclose()


def assert_clean(result: Result) -> None:
    assert "Traceback" not in result.output, result.output


async def test_init_writes_the_example_and_says_what_next(cli: Cli, tmp_path: Path) -> None:
    """Without a path it writes ./config.toml, the example byte for byte, and prints the next
    steps, which name that file."""
    result = await cli.run("init")

    assert result.code == 0, result.output
    written = tmp_path / "config.toml"
    assert written.read_bytes() == EXAMPLE.read_bytes()
    assert result.stdout.startswith("wrote config.toml: the commented example configuration\n")
    assert "balance-monitor check-config --config config.toml" in result.stdout
    assert "balance-monitor run --config config.toml" in result.stdout
    assert result.stderr == ""


async def test_the_written_file_passes_check_config(cli: Cli, tmp_path: Path) -> None:
    """What init writes is a valid configuration as it stands (secrets it cannot read are
    notes, not errors)."""
    written = tmp_path / "monitor.toml"
    assert (await cli.run("init", written)).code == 0

    result = await cli.run("check-config", "--config", written)

    assert result.code == 0, result.output
    assert result.stdout.startswith(f"OK {written}: ")


async def test_init_never_overwrites(cli: Cli, tmp_path: Path) -> None:
    """An existing file is left alone: exit 2, one line saying why and what to do instead."""
    existing = tmp_path / "config.toml"
    existing.write_text("# mine\n", encoding="utf-8")

    result = await cli.run("init")

    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: config.toml already exists; not overwriting it "
        "(remove it first, or give init another path)\n"
    )
    assert existing.read_text(encoding="utf-8") == "# mine\n"


async def test_init_never_follows_a_link(cli: Cli, tmp_path: Path) -> None:
    """A symbolic link at the path, even a dangling one, counts as an existing file."""
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "elsewhere.toml")

    result = await cli.run("init")

    assert result.code == 2
    assert "already exists" in result.stderr
    assert not (tmp_path / "elsewhere.toml").exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("missing/config.toml", "no such directory", id="no-folder"),
        pytest.param(".", "is a directory", id="a-folder"),
    ],
)
async def test_init_cannot_write_is_a_clear_error(cli: Cli, path: str, message: str) -> None:
    """A path init cannot write is exit 2 with the reason, never a traceback."""
    result = await cli.run("init", path)

    assert result.code == 2
    assert result.stderr.startswith(f"error: cannot write {path}: "), result.stderr
    assert message in result.stderr
    assert_clean(result)


async def test_init_dash_prints_the_example(cli: Cli, tmp_path: Path) -> None:
    """``init -`` prints the example on standard output and writes no file (for a container:
    ``docker run --rm balance-monitor init - > config.toml``)."""
    result = await cli.run("init", "-")

    assert result.code == 0
    assert result.stdout == EXAMPLE.read_text(encoding="utf-8")
    assert result.stderr == ""
    assert not (tmp_path / "config.toml").exists()
