"""The command line: parse arguments -> load config -> configure logging -> run.

Exit codes: 0 success; 1 the source could not be fetched or parsed (or another runtime
failure); 2 the configuration or the command line is wrong; 3 (``once``) a notification is
still undelivered and stays queued. A user error is one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from monitor import __version__, example, status
from monitor.config import (
    Config,
    default_config_path,
    load_config,
)
from monitor.config.root import plural
from monitor.daemon import Daemon, Exit, install_signal_handlers, run_daemon, run_once
from monitor.demo import banner as demo_banner
from monitor.demo import configure_logging as demo_logging
from monitor.demo import demo_config
from monitor.errors import ConfigError, MonitorError, SinkError
from monitor.logs import configure as configure_logging
from monitor.models import DEFAULT_SOURCE, Alert, Notification, Severity, Status
from monitor.simulator import DEMO_TOKEN, SCENARIOS, Simulator, serve_forever, start
from monitor.sinks.registry import build_sink, check_sinks
from monitor.store import open_store

DEMO_INTERVAL = "2s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balance-monitor",
        description="Watch brokerage account balances and alert on what changes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument(
            "--config",
            type=Path,
            default=None,
            help="TOML file (default: $BALANCE_MONITOR_CONFIG, else ./config.toml)",
        )
        return sub

    with_config("run", "Run the daemon: poll on schedule, alert, deliver.")
    with_config("once", "One cycle: poll, diff, evaluate, deliver (bounded), exit.")
    with_config("check-config", "Validate the configuration and print a summary.")
    status = with_config("status", "Show state, firing alerts and the outbox (no API calls).")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    test_sink = with_config("test-sink", "Send a labelled test notification through one sink.")
    test_sink.add_argument("name", help="the sink's name in the config")

    init = commands.add_parser(
        "init", help="Write the commented example configuration to start from."
    )
    init.add_argument(
        "path", nargs="?", default="config.toml", help="where (default config.toml; - prints it)"
    )

    demo = commands.add_parser(
        "demo", help="Run against a built-in simulated API with bundled rules (no config needed)."
    )
    demo.add_argument("--interval", default=DEMO_INTERVAL, help="poll interval (default 2s)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    fake = commands.add_parser("fake-api", help="Serve the simulated balances API on its own.")
    fake.add_argument("--port", type=int, default=8080)
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--token", default=DEMO_TOKEN, help="bearer token it accepts")
    fake.add_argument("--scenario", choices=SCENARIOS, default="demo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(_dispatch(args))
    except ConfigError as exc:
        _err(f"error: {exc}")
        if exc.problems != [str(exc)]:
            for problem in exc.problems:
                _err("  " + problem.replace("\n", "\n    "))
        return Exit.CONFIG
    except MonitorError as exc:
        _err(f"error: {exc}")
        return Exit.SOURCE_FAILED
    except KeyboardInterrupt:
        return Exit.OK


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "init":
        return _init(args.path)
    if command == "demo":
        return _demo(args.interval, args.duration)
    if command == "fake-api":
        return _fake_api(args.host, args.port, args.token, args.scenario)
    path: Path = args.config if args.config is not None else default_config_path()
    config = load_config(path)
    if command == "check-config":
        return _check_config(path, config)
    if command == "status":
        return asyncio.run(_status(config, as_json=args.json))
    configure_logging(config.log.level, config.log.format)
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
    if problems := check_sinks(config.sinks):
        raise ConfigError(f"{path}: {plural(len(problems), 'problem')}", problems)
    _out(f"OK {path}: {config.summary()}")
    for note in config.missing_secrets():
        _err(f"note: {note} (needed by run, once and test-sink)")
    return Exit.OK


async def _run(config: Config, path: Path) -> int:
    stop, reload = asyncio.Event(), asyncio.Event()
    install_signal_handlers(stop, reload)
    return await Daemon(config, config_path=path).run(stop, reload)


async def _status(config: Config, *, as_json: bool) -> int:
    path = config.state.path
    if not path.exists():
        raise MonitorError(f"no state database at {path} yet: the monitor has not run")
    store = await open_store(path, readonly=True)
    try:
        data = await status.collect(store, datetime.now(tz=UTC), config.mute)
    finally:
        await store.close()
    _out(status.to_json(data) if as_json else status.render(data))
    return Exit.OK


async def _once(config: Config) -> int:
    code, outcome, pending = await run_once(config)
    if not outcome.ok:
        where = "" if outcome.source in ("", DEFAULT_SOURCE) else f" (source {outcome.source})"
        _err(f"error: poll failed{where}: {outcome.error}")
    if pending:
        _err(
            f"error: {pending} notification(s) still undelivered; they stay queued for the next run"
        )
    if code == Exit.OK:
        _out(
            f"polled {outcome.accounts} accounts: {outcome.changed} changed, "
            f"{outcome.notifications} notifications"
        )
    return code


def test_notification(sink: str, now: datetime) -> Notification:
    """A notification that says plainly it is a test."""
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
    found = [(i, s) for i, s in enumerate(config.sinks) if s.name == name]
    if not found:
        known = ", ".join(s.name for s in config.sinks)
        raise ConfigError(f"no sink named '{name}' (configured: {known})")
    index, sink_config = found[0]
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
    if path == "-":
        sys.stdout.buffer.write(example.example_config())
        sys.stdout.flush()
        return Exit.OK
    example.write_example(Path(path))
    _out(example.next_steps(Path(path)))
    return Exit.OK


# ---------------------------------------------------------------------- demo and simulator


def _demo(interval: str, duration: float | None) -> int:
    return asyncio.run(_demo_main(interval, duration))


async def _demo_main(interval: str, duration: float | None) -> int:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    sim = Simulator()
    runner, url = await start(sim)
    try:
        with tempfile.TemporaryDirectory(prefix="balance-monitor-demo-") as tmp:
            config = demo_config(url, Path(tmp), interval)
            demo_logging(width=max(len(rule.name) for rule in config.rules))
            _out(demo_banner(config, url))
            if duration is not None:
                asyncio.get_running_loop().call_later(duration, stop.set)
            return await run_daemon(config, stop)
    finally:
        await runner.cleanup()


def _fake_api(host: str, port: int, token: str, scenario: str) -> int:
    async def serve() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)

        def ready(url: str) -> None:
            _out(f"fake balances API on {url} (scenario {scenario}); Ctrl-C to stop")

        await serve_forever(Simulator(token=token, scenario=scenario), host, port, stop, ready)

    try:
        asyncio.run(serve())
    except OSError as exc:
        _err(f"error: cannot listen on {host}:{port}: {exc.strerror}")
        return Exit.SOURCE_FAILED
    return Exit.OK
