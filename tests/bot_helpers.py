"""A fake Telegram Bot API on 127.0.0.1: ``getMe``, ``getUpdates`` (long poll, honouring
``offset`` as Telegram does: updates below it are confirmed and gone), ``sendMessage`` and
``answerCallbackQuery`` (recorded), and queued failures (``{"ok": false, ...}`` answers).

The bot token must be in the path, as on api.telegram.org; any other path answers 404."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor import encoding

BOT_TOKEN = "123456789:AAE-botTokenSecret_xyz"
BOT_USERNAME = "BalanceBot"
CHAT_ID = "-1001234567890"
ADMIN_ID = "111111"
MEMBER_ID = "222222"
STRANGER_CHAT = "-1009999999999"
#: Telegram's most characters in one message: a longer ``sendMessage`` is refused.
TEXT_LIMIT = 4096


class FakeBotApi:
    """The Bot API of one bot; :attr:`url` is its ``api_url``."""

    def __init__(self, token: str = BOT_TOKEN) -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.toasts: list[dict[str, Any]] = []
        #: Every call: (method, payload), in order.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._failures: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self._next_id = 1000
        self._changed = asyncio.Condition()
        self._server: TestServer | None = None
        self.url = ""

    async def start(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            await self._server.close()

    # ------------------------------------------------------------------ what users do

    def message(
        self,
        text: str,
        *,
        chat_id: str = CHAT_ID,
        user_id: str = MEMBER_ID,
        username: str | None = "member",
        date: float | None = None,
        chat_type: str = "group",
        **extra: Any,
    ) -> int:
        """A message in ``chat_id`` from ``user_id`` (``extra``: more keys of the message, such
        as ``forward_origin``); its ``update_id``."""
        sender: dict[str, Any] = {"id": int(user_id), "is_bot": False, "first_name": "U"}
        if username is not None:
            sender["username"] = username
        return self._push(
            {
                "message": {
                    "message_id": self._next_id,
                    "date": int(date if date is not None else time.time()),
                    "chat": {"id": int(chat_id), "type": chat_type},
                    "from": sender,
                    "text": text,
                    **extra,
                }
            }
        )

    def press(
        self, data: str, *, chat_id: str = CHAT_ID, user_id: str = ADMIN_ID, username: str = "al"
    ) -> int:
        """A press of an inline button with ``callback_data`` ``data``."""
        return self._push(
            {
                "callback_query": {
                    "id": f"cb{self._next_id}",
                    "from": {"id": int(user_id), "is_bot": False, "username": username},
                    "message": {
                        "message_id": 1,
                        "date": int(time.time()),
                        "chat": {"id": int(chat_id), "type": "group"},
                    },
                    "data": data,
                }
            }
        )

    def push(self, body: dict[str, Any]) -> int:
        """Any update: ``body`` beside its ``update_id``."""
        return self._push(body)

    def _push(self, body: dict[str, Any]) -> int:
        update_id = self._next_id
        self._next_id += 1
        self.updates.append({"update_id": update_id, **body})
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def fail(self, method: str, status: int, count: int = 1, **body: Any) -> None:
        """The next ``count`` calls of ``method`` answer ``status`` with ``{"ok": false, ...}``."""
        queue = self._failures.setdefault(method, deque())
        for _ in range(count):
            queue.append((status, body))

    async def wait_sent(self, count: int, timeout: float = 8.0) -> list[dict[str, Any]]:  # noqa: ASYNC109 - a test helper's bound
        """Once at least ``count`` messages were sent: all of them."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.sent) >= count)
        return self.sent

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [
            m["text"] for m in self.sent if chat_id is None or str(m["chat_id"]) == str(chat_id)
        ]

    # ------------------------------------------------------------------ the API

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = request.match_info["method"]
        payload = encoding.loads(await request.read() or b"{}")
        self.calls.append((method, payload))
        failures = self._failures.get(method)
        if failures:
            status, body = failures.popleft()
            return _answer(status, {"ok": False, "error_code": status, **body})
        if method == "getMe":
            return _ok({"id": 123456789, "is_bot": True, "username": BOT_USERNAME})
        if method == "getUpdates":
            return _ok(await self._get_updates(payload))
        if method == "sendMessage":
            if len(payload.get("text", "")) > TEXT_LIMIT:  # as Telegram: nobody gets an answer
                too_long = "Bad Request: message is too long"
                return _answer(400, {"ok": False, "error_code": 400, "description": too_long})
            self.sent.append(payload)
            await self._notify()
            return _ok({"message_id": len(self.sent), "chat": {"id": payload["chat_id"]}})
        if method == "answerCallbackQuery":
            self.toasts.append(payload)
            await self._notify()
            return _ok(True)
        return _answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    async def _get_updates(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        offset = payload.get("offset")
        if isinstance(offset, int):  # confirmed: gone for good, as on Telegram
            self.updates = [u for u in self.updates if u.get("update_id", offset) >= offset]
        wait = float(payload.get("timeout", 0))
        async with self._changed:
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait_for(lambda: bool(self.updates))
            except TimeoutError:
                pass
        return list(self.updates)


def _ok(result: Any) -> web.Response:
    return _answer(200, {"ok": True, "result": result})


def _answer(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=encoding.dumps(body), content_type="application/json")
