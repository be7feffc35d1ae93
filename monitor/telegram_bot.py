"""A Telegram sink with ``commands = true`` answers commands: the bot long-polls ``getUpdates``.

No inbound port (it works behind NAT): :class:`TelegramBot` asks the Bot API for updates with
a long poll (``timeout`` :data:`POLL_TIMEOUT` seconds, the client's timeout above it,
``allowed_updates`` message and callback_query), handles each one in order, and keeps the
next ``update_id`` in the store (``bot_offsets``, schema 7) after each, so a restart neither
replays nor skips a command. That is at-least-once: a crash between handling an update and
keeping its offset answers it again after the restart (a second ``/silence`` adds a second,
identical silence; ``/ack`` of an acknowledged alert says so).

It is its own task, started and stopped by the daemon: it never blocks a poll or a delivery. A
failing Bot API is backed off (1 s doubling to a minute, with jitter); a 429 waits its
``retry_after``; a 409 (another consumer of this bot's updates: a second process, or a webhook
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
import html
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog

from monitor.bot_actions import BotActions, Digest
from monitor.bot_api import BotApi
from monitor.bot_commands import (
    Access,
    Incoming,
    access,
    author,
    parse_button,
    parse_command,
    read_update,
)
from monitor.config import Config, TelegramSinkConfig, resolve_secret
from monitor.errors import BotError, ControlError, MonitorError
from monitor.sinks.text import escape
from monitor.store import Store

__all__ = ["POLL_TIMEOUT", "STALE_AFTER", "BotApi", "Digest", "TelegramBot", "bots_for"]

log = structlog.get_logger("monitor.telegram_bot")

#: Seconds one ``getUpdates`` long poll waits for an update.
POLL_TIMEOUT = 25.0
#: The backoff after a failed ``getUpdates``: from this, doubling, to :data:`BACKOFF_MAX`.
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
#: How long a 409 (another consumer of the bot's updates) waits before asking again.
CONFLICT_WAIT = 60.0
#: The longest ``retry_after`` waited for an answer before giving the answer up.
ANSWER_RETRY_MAX = 10.0
#: How often a replica that does not do the singleton work looks again whether it does.
STANDBY_CHECK = 5.0
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

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Long-poll and answer until ``stop`` is set; never raises (but for cancellation)."""
        log.info("telegram_bot_started", sink=self.name)
        while not stop.is_set():
            if not self._singleton():
                self._loaded = False  # another replica answered meanwhile: read the offset again
                await self._sleep(stop, STANDBY_CHECK)
                continue
            try:
                wait = await self._round(stop)
            except Exception:  # the bot's one broad except: a bug must not silence it for good
                log.exception("telegram_bot_crashed", sink=self.name)
                self._loaded = False
                self._failures += 1
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
            for update in updates:
                if not self._singleton():  # handed over meanwhile: the other replica answers
                    self._loaded = False
                    return 0.0
                await self.handle(update)
        except BotError as exc:
            return self._backoff(exc)
        except MonitorError as exc:  # the store: try again later, from the kept offset
            self._loaded = False
            self._failures += 1
            log.error("telegram_bot_failed", sink=self.name, error=str(exc))
            return self._delay()
        self._failures = 0
        return 0.0

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
        steps = min(10, max(0, self._failures - 1))
        base = min(BACKOFF_MAX, BACKOFF_MIN * 2.0**steps)
        return base * (0.5 + self._jitter() / 2)

    def _backoff(self, exc: BotError) -> float:
        self._failures += 1
        if exc.status == 409:
            log.warning(
                "telegram_bot_conflict",
                sink=self.name,
                error=str(exc),
                hint="another process reads this bot's updates (a second monitor, or a webhook"
                " set on the bot: deleteWebhook)",
            )
            return CONFLICT_WAIT * (0.5 + self._jitter() / 2)
        if exc.retry_after is not None:
            log.warning(
                "telegram_bot_rate_limited",
                sink=self.name,
                retry_after=exc.retry_after,
            )
            return exc.retry_after
        wait = self._delay()
        log.warning("telegram_bot_failed", sink=self.name, error=str(exc), retry_in=round(wait, 1))
        return wait

    # ------------------------------------------------------------------ one update

    async def handle(self, update: Mapping[str, Any]) -> None:
        """Answer one update (if it is ours to answer), then keep the offset past it."""
        update_id = update.get("update_id")
        incoming = read_update(update)
        try:
            if incoming is not None:
                await self._dispatch(incoming, update)
        except MonitorError:
            raise  # the store failed: the update is handled again from the kept offset
        except Exception:
            # A bug: past the update all the same (one bad update must not come back for
            # ever); run() logs the crash.
            await self._keep(update_id)
            raise
        await self._keep(update_id)

    async def _keep(self, update_id: object) -> None:
        if isinstance(update_id, int):
            self._offset = update_id + 1
            await self._store.set_bot_offset(
                self.name, update_id + 1, now=self._clock().timestamp()
            )

    async def _dispatch(self, incoming: Incoming, update: Mapping[str, Any]) -> None:
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
                    return
                self._unknown_chats.add(incoming.chat_id)
            return
        if incoming.is_button:
            await self._button(incoming, allowed)
            return
        command = parse_command(incoming.text, self._username)
        if command is None:
            return  # chatter in the group, or a command for another bot
        sent = _sent_at(update)
        now = self._clock()
        if sent is not None and now - sent > STALE_AFTER:
            log.info("telegram_command_stale", sink=self.name, command=command.name)
            await self._answer(
                incoming,
                f"/{escape(command.name)} was sent at {sent:%Y-%m-%d %H:%M} UTC, while the monitor"
                " was not listening: not run. Send it again if it is still wanted.",
            )
            return
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

    async def _button(self, incoming: Incoming, allowed: Access) -> None:
        """A press of "Acknowledge" or "Silence 1h": the outcome as the button's toast, and as a
        message to the chat (so the others there see who did it)."""
        assert incoming.callback_id is not None  # noqa: S101 - is_button
        pressed = parse_button(incoming.text)
        if pressed is None:
            await self._toast(incoming.callback_id, "This button is not one of mine.")
            return
        if allowed is not Access.ADMIN:
            await self._toast(incoming.callback_id, "Only an admin chat may do this.")
            return
        action, ident = pressed
        log.info("telegram_button", sink=self.name, action=action, user=author(incoming))
        try:
            text = await self.actions.press(action, ident, incoming)
        except ControlError as exc:
            await self._toast(incoming.callback_id, str(exc))
            return
        except MonitorError as exc:
            log.error("telegram_button_failed", sink=self.name, error=str(exc))
            await self._toast(incoming.callback_id, "Could not do it: the state database failed.")
            return
        await self._toast(incoming.callback_id, _plain(text))
        await self._answer(incoming, text)

    async def _answer(self, incoming: Incoming, text: str) -> None:
        """Send ``text`` to the chat the command came from; a 429 with a short ``retry_after``
        is waited for once; a failure is logged (the command was done, the offset moves on)."""
        for attempt in (1, 2):
            try:
                await self.api.send_message(incoming.chat_id, text)
                return
            except BotError as exc:
                wait = exc.retry_after
                if attempt == 1 and wait is not None and wait <= ANSWER_RETRY_MAX:
                    await asyncio.sleep(wait)
                    continue
                log.warning("telegram_answer_failed", sink=self.name, error=str(exc))
                return

    async def _toast(self, callback_id: str, text: str) -> None:
        try:
            await self.api.answer_callback(callback_id, text)
        except BotError as exc:
            log.warning("telegram_answer_failed", sink=self.name, error=str(exc))


def _sent_at(update: Mapping[str, Any]) -> datetime | None:
    message = update.get("message")
    date = message.get("date") if isinstance(message, Mapping) else None
    return datetime.fromtimestamp(date, tz=UTC) if isinstance(date, int | float) else None


def _plain(html_text: str) -> str:
    """A toast is plain text: the answer without its tags and entities."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def bots_for(
    config: Config,
    *,
    session: aiohttp.ClientSession,
    store: Store,
    settings: Callable[[], Config],
    changed: Callable[[], None] = lambda: None,
    digest: Digest | None = None,
    singleton: Callable[[], bool] = lambda: True,
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
                )
            )
    return bots
