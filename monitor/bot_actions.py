"""What the Telegram bot's commands and buttons do, through the store: read the last poll,
the sources and the alerts, add silences and acknowledgements exactly as ``silence add`` and
``ack`` do (:mod:`monitor.control`), recorded with who sent them (``telegram:@user``), and tell
the daemon at once (``changed``) so they are in force within a second.

:mod:`monitor.telegram_bot` decides who may ask (:func:`monitor.bot_commands.access`) and sends
the answers; the text is :mod:`monitor.bot_answers`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from monitor.bot_answers import alerts_text, balance_text, help_text, status_text
from monitor.bot_commands import (
    ADMIN_COMMANDS,
    BUTTON_SILENCE,
    Access,
    Incoming,
    author,
    parse_silence,
)
from monitor.config import Config, parse_duration
from monitor.control import SilenceRequest, acknowledge, add_silence
from monitor.errors import ControlError, MonitorError
from monitor.silences import Silence, resolve_account
from monitor.sinks.text import escape
from monitor.store import Store

__all__ = ["BotActions", "Digest"]

log = structlog.get_logger("monitor.telegram_bot")

#: ``/digest [name]``: Telegram HTML of the named digest (``None``: the first or only one);
#: raises :class:`~monitor.errors.ControlError` naming the known ones for an unknown name.
Digest = Callable[[str | None], Awaitable[str]]

#: A "Silence 1h" press finds the silence an earlier press made if that one still has at least
#: the button's hour less this to run: it is not made twice.
BUTTON_SLACK = timedelta(minutes=5)


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


def _utc(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, tz=UTC):%Y-%m-%d %H:%M} UTC"


class BotActions:
    """The commands and buttons of the bot of sink ``name``."""

    def __init__(
        self,
        name: str,
        *,
        store: Store,
        settings: Callable[[], Config],
        changed: Callable[[], None] = lambda: None,
        digest: Digest | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.name = name
        self._store = store
        self._settings = settings
        self._changed = changed
        self._digest = digest
        self._clock = clock

    async def command(
        self, name: str, args: tuple[str, ...], incoming: Incoming, allowed: Access
    ) -> str:
        """The answer to ``/name args`` (state changes only with ``allowed`` ADMIN)."""
        if name in ADMIN_COMMANDS and allowed is not Access.ADMIN:
            return f"/{name} changes state: only an admin chat may use it."
        now = self._clock()
        try:
            if name in {"help", "start"}:
                return help_text(allowed is Access.ADMIN)
            if name == "balance":
                if len(args) > 1:
                    return "usage: /balance [account]"
                polled = {s.source: s.last_success_at for s in await self._store.sources()}
                return balance_text(
                    await self._store.accounts(),
                    args[0] if args else None,
                    now,
                    polled=polled,
                )
            if name == "status":
                return status_text(
                    await self._store.sources(),
                    await self._store.alerts(),
                    await self._store.silences(now=now.timestamp()),
                    now,
                )
            if name == "alerts":
                return alerts_text(await self._store.alerts(), await self._store.acks(), now)
            if name == "digest":
                return await self._digest_text(args)
            if name == "silence":
                return await self._silence(args, incoming, now)
            if name == "ack":
                if len(args) < 1:
                    return "usage: /ack &lt;id&gt; [comment] (the id /alerts shows)"
                return await self._ack(args[0], " ".join(args[1:]), incoming, now)
        except ControlError as exc:
            return escape(str(exc))
        except MonitorError as exc:
            log.error("telegram_command_failed", sink=self.name, command=name, error=str(exc))
            return f"Could not answer: {escape(str(exc))}"
        return f"Unknown command /{escape(name)}. /help lists what I answer."

    async def _digest_text(self, args: tuple[str, ...]) -> str:
        if self._digest is None:
            return "No digests configured."
        if len(args) > 1:
            return "usage: /digest [name]"
        return await self._digest(args[0] if args else None)

    async def _silence(self, args: tuple[str, ...], incoming: Incoming, now: datetime) -> str:
        try:
            parsed = parse_silence(args, parse_duration)
        except ValueError as exc:
            return escape(str(exc))
        account, known = parsed.account, True
        if account is not None:  # as /balance reads it: 12345678 is 12345678@vision
            numbers = (r.account_number for r in await self._store.accounts())
            account, known = resolve_account(numbers, account)
        request = SilenceRequest(
            ends_at=(now + parsed.duration).timestamp(),
            rule=parsed.rule,
            account=account,
            comment=parsed.comment,
            author=author(incoming),
        )
        made = await add_silence(self._store, request, self._settings(), now.timestamp())
        self._changed()
        where = f" on {escape(account)}" if account else ""
        log.info("telegram_silence_added", sink=self.name, silence=made.id, author=made.author)
        warning = (
            ""
            if known
            else f"\n⚠️ no polled account matches {escape(account or '')}: it holds nothing"
            " until one does (/balance lists them)."
        )
        return (
            f"🔕 Silenced <b>{escape(parsed.rule)}</b>{where} until"
            f" {_utc(made.ends_at)} (id <code>{made.id}</code>), by {escape(made.author)}."
            + warning
        )

    async def _ack(self, ident: str, comment: str, incoming: Incoming, now: datetime) -> str:
        ack, new = await acknowledge(
            self._store,
            self._settings(),
            ident=ident,
            author=author(incoming),
            comment=comment,
            now=now,
        )
        self._changed()
        what = f"<b>{escape(ack.rule)}</b> on {escape(ack.account_number or ack.source)}"
        if not new:
            return f"{what} was already acknowledged."
        log.info("telegram_acknowledged", sink=self.name, fingerprint=ack.fingerprint)
        return f"✅ Acknowledged {what} by {escape(ack.author)}."

    async def press(self, action: str, ident: str, incoming: Incoming) -> str:
        """What a button press did (an admin's: the caller checks): ``ack`` acknowledges the
        notification's alert, ``s1h`` silences its rule on its account for an hour.
        :class:`~monitor.errors.ControlError` says why not."""
        now = self._clock()
        if action == "ack":
            return await self._ack(ident, "", incoming, now)
        ref = await self._store.find_alert(ident)
        if ref is None:
            raise ControlError(f"no notification or alert with id '{ident}'")
        return await self._silence_ref(ref.rule, ref.account_number, ref.source, incoming, now)

    async def _silence_ref(
        self, rule: str, account: str | None, source: str, incoming: Incoming, now: datetime
    ) -> str:
        what = f"<b>{escape(rule)}</b> on {escape(account or f'source {source}')}"
        same = await self._button_silence(rule, account, source, now)
        if same is not None:  # a second press (or a second admin): one silence is enough
            return (
                f"{what} is already silenced until {_utc(same.until)}"
                f" (id <code>{same.id}</code>, by {escape(same.author or 'unknown')})."
            )
        request = SilenceRequest(
            ends_at=(now + BUTTON_SILENCE).timestamp(),
            rule=rule,
            account=account,
            source=source if account is None else None,
            comment="Silence 1h button",
            author=author(incoming),
        )
        made = await add_silence(self._store, request, self._settings(), now.timestamp())
        self._changed()
        return (
            f"🔕 Silenced {what} until {_utc(made.ends_at)}"
            f" (id <code>{made.id}</code>), by {escape(made.author)}."
        )

    async def _button_silence(
        self, rule: str, account: str | None, source: str, now: datetime
    ) -> Silence | None:
        """An active silence of exactly what the button silences, lasting about as long as a
        new one would (to within :data:`BUTTON_SLACK`), if there is one."""
        moment = now.timestamp()
        wanted = (rule, account, source if account is None else None)
        enough = moment + (BUTTON_SILENCE - BUTTON_SLACK).total_seconds()
        for silence in await self._store.silences(now=moment):
            if (
                silence.active(moment)
                and (silence.rule, silence.account, silence.source) == wanted
                and not silence.labels
                and silence.until >= enough
            ):
                return silence
        return None
