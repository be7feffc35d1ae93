"""End to end: the command line's own contract, with the real CLI (``python -m monitor``) as a
subprocess: one process per state database, exit 2 for what a restart cannot fix, every missing
secret in one go, ``NO_COLOR``, ``--config`` on either side of the command, ``once``'s summary.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from e2e_helpers import (
    LOW_CASH_RULE,
    Cli,
    Hook,
    MakeConfig,
    Proc,
    Result,
    SimControl,
    child_env,
    low_cash,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-cli-sekrit-token-456"
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
#: The environment variables config.example.toml reads its secrets from, in file order.
EXAMPLE_SECRETS = [
    ("api.token_env", "BALANCE_MONITOR_TOKEN"),
    ("sinks[0] (ops).secret_env", "WEBHOOK_SECRET"),
    ("sinks[1] (slack).url_env", "SLACK_WEBHOOK_URL"),
    ("sinks[2] (discord).url_env", "DISCORD_WEBHOOK_URL"),
    ("sinks[3] (teams).url_env", "TEAMS_WORKFLOW_URL"),
    ("sinks[4] (telegram).bot_token_env", "TELEGRAM_BOT_TOKEN"),
    ("sinks[5] (pagerduty).routing_key_env", "PAGERDUTY_ROUTING_KEY"),
    ("sinks[7] (email).password_env", "SMTP_PASSWORD"),
    ("sinks[8] (push).url_env", "APPRISE_URL"),
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def assert_clean(result: Result | str) -> None:
    """No Python traceback reached the user, neither as text nor in a JSON log line."""
    text = result if isinstance(result, str) else result.output
    assert "Traceback" not in text, text
    assert '"exception":' not in text, text


def lines(text: str) -> list[str]:
    """The lines that are not JSON log lines."""
    return [line for line in text.splitlines() if not line.startswith("{")]


async def stopped(proc: Proc) -> int:
    proc.send(signal.SIGTERM)
    return await proc.wait()


# --------------------------------------------------------------------------- one process per state


async def test_a_second_run_on_the_same_state_database_is_refused_with_exit_2(
    tmp_path: Path, sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """While one ``run`` holds the state database, a second ``run`` and a ``once`` on it exit 2
    with one line naming the database and the holder, before polling or delivering anything;
    ``status`` still reads it; once the first stops, a new ``run`` starts."""
    config = make_config(rules=LOW_CASH_RULE)
    state = tmp_path / "state.db"
    first = await cli.start("run", "--config", config)
    await first.wait_event("baseline_recorded")
    await sim.set_accounts(low_cash())
    await first.wait_event("notification_delivered")
    polls = await sim.requests()
    began = time.monotonic()

    second = await cli.run("run", "--config", config)
    once = await cli.run("once", "--config", config)
    status = await cli.run("status", "--config", config)

    pid = first.process.pid
    for result in (second, once):
        assert result.code == 2, result.output
        assert result.stdout == ""
        assert lines(result.stderr) == [
            f"error: state.path: {state} is in use by another balance-monitor (pid {pid}); "
            "run one `run` or `once` at a time per state database"
        ], result.stderr
        assert_clean(result)
    assert status.code == 0, status.output
    assert first.running
    assert len(hook.delivered()) == 1  # nobody delivered the same change again
    # The first one's polls only: one a second (interval 1 s), however slow the machine is.
    assert await sim.requests() - polls <= int(time.monotonic() - began) + 2

    assert await stopped(first) == 0
    third = await cli.start("run", "--config", config)
    await third.wait_event("started")
    await sim.wait_requests(await sim.requests() + 1)
    assert await stopped(third) == 0
    assert len(hook.delivered()) == 1


async def test_a_killed_daemon_leaves_no_lock_behind(
    sim: SimControl, cli: Cli, make_config: MakeConfig
) -> None:
    """After ``kill -9`` of a running daemon, the operating system has released its lock: a
    new ``run`` on the same state database starts and polls."""
    config = make_config()
    first = await cli.start("run", "--config", config)
    await first.wait_event("baseline_recorded")
    first.send(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL

    second = await cli.start("run", "--config", config)
    await second.wait_event("started")
    polls = await sim.requests()
    await sim.wait_requests(polls + 1)
    assert await stopped(second) == 0


async def test_once_runs_after_once_on_the_same_state_database(
    sim: SimControl, cli: Cli, make_config: MakeConfig
) -> None:
    """``once`` releases the state database when it exits: the next ``once`` works."""
    config = make_config()
    for _ in range(2):
        result = await cli.run("once", "--config", config)
        assert result.code == 0, result.output


# --------------------------------------------------------------------------- exit 2: do not restart


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_busy_http_listen_port_exits_2_naming_the_key(
    busy_port: int, sim: SimControl, cli: Cli, make_config: MakeConfig
) -> None:
    """A ``[http] listen`` address already in use is exit 2 (systemd's
    ``RestartPreventExitStatus=2`` then stops instead of looping), with one line naming
    ``http.listen``; the state database is released for the next start."""
    config = make_config()
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[http]\nlisten = "127.0.0.1:{busy_port}"\n')

    result = await cli.run("run", "--config", config)

    assert result.code == 2, result.output
    (line,) = lines(result.stderr)
    assert line.startswith(f"error: http.listen: cannot listen on 127.0.0.1:{busy_port}: "), line
    assert "in use" in line
    assert_clean(result)


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """config.example.toml copied into the test's folder (its state path lands there)."""
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture
async def bare_cli(tmp_path: Path) -> AsyncIterator[Cli]:
    """A CLI runner without any of the example's secrets in its environment."""
    env = child_env()
    for _, name in EXAMPLE_SECRETS:
        env.pop(name, None)
    runner = Cli(tmp_path, env)
    try:
        yield runner
    finally:
        await runner.aclose()


@pytest.mark.parametrize("command", ["run", "once"])
async def test_run_and_once_name_every_missing_secret_at_once(
    command: str, tmp_path: Path, example: Path, bare_cli: Cli
) -> None:
    """With none of the example config's nine secrets set, ``run`` and ``once`` exit 2 listing
    all nine (as ``check-config`` notes them), before opening the state database."""
    result = await bare_cli.run(command, "--config", example)

    assert result.code == 2, result.output
    assert result.stdout == ""
    assert lines(result.stderr) == [
        "error: 9 secrets cannot be read",
        *(f"  {key}: environment variable {name} is not set" for key, name in EXAMPLE_SECRETS),
    ]
    assert not (tmp_path / "state.db").exists()
    assert_clean(result)


@pytest.fixture
def smtp_username_env(example: Path) -> Path:
    """The example config with the email sink's username from ``$SMTP_USERNAME`` as well."""
    text = example.read_text(encoding="utf-8")
    text = text.replace('username = "alerts@example.com"', 'username_env = "SMTP_USERNAME"', 1)
    example.write_text(text, encoding="utf-8")
    return example


async def test_test_sink_names_every_missing_secret_of_its_sink(
    smtp_username_env: Path, bare_cli: Cli
) -> None:
    """``test-sink`` needs only its sink's secrets, and names every one that is missing."""
    bare_cli.env.pop("SMTP_USERNAME", None)
    result = await bare_cli.run("test-sink", "--config", smtp_username_env, "email")

    assert result.code == 2, result.output
    assert lines(result.stderr) == [
        "error: 2 secrets cannot be read",
        "  sinks[7] (email).username_env: environment variable SMTP_USERNAME is not set",
        "  sinks[7] (email).password_env: environment variable SMTP_PASSWORD is not set",
    ]
    assert_clean(result)


# --------------------------------------------------------------------------- once


async def test_once_prints_its_summary_when_it_exits_3(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``once`` that leaves a notification queued (exit 3) still says what it polled, and how
    many notifications are undelivered, on standard output."""
    config = make_config(rules=LOW_CASH_RULE, delivery='once_deadline = "1s"')
    hook.status = 503
    await sim.set_accounts(low_cash())

    result = await cli.run("once", "--config", config)

    assert result.code == 3, result.output
    assert result.stdout == (
        "polled 2 accounts: 2 changed, 1 notifications, 1 undelivered (queued for the next run)\n"
    )
    assert_clean(result)


# --------------------------------------------------------------------------- arguments


async def test_config_is_accepted_before_the_command(
    sim: SimControl, cli: Cli, make_config: MakeConfig
) -> None:
    """``balance-monitor --config PATH COMMAND`` works as ``COMMAND --config PATH`` does."""
    config = make_config()
    before = await cli.run("--config", config, "check-config")
    after = await cli.run("check-config", "--config", config)

    assert before.code == 0, before.output
    assert before.stdout == after.stdout
    assert before.stdout.startswith(f"OK {config}: ")


async def test_config_twice_with_different_paths_is_refused(
    cli: Cli, make_config: MakeConfig, tmp_path: Path
) -> None:
    """Two different ``--config`` paths, one on each side of the command, are exit 2."""
    result = await cli.run("--config", make_config(), "check-config", "--config", tmp_path / "x")

    assert result.code == 2, result.output
    assert "--config" in lines(result.stderr)[-1]


async def test_demo_accepts_a_duration_with_a_unit(cli: Cli) -> None:
    """``demo --duration 2s`` takes the same durations as ``--interval`` and exits 0 on time;
    a duration that is not one is exit 2 saying what a duration looks like."""
    started = time.monotonic()
    result = await cli.run("demo", "--duration", "2s", "--interval", "1s", timeout=30)
    bad = await cli.run("demo", "--duration", "soon")

    assert result.code == 0, result.output
    assert time.monotonic() - started < 20
    assert bad.code == 2, bad.output
    assert "--duration" in bad.stderr
    assert "must be a duration like '30s'" in bad.stderr


# --------------------------------------------------------------------------- NO_COLOR


def _on_a_terminal(args: list[str], env: dict[str, str], timeout: float) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it wrote."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        follower = -1
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return b"".join(chunks).decode("utf-8", errors="replace")


@pytest.mark.parametrize(("no_color", "coloured"), [("1", False), ("", True), (None, True)])
async def test_console_logs_honour_no_color_on_a_terminal(
    no_color: str | None, coloured: bool
) -> None:
    """On a terminal the console logs are coloured unless ``NO_COLOR`` is set and not empty
    (https://no-color.org)."""
    env = child_env()
    env.pop("NO_COLOR", None)
    if no_color is not None:
        env["NO_COLOR"] = no_color
    output = await asyncio.to_thread(
        _on_a_terminal, ["demo", "--duration", "2s", "--interval", "1s"], env, 30.0
    )

    assert "baseline_recorded" in output, output
    assert bool(ANSI.search(output)) is coloured, output


def test_output_into_a_closed_pipe_ends_quietly(example: Path) -> None:
    """``balance-monitor notifications | head -1``: the reader goes away before the output
    ends. The command stops without a traceback (exit 1, as a failed write)."""
    read, write = os.pipe()
    os.close(read)  # a reader that has already gone, as head after its line
    try:
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "check-config", "--config", str(example)],
            stdout=write,
            stderr=subprocess.PIPE,
            env=child_env(),
            timeout=30,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert b"BrokenPipeError" not in result.stderr
