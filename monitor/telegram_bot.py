"""A Telegram sink with ``commands = true`` answers commands: the bot long-polls ``getUpdates``.

No inbound port (it works behind NAT): :class:`TelegramBot` asks the Bot API for updates with
a long poll (``timeout`` :data:`POLL_TIMEOUT` seconds, the client's timeout above it,
``allowed_updates`` message and callback_query), handles each one in order, and keeps the
next ``update_id`` in the store (``bot_offsets``, schema 7) after each, so a restart neither
replays nor skips a command. That is at-least-once: a crash between handling an update and
keeping its offset answers it again after the restart (a second ``/silence`` adds a second,
identical silence; ``/ack`` of an acknowledged alert says so).

It is its own task, started and stopped by the daemon: it never blocks a poll or a delivery. A
failing Bot API is backed off (:mod:`monitor.bot_backoff`: 1 s doubling to a minute, with
jitter); a 429 waits its ``retry_after`` (at most 5 minutes); a 401 or 404 (a wrong token) ten
minutes; a 409 (another consumer of this bot's updates: a second process, or a webhook
set on the bot) is logged as ``telegram_bot_conflict`` and waits a minute. With replicas on
PostgreSQL, only the replica doing the singleton work long-polls; the kept offset makes a
hand-over neither replay nor skip.

Who may do what is :func:`monitor.bot_commands.access`. A chat that is neither the sink's nor an
admin chat is ignored, with one ``telegram_unknown_chat`` log line per chat. A command older
than :data:`STALE_AFTER` (sent while nothing listened) is not run: it is answered with when it
was sent, so nothing acts late and nothing is skipped in silence. Every answer goes to the chat
the command came from. The bot token is in the URL path: no URL is ever logged or put in an
error.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog

from monitor.bot_actions import BotActions, Digest
from monitor.bot_answers import fit_message, plain
from monitor.bot_api import BotApi
from monitor.bot_backoff import Failure, after_failure, backoff
from monitor.bot_commands import (
    ADMIN_COMMANDS,
    Access,
    Incoming,
    access,
    author,
    migrated_to,
    parse_button,
    parse_command,
    read_update,
)
from monitor.config import Config, TelegramSinkConfig, resolve_secret
from monitor.errors import BotError, ControlError, MonitorError
from monitor.metrics import Metrics
from monitor.sinks.text import escape
from monitor.store import Store

__all__ = ["POLL_TIMEOUT", "STALE_AFTER", "BotApi", "Digest", "TelegramBot", "bots_for"]

log = structlog.get_logger("monitor.telegram_bot")

#: Seconds one ``getUpdates`` long poll waits for an update.
POLL_TIMEOUT = 25.0
#: The longest ``retry_after`` waited for an answer before giving the answer up.
ANSWER_RETRY_MAX = 10.0
#: How often a replica that does not do the singleton work looks again whether it does.
STANDBY_CHECK = 1.0
#: How often a long poll in flight looks whether this replica still does the singleton work.
HANDOVER_CHECK = 1.0
#: A command sent longer ago than this (while nothing listened) is not run.
STALE_AFTER = timedelta(minutes=10)
#: How many unknown chats are logged (once each); beyond them one line says the rest are not.
UNKNOWN_CHATS_LOGGED = 1000


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    if seconds <= 0 or stop.is_set():
        return
    try:  # asyncio.timeout, not wait_for (which on Python 3.11 may swallow a cancel)
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return


class TelegramBot:
    """One bot answering the chats of one Telegram sink with ``commands = true``."""

    def __init__(
        self,
        config: TelegramSinkConfig,
        api: BotApi,
        *,
        store: Store,
        settings: Callable[[], Config],
        changed: Callable[[], None] = lambda: None,
        digest: Digest | None = None,
        singleton: Callable[[], bool] = lambda: True,
        poll_timeout: float = POLL_TIMEOUT,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[asyncio.Event, float], Awaitable[None]] = _sleep_or_stop,
        jitter: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.api = api
        self._store = store
        self.actions = BotActions(
            config.name,
            store=store,
            settings=settings,
            changed=changed,
            digest=digest,
            clock=clock,
        )
        self._singleton = singleton
        self._poll_timeout = poll_timeout
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._offset: int | None = None
        self._loaded = False
        self._username: str | None = None
        self._named = False
        self._failures = 0
        self._unknown_chats: set[str] = set()
        self._stop = asyncio.Event()
        #: The offset past updates that did nothing, not kept yet: kept once per batch (a
        #: flood from a stranger costs no write per message).
        self._unkept: int | None = None
        self._metrics = metrics
        if metrics is not None:
            metrics.declare_bot(self.name)

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Long-poll and answer until ``stop`` is set; never raises (but for cancellation)."""
        log.info("telegram_bot_started", sink=self.name)
        self._stop = stop
        while not stop.is_set():
            if not self._singleton():
                self._loaded = False  # another replica answered meanwhile: read the offset again
                if self._metrics is not None:  # only the replica that long-polls says up or down
                    self._metrics.forget_bot_up(self.name)
                await self._sleep(stop, STANDBY_CHECK)
                continue
            try:
                wait = await self._round(stop)
            except Exception:  # the bot's one broad except: a bug must not silence it for good
                log.exception("telegram_bot_crashed", sink=self.name)
                self._loaded = False
                self._failures += 1
                self._set_up(False)
                wait = self._delay()
            if wait > 0:
                await self._sleep(stop, wait)
        log.info("telegram_bot_stopped", sink=self.name)

    async def _round(self, stop: asyncio.Event) -> float:
        """One ``getUpdates`` and the handling of what it brought; the seconds to wait next."""
        try:
            if not self._loaded:
                self._offset = await self._store.bot_offset(self.name)
                self._loaded = True
            if not self._named:
                self._username = await self.api.get_me()
                self._named = True
            updates = await self._long_poll(stop)
            if updates is None:
                return 0.0
            self._set_up(True)
            before = self._offset
            for update in updates:
                if not self._singleton():  # handed over meanwhile: the other replica answers
                    self._loaded = False
                    return 0.0
                await self.handle(update)
            await self._keep_unkept()
        except BotError as exc:
            self._set_up(False)
            return self._backoff(exc)
        except MonitorError as exc:  # the store: try again later, from the kept offset
            self._loaded = False
            self._failures += 1
            log.error("telegram_bot_failed", sink=self.name, error=str(exc))
            return self._delay()
        if updates and self._offset == before:
            # Nothing to confirm (no update had an update_id): asking again at once would
            # bring the same ones back at once, for ever.
            self._failures += 1
            log.warning("telegram_bot_no_progress", sink=self.name, updates=len(updates))
            return self._delay()
        self._failures = 0
        return 0.0

    def _set_up(self, up: bool) -> None:
        if self._metrics is not None:
            self._metrics.bot_up.labels(sink=self.name).set(int(up))

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.bot_update(self.name, outcome)

    async def _long_poll(self, stop: asyncio.Event) -> list[dict[str, Any]] | None:
        """The updates of one long poll; ``None`` when ``stop`` was set meanwhile, or when
        this replica stopped doing the singleton work (looked at every :data:`HANDOVER_CHECK`
        seconds, so two replicas overlap that long at most)."""
        poll = asyncio.ensure_future(self.api.get_updates(self._offset, wait=self._poll_timeout))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not (poll.done() or stopped.done()) and self._singleton():
                await asyncio.wait(
                    {poll, stopped}, timeout=HANDOVER_CHECK, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            stopped.cancel()
            if not poll.done():
                poll.cancel()
        if not poll.done() or poll.cancelled():
            await asyncio.gather(poll, return_exceptions=True)
            return None
        return poll.result()

    def _delay(self) -> float:
        return backoff(self._failures, self._jitter())

    def _backoff(self, exc: BotError) -> float:
        """The wait after a failed Bot API call (:func:`monitor.bot_backoff.after_failure`),
        logged as what it is."""
        self._failures += 1
        failure, wait = after_failure(exc.status, exc.retry_after, self._failures, self._jitter())
        error = str(exc)
        if failure is Failure.RATE_LIMITED:
            log.warning(
                "telegram_bot_rate_limited",
                sink=self.name,
                retry_after=exc.retry_after,
                retry_in=wait,
            )
        elif failure is Failure.UNAUTHORIZED:
            log.error(
                "telegram_bot_unauthorized",
                sink=self.name,
                error=error,
                retry_in=round(wait),
                hint="the bot token is wrong or revoked (BotFather: /mybots, API Token), or"
                " api_url is no Bot API; fix it and reload",
            )
        elif failure is Failure.CONFLICT:
            log.warning(
                "telegram_bot_conflict",
                sink=self.name,
                error=error,
                hint="another process reads this bot's updates (a second monitor, or a webhook"
                " set on the bot: deleteWebhook)",
            )
        else:
            log.warning("telegram_bot_failed", sink=self.name, error=error, retry_in=round(wait, 1))
        return wait

    # ------------------------------------------------------------------ one update

    async def handle(self, update: Mapping[str, Any]) -> None:
        """Answer one update (if it is ours to answer), then keep the offset past it; an
        update below the offset (handled already) is not handled again."""
        update_id = update.get("update_id")
        if isinstance(update_id, int) and self._offset is not None and update_id < self._offset:
            log.warning("telegram_update_replayed", sink=self.name, update_id=update_id)
            return
        incoming = read_update(update)
        try:
            if incoming is not None:
                outcome = await self._dispatch(incoming, update)
            else:
                self._moved(update)
                outcome = "ignored"
        except MonitorError:
            raise  # the store failed: the update is handled again from the kept offset
        except Exception:
            # A bug: past the update all the same (one bad update must not come back for
            # ever); run() logs the crash.
            self._count("failed")
            await self._keep(update_id)
            raise
        self._count(outcome)
        if outcome in {"ignored", "unknown_chat"}:  # nothing done: kept with the batch
            if isinstance(update_id, int):
                self._offset = self._unkept = update_id + 1
            return
        await self._keep(update_id)

    async def _keep(self, update_id: object) -> None:
        if isinstance(update_id, int):
            self._offset = update_id + 1
            self._unkept = None
            await self._store.set_bot_offset(
                self.name, update_id + 1, now=self._clock().timestamp()
            )

    async def _keep_unkept(self) -> None:
        if self._unkept is not None:
            await self._keep(self._unkept - 1)

    def _moved(self, update: Mapping[str, Any]) -> None:
        """A group of ours became a supergroup: its new id is not ours until configured."""
        moved = migrated_to(update)
        if moved is None:
            return
        old, new = moved
        if old == self.config.chat_id or old in self.config.admin_chat_ids:
            log.error(
                "telegram_chat_migrated",
                sink=self.name,
                chat_id=old,
                new_chat_id=new,
                hint=f'the group is a supergroup now: set chat_id (or the admin id) to "{new}"'
                " and reload",
            )

    async def _dispatch(self, incoming: Incoming, update: Mapping[str, Any]) -> str:
        """Answer ``incoming``; how it ended: answered, refused, stale, ignored or
        unknown_chat (``balance_monitor_bot_updates_total{outcome}``)."""
        allowed = access(incoming, self.config.chat_id, self.config.admin_chat_ids)
        if allowed is Access.NONE:
            if incoming.chat_id not in self._unknown_chats:
                if len(self._unknown_chats) < UNKNOWN_CHATS_LOGGED:
                    log.warning(
                        "telegram_unknown_chat",
                        sink=self.name,
                        chat_id=incoming.chat_id,
                        user=incoming.username,
                    )
                elif len(self._unknown_chats) == UNKNOWN_CHATS_LOGGED:
                    log.warning("telegram_unknown_chats_suppressed", sink=self.name)
                else:
                    return "unknown_chat"
                self._unknown_chats.add(incoming.chat_id)
            return "unknown_chat"
        if incoming.is_button:
            return await self._button(incoming, allowed)
        command = parse_command(incoming.text, self._username)
        if command is None:
            return "ignored"  # chatter in the group, or a command for another bot
        sent = _sent_at(update)
        now = self._clock()
        if sent is not None and now - sent > STALE_AFTER:
            log.info("telegram_command_stale", sink=self.name, command=command.name)
            await self._answer(
                incoming,
                f"/{escape(command.name)} was sent at {sent:%Y-%m-%d %H:%M} UTC, while the monitor"
                " was not listening: not run. Send it again if it is still wanted.",
            )
            return "stale"
        log.info(
            "telegram_command",
            sink=self.name,
            command=command.name,
            chat_id=incoming.chat_id,
            user=author(incoming),
        )
        try:
            text = await self.actions.command(command.name, command.args, incoming, allowed)
        except ControlError as exc:
            text = escape(str(exc))
        await self._answer(incoming, text)
        refused = command.name in ADMIN_COMMANDS and allowed is not Access.ADMIN
        return "refused" if refused else "answered"

    async def _button(self, incoming: Incoming, allowed: Access) -> str:
        """A press of "Acknowledge" or "Silence 1h": the outcome as the button's toast, and as a
        message to the chat (so the others there see who did it)."""
        assert incoming.callback_id is not None  # noqa: S101 - is_button
        pressed = parse_button(incoming.text)
        if pressed is None:
            await self._toast(incoming.callback_id, "This button is not one of mine.", alert=True)
            return "ignored"
        if allowed is not Access.ADMIN:
            log.info("telegram_button_refused", sink=self.name, user=author(incoming))
            await self._toast(incoming.callback_id, "Only an admin chat may do this.", alert=True)
            return "refused"
        action, ident = pressed
        log.info("telegram_button", sink=self.name, action=action, user=author(incoming))
        try:
            text = await self.actions.press(action, ident, incoming)
        except ControlError as exc:
            await self._toast(incoming.callback_id, str(exc), alert=True)
            return "answered"
        except MonitorError as exc:
            log.error("telegram_button_failed", sink=self.name, error=str(exc))
            await self._toast(
                incoming.callback_id, "Could not do it: the state database failed.", alert=True
            )
            return "answered"
        await self._toast(incoming.callback_id, plain(text))
        await self._answer(incoming, text)
        return "answered"

    async def _answer(self, incoming: Incoming, text: str) -> None:
        """Send ``text`` (cut to Telegram's 4096 characters) to the chat the command came
        from; a 429 with a short ``retry_after`` is waited for once (a stop ends the wait), HTML
        Telegram cannot parse is sent again as plain text; a failure is logged (the command
        was done, the offset moves on)."""
        text = fit_message(text)
        for attempt in (1, 2):
            try:
                await self.api.send_message(incoming.chat_id, text)
                return
            except BotError as exc:
                wait = exc.retry_after
                if attempt == 1 and wait is not None and 0 <= wait <= ANSWER_RETRY_MAX:
                    await self._sleep(self._stop, wait)
                    if not self._stop.is_set():
                        continue
                if attempt == 1 and exc.status == 400 and "entities" in str(exc):
                    # Our HTML is wrong somewhere: the answer as plain text, not none at all.
                    log.warning("telegram_answer_not_html", sink=self.name, error=str(exc))
                    text = fit_message(escape(plain(text)))
                    continue
                log.warning("telegram_answer_failed", sink=self.name, error=str(exc))
                return

    async def _toast(self, callback_id: str, text: str, *, alert: bool = False) -> None:
        try:
            await self.api.answer_callback(callback_id, text, alert=alert)
        except BotError as exc:
            log.warning("telegram_answer_failed", sink=self.name, error=str(exc))


def _sent_at(update: Mapping[str, Any]) -> datetime | None:
    message = update.get("message")
    date = message.get("date") if isinstance(message, Mapping) else None
    if isinstance(date, bool) or not isinstance(date, int | float) or not math.isfinite(date):
        return None
    try:
        return datetime.fromtimestamp(date, tz=UTC)
    except (OverflowError, OSError, ValueError):  # a date no clock shows: not stale, then
        return None


def bots_for(
    config: Config,
    *,
    session: aiohttp.ClientSession,
    store: Store,
    settings: Callable[[], Config],
    changed: Callable[[], None] = lambda: None,
    digest: Digest | None = None,
    singleton: Callable[[], bool] = lambda: True,
    metrics: Metrics | None = None,
) -> list[TelegramBot]:
    """A bot for each Telegram sink with ``commands = true`` (its token resolved now)."""
    bots = []
    for index, sink in enumerate(config.sinks):
        if isinstance(sink, TelegramSinkConfig) and sink.commands:
            token = resolve_secret(sink.required_ref(index, "bot_token"))
            api = BotApi(sink.name, session=session, token=token, api_url=sink.api_url)
            bots.append(
                TelegramBot(
                    sink,
                    api,
                    store=store,
                    settings=settings,
                    changed=changed,
                    digest=digest,
                    singleton=singleton,
                    metrics=metrics,
                )
            )
    return bots
