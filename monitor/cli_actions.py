"""The commands that act on alerts: ``silence add|list|expire``, ``ack`` and ``notifications``.

They work with the daemon running or stopped: the store is opened with ``control=True`` (next
to a running daemon it writes only silences and acks, in short transactions; the daemon picks
them up within a couple of seconds) or read-only (``silence list``, ``notifications``).
With ``--json`` the lists are one JSON document (the shapes the HTTP API answers with).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ControlError, MonitorError
from monitor.models import DELIVERY_STATES

if TYPE_CHECKING:  # pydantic, aiohttp and the store load only for a command that runs
    from monitor.config import Config
    from monitor.silences import Silence
    from monitor.store import NotificationRecord, Store

__all__ = ["add_arguments", "run_ack", "run_notifications", "run_silence"]


def _duration(text: str) -> timedelta:
    from monitor.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"a label is KEY=VALUE (got {text!r})")
    return key, value


def _author() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"


def add_arguments(
    commands: Any,  # argparse's _SubParsersAction, which typeshed keeps private
    config_help: str,
) -> None:
    """The ``silence``, ``ack`` and ``notifications`` commands."""

    def config_option(parser: argparse.ArgumentParser) -> None:
        # SUPPRESS: a sub-command's own default must not wipe a --config given before it.
        parser.add_argument("--config", default=argparse.SUPPRESS, type=Path, help=config_help)

    silence = commands.add_parser(
        "silence", help="Silence alerts for a while, list or end silences (daemon running or not)."
    )
    config_option(silence)
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="Add a silence; prints its id.")
    config_option(add)
    add.add_argument("--rule", help="the rule's name (source_down too)")
    add.add_argument("--account", help="an account number or glob ('*@vision')")
    add.add_argument("--source", help="a source's name ([api] is 'default')")
    add.add_argument(
        "--label", action="append", type=_label, default=[], metavar="KEY=VALUE", help="repeatable"
    )
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="for_", type=_duration, metavar="DURATION", help="e.g. 2h")
    until.add_argument("--until", metavar="TIME", help="ISO 8601, or HH:MM today (local time)")
    add.add_argument("--comment", default="", help="why")
    add.add_argument("--author", default=None, help="who (default: your login name)")
    listing = actions.add_parser("list", help="The active silences (--all: ended ones too).")
    config_option(listing)
    listing.add_argument("--all", action="store_true", help="with the ended and expired ones")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    expire = actions.add_parser("expire", help="End a silence now.")
    config_option(expire)
    expire.add_argument("id", help="the silence's id")

    ack = commands.add_parser(
        "ack",
        help="Acknowledge an alert: its reminders and escalation stop for this episode.",
    )
    config_option(ack)
    ack.add_argument("id", nargs="?", help="the notification id or the alert's fingerprint")
    ack.add_argument("--rule", help="with --account: the firing alert of this rule")
    ack.add_argument("--account", help="with --rule: on this account")
    ack.add_argument("--comment", default="", help="why, or what is being done")
    ack.add_argument("--author", default=None, help="who (default: your login name)")

    notifications = commands.add_parser(
        "notifications", help="What was sent, to which sink, and every delivery attempt."
    )
    config_option(notifications)
    notifications.add_argument(
        "--since", type=_duration, default=timedelta(hours=24), help="default 24h"
    )
    notifications.add_argument("--rule")
    notifications.add_argument("--account", help="an account number or glob")
    notifications.add_argument("--sink")
    notifications.add_argument("--status", choices=DELIVERY_STATES)
    notifications.add_argument("--json", action="store_true", help="machine-readable output")


# --------------------------------------------------------------------------- silences


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _matchers_text(s: Silence) -> str:
    parts = [f"{k}={v}" for k, v in s.matchers().items() if k != "labels"]
    parts += [f"label {k}={v}" for k, v in s.labels.items()]
    return ", ".join(parts)


async def run_silence(config: Config, args: argparse.Namespace, out: Any) -> int:
    """``silence add|list|expire``."""
    from monitor.control import SilenceRequest, add_silence, expire_silence
    from monitor.silences import parse_until, resolve_account
    from monitor.store import open_store

    now = datetime.now(tz=UTC)
    if args.action == "list":
        store = await _reader(config)
        if store is None:
            silences: list[Silence] = []
        else:
            try:
                silences = await store.silences(include_ended=args.all, now=now.timestamp())
            finally:
                await store.close()
        _print_silences(silences, now.timestamp(), as_json=args.json, out=out)
        return 0
    store = await open_store(config.state, control=True)
    try:
        if args.action == "expire":
            ended = await expire_silence(store, args.id, now.timestamp())
            out(f"silence {ended.id} ended at {_local(ended.until)}")
            return 0
        if args.for_ is not None:
            ends = now + args.for_
        else:
            try:
                ends = parse_until(args.until, now.astimezone())
            except ValueError as exc:
                raise ControlError(f"--until: {exc}") from None
        account = args.account
        if account is not None:  # as the bot's /silence and /balance read it
            numbers = (r.account_number for r in await store.accounts())
            account, known = resolve_account(numbers, account)
            if not known:
                sys.stderr.write(
                    f"warning: no polled account matches '{account}': the silence holds nothing"
                    " until one does (`status` lists the accounts)\n"
                )
        request = SilenceRequest(
            ends_at=ends.timestamp(),
            rule=args.rule,
            account=account,
            source=args.source,
            labels=dict(args.label),
            comment=args.comment,
            author=args.author if args.author is not None else _author(),
        )
        made = await add_silence(store, request, config, now.timestamp())
    finally:
        await store.close()
    out(made.id)
    return 0


def _print_silences(silences: Sequence[Silence], now: float, *, as_json: bool, out: Any) -> None:
    from monitor import encoding
    from monitor.control import silence_json

    if as_json:
        out(encoding.dumps([silence_json(s, now) for s in silences]))
        return
    if not silences:
        out("no silences")
        return
    for s in silences:
        state = "active" if s.active(now) else "expired" if s.expired_at else "ended"
        if s.starts_at > now:
            state = "pending"
        until = _local(s.until)
        who = f" by {s.author}" if s.author else ""
        why = f": {s.comment}" if s.comment else ""
        out(f"{s.id}  {state:<7}  until {until}  {_matchers_text(s)}{who}{why}")


async def _reader(config: Config) -> Store | None:
    """The store opened read-only, or ``None`` when the monitor has not run yet."""
    from monitor.store import open_store

    if not config.state.postgres and not config.state.path.exists():
        return None
    return await open_store(config.state, readonly=True)


# --------------------------------------------------------------------------- acks


async def run_ack(config: Config, args: argparse.Namespace, out: Any) -> int:
    from monitor.control import acknowledge
    from monitor.store import open_store

    if args.id is not None and (args.rule or args.account):
        raise ControlError("give either an id or --rule with --account, not both")
    if not config.state.postgres and not config.state.path.exists():
        raise MonitorError(f"no state database at {config.state.path} yet: nothing has fired")
    store = await open_store(config.state, control=True)
    try:
        ack, new = await acknowledge(
            store,
            config,
            ident=args.id,
            rule=args.rule,
            account=args.account,
            author=args.author if args.author is not None else _author(),
            comment=args.comment,
            now=datetime.now(tz=UTC),
        )
    finally:
        await store.close()
    what = f"{ack.rule} on {ack.account_number or ack.source}"
    if new:
        out(f"acknowledged {what} (fingerprint {ack.fingerprint})")
    else:
        out(f"{what} (fingerprint {ack.fingerprint}) was already acknowledged")
    return 0


# --------------------------------------------------------------------------- the record


async def run_notifications(config: Config, args: argparse.Namespace, out: Any) -> int:
    from monitor import encoding
    from monitor.control import record_json, select_notifications
    from monitor.digest import DIGEST_STATUS, label

    since = (datetime.now(tz=UTC) - args.since).timestamp()
    store = await _reader(config)
    records: list[NotificationRecord] = []
    if store is not None:
        try:
            records = await select_notifications(
                store,
                since=since,
                rule=args.rule,
                account=args.account,
                sink=args.sink,
                status=args.status,
            )
        finally:
            await store.close()
    if args.json:
        out(encoding.dumps([record_json(r) for r in records]))
        return 0
    if not records:
        out("no notifications")
        return 0
    for r in records:
        plural = "s" if r.attempt_count != 1 else ""
        if r.status == DIGEST_STATUS:  # no rule, no account: the digest's name in their place
            what = f"{label(r.fingerprint)}  {r.attempt_count} attempt{plural}"
        else:
            where = r.account_number or r.source
            what = f"{r.rule}  {where}, {r.attempt_count} attempt{plural}"
        out(f"{_local(r.created_at)}  {r.state:<9} {r.sink:<12} {r.status:<8} {what}  id {r.id}")
        out(f"    {r.summary}")
        for a in r.attempts:
            error = f": {a.error}" if a.error else ""
            out(f"    attempt {_local(a.at)} {a.outcome}{error}")
        if r.ack is not None:
            why = f": {r.ack.comment}" if r.ack.comment else ""
            out(f"    acknowledged by {r.ack.author or 'unknown'} at {_local(r.ack.at)}{why}")
    return 0
