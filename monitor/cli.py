"""The command line: parse arguments -> load config -> configure logging -> run.

Exit codes (:class:`~monitor.exitcodes.Exit`): 0 success; 1 the source could not be fetched or
parsed (or another runtime failure); 2 the configuration or the command line is wrong, or the
state database is another process's; 3 (``once``) a notification is still undelivered and stays
queued. A user error is one clear message, never a traceback.

Everything heavy (aiohttp, the scheduler, pydantic, the sinks, the simulator) is imported by the
command that needs it, so ``--version``, ``--help`` and ``check-config`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import __version__
from monitor.errors import (
    ConfigError,
    ControlError,
    MonitorError,
    SchemaTooNewError,
    StateLockedError,
)
from monitor.exitcodes import Exit

if TYPE_CHECKING:
    from datetime import datetime

    from monitor.config import Config
    from monitor.models import Notification

DEMO_INTERVAL = "2s"
#: Seconds after the demo starts when it sends a digest of what it showed.
DEMO_DIGEST_AFTER = 60.0
#: The commands that read a configuration file (``--config``).
WITH_CONFIG = (
    "run",
    "once",
    "check-config",
    "status",
    "test-sink",
    "silence",
    "ack",
    "notifications",
    "history",
    "digest",
)
CONFIG_HELP = "TOML file (default: $BALANCE_MONITOR_CONFIG, else ./config.toml)"


def _duration_text(text: str) -> str:
    """A duration as ``[schedule] interval`` takes it (``"15s"``, ``"1h30m"``, ``"90"``)."""
    from monitor.config import parse_duration  # pydantic: only for a command that needs it

    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None
    return text


def _seconds(text: str) -> float:
    from monitor.config import parse_duration

    return parse_duration(_duration_text(text)).total_seconds()


def _moment_text(text: str) -> str:
    """``--since``/``--until``: a duration ago (``7d``) or an ISO 8601 time."""
    from datetime import UTC, datetime

    from monitor.history import parse_moment

    try:
        parse_moment(text, datetime.now(tz=UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _SeriesFields:
    """The tracked fields ``history --field`` takes (read from the models when asked)."""

    def _names(self) -> tuple[str, ...]:
        from monitor.models import SERIES_FIELDS

        return SERIES_FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()


class _Scenarios:
    """The simulator's scenarios, read when ``fake-api`` parses or prints its help (the simulator
    imports aiohttp: building the parser must not)."""

    def _names(self) -> tuple[str, ...]:
        from monitor.simulator import SCENARIOS

        return tuple(SCENARIOS)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balance-monitor",
        description="Watch brokerage account balances and alert on what changes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        dest="config_before",
        type=Path,
        default=None,
        help=f"{CONFIG_HELP}; also accepted after the command",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
        return sub

    with_config("run", "Run the daemon: poll on schedule, alert, deliver.")
    with_config("once", "One cycle: poll, diff, evaluate, deliver (bounded), exit.")
    with_config("check-config", "Validate the configuration and print a summary.")
    status = with_config("status", "Show state, firing alerts and the outbox (no API calls).")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    history = with_config(
        "history",
        "Export an account's balances over time (the dashboard's data; no API calls).",
    )
    history.add_argument("account", metavar="ACCOUNT", help="the account number")
    history.add_argument(
        "--field",
        action="append",
        choices=_SeriesFields(),
        metavar="F",
        help="a tracked field, repeatable (default: every one): %(choices)s",
    )
    history.add_argument(
        "--since", default="7d", type=_moment_text, help="a duration ago or an ISO time (7d)"
    )
    history.add_argument(
        "--until", default=None, type=_moment_text, help="a duration ago or an ISO time (now)"
    )
    history.add_argument("--format", choices=("table", "csv", "json"), default="table")
    history.add_argument("--source", default=None, help="the source, when several have it")
    history.add_argument(
        "--points",
        type=int,
        default=0,
        help="downsample each series to at most this many points (min/max per bucket, at"
        " least 4; default 0: every point, as stored)",
    )
    test_sink = with_config("test-sink", "Send a labelled test notification through one sink.")
    test_sink.add_argument("name", help="the sink's name in the config")
    from monitor.cli_actions import add_arguments as add_action_commands

    add_action_commands(commands, CONFIG_HELP)
    from monitor.cli_digest import add_arguments as add_digest_command

    add_digest_command(commands, CONFIG_HELP)

    init = commands.add_parser(
        "init", help="Write the commented example configuration to start from."
    )
    init.add_argument(
        "path", nargs="?", default="config.toml", help="where (default config.toml; - prints it)"
    )

    demo = commands.add_parser(
        "demo", help="Run against a built-in simulated API with bundled rules (no config needed)."
    )
    demo.add_argument(
        "--interval",
        type=_duration_text,
        default=DEMO_INTERVAL,
        help="how often the simulated account changes (default 2s; with --poll: poll interval)",
    )
    demo.add_argument(
        "--poll",
        action="store_true",
        help="poll every --interval instead of listening to the account stream",
    )
    demo.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        help="stop after this long (e.g. 60, 90s, 5m; default: until Ctrl-C)",
    )
    fake = commands.add_parser("fake-api", help="Serve the simulated balances API on its own.")
    fake.add_argument("--port", type=int, default=8080)
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--token", default=None, help="bearer token it accepts (default: the demo's)")
    fake.add_argument(
        "--scenario",
        choices=_Scenarios(),
        default="demo",
        metavar="SCENARIO",  # argparse would list the choices now, importing the simulator
        help="%(choices)s (default: %(default)s)",
    )
    fake.add_argument(
        "--tick",
        type=_seconds,
        default=None,
        help="advance the scenario every TICK by itself (its stream pushes each step) instead "
        "of once per answer, e.g. 2s",
    )
    return parser


def _config_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path | None:
    """``--config`` from before or after the command (the same path if both)."""
    before: Path | None = args.config_before
    after: Path | None = getattr(args, "config", None)
    if args.command not in WITH_CONFIG:
        if before is not None:
            parser.error(f"{args.command} reads no --config")
        return None
    if before is not None and after is not None and before != after:
        parser.error(f"--config given twice ({before}, {after})")
    return after if after is not None else before


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace, ``config`` from either side of the command; a wrong
    one exits 2 with argparse's message."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.config = _config_path(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(_dispatch(args))
    except ConfigError as exc:
        _err(f"error: {exc}")
        if exc.problems != [str(exc)]:
            for problem in exc.problems:
                _err("  " + problem.replace("\n", "\n    "))
        return Exit.CONFIG
    except (StateLockedError, SchemaTooNewError) as exc:  # a restart would meet it again
        _err(f"error: {exc}")
        return Exit.CONFIG
    except ControlError as exc:  # a silence or an ack asked for that cannot be made
        _err(f"error: {exc}")
        return Exit.CONFIG
    except MonitorError as exc:
        _err(f"error: {exc}")
        return Exit.SOURCE_FAILED
    except KeyboardInterrupt:
        return Exit.OK
    except BrokenPipeError:  # stdout's reader went away (`| head`): stop, without a traceback
        _drop_stdout()
        return Exit.SOURCE_FAILED


def _drop_stdout() -> None:
    """Point stdout at the null device, so the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "init":
        return _init(args.path)
    if command == "demo":
        return _demo(args.interval, args.duration, stream=not args.poll)
    if command == "fake-api":
        return _fake_api(args.host, args.port, args.token, args.scenario, args.tick)
    from monitor.config import default_config_path, load_config

    path: Path = args.config if args.config is not None else default_config_path()
    config = load_config(path)
    if command == "check-config":
        return _check_config(path, config)
    import asyncio

    if command == "status":
        return asyncio.run(_status(config, as_json=args.json))
    if command in ("silence", "ack", "notifications"):
        from monitor import cli_actions

        run = {
            "silence": cli_actions.run_silence,
            "ack": cli_actions.run_ack,
            "notifications": cli_actions.run_notifications,
        }[command]
        return asyncio.run(run(config, args, _out))
    if command == "history":
        return asyncio.run(_history(config, args))
    from monitor.logs import configure as configure_logging

    configure_logging(config.log.level, config.log.format)  # on stderr: stdout stays the output
    if command == "digest":
        from monitor.cli_digest import run_digest

        return asyncio.run(run_digest(config, args, _out))
    if command == "run":
        return asyncio.run(_run(config, path))
    if command == "once":
        return asyncio.run(_once(config))
    return asyncio.run(_test_sink(config, args.name))


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------- commands


def _check_config(path: Path, config: Config) -> int:
    from monitor.config.root import plural
    from monitor.config.sinks import check_sinks

    if problems := check_sinks(config.sinks):
        raise ConfigError(f"{path}: {plural(len(problems), 'problem')}", problems)
    _out(f"OK {path}: {config.summary()}")
    for note in config.missing_secrets():
        _err(f"note: {note} (needed by run, once and test-sink)")
    return Exit.OK


async def _run(config: Config, path: Path) -> int:
    import asyncio

    from monitor.daemon import Daemon, install_signal_handlers

    stop, reload = asyncio.Event(), asyncio.Event()
    install_signal_handlers(stop, reload)
    return await Daemon(config, config_path=path).run(stop, reload)


async def _status(config: Config, *, as_json: bool) -> int:
    from datetime import UTC, datetime

    from monitor import status
    from monitor.store import open_store

    path = config.state.path
    if not config.state.postgres and not path.exists():
        raise MonitorError(f"no state database at {path} yet: the monitor has not run")
    store = await open_store(config.state, readonly=True)
    try:
        data = await status.collect(store, datetime.now(tz=UTC), config.mute, config.rules)
    finally:
        await store.close()
    _out(status.to_json(data) if as_json else status.render(data))
    return Exit.OK


async def _history(config: Config, args: argparse.Namespace) -> int:
    """The account's series, read-only (the daemon may be running), by the dashboard's code."""
    from datetime import UTC, datetime

    from monitor import history
    from monitor.models import SERIES_FIELDS
    from monitor.store import open_store

    path = config.state.path
    if not config.state.postgres and not path.exists():
        raise MonitorError(f"no state database at {path} yet: the monitor has not run")
    if args.points and args.points < 4:
        raise ConfigError("--points: at least 4 (or 0 for every point)")
    now = datetime.now(tz=UTC)
    since = history.parse_moment(args.since, now).timestamp()
    until = history.parse_moment(args.until, now).timestamp() if args.until else now.timestamp()
    if since >= until:
        raise ConfigError("--since must be before --until")
    fields = list(dict.fromkeys(args.field)) if args.field else list(SERIES_FIELDS)
    store = await open_store(config.state, readonly=True)
    try:
        try:
            account = await history.find_account(store, args.account, args.source)
        except history.UnknownAccountError as exc:
            raise MonitorError(f"{exc} in {store.location}") from None
        series = await history.account_history(
            store,
            source=account.source,
            account_number=account.account_number,
            fields=fields,
            since=since,
            until=until,
            limit=args.points or None,
        )
    finally:
        await store.close()
    _out(history.export(account, since, until, series, args.format))
    return Exit.OK


async def _once(config: Config) -> int:
    from monitor.daemon import run_once
    from monitor.models import DEFAULT_SOURCE

    code, outcome, pending = await run_once(config)
    if not outcome.ok:
        where = "" if outcome.source in ("", DEFAULT_SOURCE) else f" (source {outcome.source})"
        _err(f"error: poll failed{where}: {outcome.error}")
    if pending:
        _err(
            f"error: {pending} notification(s) still undelivered; they stay queued for the next run"
        )
    if outcome.ok:
        undelivered = f", {pending} undelivered (queued for the next run)" if pending else ""
        _out(
            f"polled {outcome.accounts} accounts: {outcome.changed} changed, "
            f"{outcome.notifications} notifications{undelivered}"
        )
    return code


def test_notification(sink: str, now: datetime) -> Notification:
    """A notification that says plainly it is a test."""
    from monitor.models import Alert, Notification, Severity, Status

    alert = Alert(
        status=Status.FIRING,
        fingerprint=f"test-{sink}-{int(now.timestamp())}",
        rule="test",
        type="test",
        severity=Severity.INFO,
        account_number=None,
        field=None,
        previous=None,
        current=None,
        summary=f"TEST: balance-monitor test notification through sink '{sink}'; no action needed",
        observed_at=now,
    )
    return Notification(id=f"test-{now.strftime('%Y%m%dT%H%M%S%f')}", alert=alert)


async def _test_sink(config: Config, name: str) -> int:
    from dataclasses import replace
    from datetime import UTC, datetime

    import aiohttp

    from monitor.errors import SinkError
    from monitor.models import Notification, Status
    from monitor.runtime import require_secrets
    from monitor.sinks.registry import build_sink

    found = [(i, s) for i, s in enumerate(config.sinks) if s.name == name]
    if not found:
        known = ", ".join(s.name for s in config.sinks)
        raise ConfigError(f"no sink named '{name}' (configured: {known})")
    index, sink_config = found[0]
    require_secrets(sink_config.secret_refs(index))
    firing = test_notification(name, datetime.now(tz=UTC))
    sent = [firing]
    if sink_config.TRACKS_STATE:  # close the test alert (incident) it opens at once
        ended = replace(firing.alert, status=Status.RESOLVED, observed_at=datetime.now(tz=UTC))
        sent.append(Notification(id=f"{firing.id}-resolved", alert=ended))
    async with aiohttp.ClientSession() as session:
        sink = build_sink(sink_config, index=index, session=session)
        try:
            for notification in sent:
                await sink.send(notification)
        except SinkError as exc:
            _err(f"error: sink '{name}' ({sink_config.type}): {exc}")
            return Exit.SOURCE_FAILED
        finally:
            await sink.aclose()
    what = "a test notification" if len(sent) == 1 else "a test alert, firing then resolved,"
    _out(f"sent {what} through sink '{name}' ({sink_config.type})")
    return Exit.OK


def _init(path: str) -> int:
    from monitor import example

    if path == "-":
        sys.stdout.buffer.write(example.example_config())
        sys.stdout.flush()
        return Exit.OK
    example.write_example(Path(path))
    _out(example.next_steps(Path(path)))
    return Exit.OK


# ---------------------------------------------------------------------- demo and simulator


def _demo(interval: str, duration: float | None, *, stream: bool = True) -> int:
    import asyncio

    return asyncio.run(_demo_main(interval, duration, stream=stream))


async def _demo_main(interval: str, duration: float | None, *, stream: bool = True) -> int:
    import asyncio
    import tempfile
    from datetime import UTC, datetime, timedelta

    from monitor.daemon import install_signal_handlers, run_daemon
    from monitor.demo import banner as demo_banner
    from monitor.demo import configure_logging as demo_logging
    from monitor.demo import demo_config
    from monitor.simulator import Simulator, start

    stop = asyncio.Event()
    install_signal_handlers(stop)
    from monitor.config import parse_duration

    step = parse_duration(interval)
    # Streaming, the account changes by itself every step and the stream pushes it at once.
    sim = Simulator(tick=step.total_seconds() if stream else None)
    runner, url = await start(sim)
    try:
        with tempfile.TemporaryDirectory(prefix="balance-monitor-demo-") as tmp:
            config = demo_config(
                url,
                Path(tmp),
                interval,
                stream=stream,
                listen=f"127.0.0.1:{_free_port()}",
                digest_at=datetime.now(tz=UTC) + timedelta(seconds=DEMO_DIGEST_AFTER),
            )
            demo_logging(width=max(len(rule.name) for rule in config.rules))
            _out(demo_banner(config, url, step))
            if duration is not None:
                asyncio.get_running_loop().call_later(duration, stop.set)
            return await run_daemon(config, stop)
    finally:
        await runner.cleanup()


def _free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (for the demo's dashboard)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fake_api(
    host: str, port: int, token: str | None, scenario: str, tick: float | None = None
) -> int:
    import asyncio

    from monitor.daemon import install_signal_handlers
    from monitor.simulator import DEMO_TOKEN, Simulator, serve_forever

    accepted = token if token is not None else DEMO_TOKEN

    async def serve() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)

        def ready(url: str) -> None:
            _out(f"fake balances API on {url} (scenario {scenario}); Ctrl-C to stop")

        sim = Simulator(token=accepted, scenario=scenario, tick=tick)
        await serve_forever(sim, host, port, stop, ready)

    try:
        asyncio.run(serve())
    except OSError as exc:
        _err(f"error: cannot listen on {host}:{port}: {exc.strerror}")
        return Exit.SOURCE_FAILED
    return Exit.OK
