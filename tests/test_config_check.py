"""``check-config`` as a subprocess: a bad file is exit 2 and problem lines naming keys, never a
traceback or exit 1; whatever would stop ``run`` is found here (ranges, templates, sinks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from e2e_helpers import Cli, Result, child_env

pytestmark = pytest.mark.e2e

GOOD = """\
[api]
url = "http://127.0.0.1:9/accounts"
token = "t"

[[sinks]]
name = "console"
type = "log"
"""


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Cli]:
    runner = Cli(tmp_path, child_env())
    try:
        yield runner
    finally:
        await runner.aclose()


async def check(cli: Cli, tmp_path: Path, text: str) -> Result:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return await cli.run("check-config", "--config", path)


def assert_refused(result: Result, *lines: str) -> None:
    """Exit 2, the problem lines on stderr, and nothing like a traceback."""
    assert result.code == 2, result.output
    assert "Traceback" not in result.output, result.output
    for line in lines:
        assert f"\n  {line}" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            GOOD + '[schedule]\ninterval = "3000000d"\n',
            "schedule.interval: must be at most 1d",
            id="interval-beyond-its-range",
        ),
        pytest.param(
            GOOD + '[[sinks]]\nname = "hook"\ntype = "webhook"\n'
            'url = "http://127.0.0.1:99999/hook"\n',
            "sinks[1] (hook).url: port must be a number from 1 to 65535",
            id="url-with-an-invalid-port",
        ),
        pytest.param(
            GOOD
            + '[[rules]]\nname = "deep"\ntype = "restriction_change"\nsummary = "{{ '
            + "(" * 3000
            + "1"
            + ")" * 3000
            + ' }}"\n',
            "rules[0] (deep).summary: bad template: ",
            id="template-nested-too-deeply",
        ),
        pytest.param(
            GOOD + '[[rules]]\nname = "t"\ntype = "restriction_change"\n'
            "summary = \"{{ 'x' | truncate(-1) }}\"\n",
            "rules[0] (t).summary: bad template: ",
            id="template-assertion",
        ),
    ],
)
async def test_check_config_names_the_key_of_what_would_crash_run(
    cli: Cli, tmp_path: Path, text: str, line: str
) -> None:
    """Values that used to pass check-config and then crash run (or crash check-config itself)
    are problem lines of their key, exit 2."""
    assert_refused(await check(cli, tmp_path, text), line)


async def test_toml_nested_too_deeply_is_exit_2(cli: Cli, tmp_path: Path) -> None:
    """A file whose nesting overflows the TOML parser is a syntax error, not a traceback."""
    result = await check(cli, tmp_path, GOOD + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    assert "TOML syntax error: nested too deeply" in result.stderr


async def test_check_config_notes_every_missing_secret_at_once(cli: Cli, tmp_path: Path) -> None:
    """Every secret check-config cannot read is a note (exit 0: this machine may not hold
    them), all of them in one run."""
    text = GOOD.replace('token = "t"', 'token_env = "TEST_UNSET_TOKEN"') + (
        '[[sinks]]\nname = "chat"\ntype = "slack"\nurl_env = "TEST_UNSET_SLACK"\n'
    )
    result = await check(cli, tmp_path, text)
    assert result.code == 0, result.output
    assert result.stderr.splitlines() == [
        "note: api.token_env: environment variable TEST_UNSET_TOKEN is not set "
        "(needed by run, once and test-sink)",
        "note: sinks[1] (chat).url_env: environment variable TEST_UNSET_SLACK is not set "
        "(needed by run, once and test-sink)",
    ]


async def test_check_config_finds_a_sink_whose_extra_is_not_installed(
    cli: Cli, tmp_path: Path
) -> None:
    """An apprise sink without the apprise package is a problem naming the sink and the extra
    to install (run would fail to start); the package is made unimportable for the CLI alone,
    by a package of the same name first on its PYTHONPATH."""
    shadow = tmp_path / "shadow" / "apprise"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no apprise here")\n', encoding="utf-8")
    cli.env = {**cli.env, "PYTHONPATH": str(shadow.parent)}
    text = GOOD + '[[sinks]]\nname = "push"\ntype = "apprise"\nurl = "json://localhost"\n'

    result = await check(cli, tmp_path, text)

    assert_refused(
        result,
        "sinks[1] (push).type: the apprise sink needs the 'apprise' extra: "
        "pip install 'balance-monitor[apprise]'",
    )
    assert result.stdout == ""
