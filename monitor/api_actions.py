"""``/api/v1/silences``, ``/api/v1/alerts/{fingerprint}/ack`` and ``/api/v1/notifications``.

The HTTP face of ``balance-monitor silence``, ``ack`` and ``notifications``, on ``[http]
listen``, through the daemon's own store (:mod:`monitor.control` does the work, as for the
CLI). Reads are open like every route; writes need ``[http] auth_token`` (the middleware of
:mod:`monitor.webauth` answers 401 without it, 403 when no token is configured). Errors are
JSON ``{"error": "..."}``: 400 for a bad request, 404 for an unknown id.

    GET    /api/v1/silences[?all=true]      the silences in force (all: ended ones too), each
                                            with ``held``: the notifications it holds
    POST   /api/v1/silences                 {"rule", "account", "source", "labels",
                                             "for" | "until", "comment", "author"} -> 201
    DELETE /api/v1/silences/{id}            end it now -> the silence
    POST   /api/v1/alerts/{fingerprint}/ack {"comment", "author"} (optional) -> the ack
    GET    /api/v1/notifications?since=24h&rule=&account=&sink=&status=
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from monitor import encoding
from monitor.config import Config, parse_duration
from monitor.control import (
    SilenceRequest,
    acknowledge,
    add_silence,
    expire_silence,
    record_json,
    select_notifications,
    silence_json,
)
from monitor.errors import ControlError, StoreError
from monitor.models import DELIVERY_STATES, rfc3339
from monitor.silences import parse_until
from monitor.store import Store

__all__ = ["ActionsApi"]

_SILENCE_KEYS = frozenset({"rule", "account", "source", "labels", "for", "until"})
_TEXT_KEYS = frozenset({"comment", "author"})


@dataclass
class ActionsApi:
    """The routes, reading the daemon's store and config as they are now (a reload swaps the
    config); ``changed`` is called after a write (the daemon picks it up at once)."""

    store: Callable[[], Store | None]
    config: Callable[[], Config]
    changed: Callable[[], None]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/silences", self._list)
        app.router.add_post("/api/v1/silences", self._add)
        app.router.add_delete("/api/v1/silences/{id}", self._expire)
        app.router.add_post("/api/v1/alerts/{fingerprint}/ack", self._ack)
        app.router.add_get("/api/v1/notifications", self._notifications)

    def _store(self) -> Store:
        store = self.store()
        if store is None:
            raise web.HTTPServiceUnavailable(
                text=encoding.dumps({"error": "starting"}), content_type="application/json"
            )
        return store

    async def _list(self, request: web.Request) -> web.Response:
        now = datetime.now(tz=UTC).timestamp()
        every = request.query.get("all", "").lower() in {"1", "true", "yes"}
        store = self._store()
        found = await store.silences(include_ended=every, now=now)
        held_by = await store.held_by_mute()
        return _json([{**silence_json(s, now), "held": held_by.get(s.holder, 0)} for s in found])

    async def _add(self, request: web.Request) -> web.Response:
        body = await _body(request)
        unknown = set(body) - _SILENCE_KEYS - _TEXT_KEYS
        if unknown:
            return _error(f"unknown keys: {', '.join(sorted(unknown))}", 400)
        now = datetime.now(tz=UTC)
        try:
            ends = _ends(body, now)
            labels = body.get("labels") or {}
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise ControlError("labels: an object of text values")
            silence = await add_silence(
                self._store(),
                SilenceRequest(
                    ends_at=ends.timestamp(),
                    rule=_text(body, "rule"),
                    account=_text(body, "account"),
                    source=_text(body, "source"),
                    labels=labels,
                    comment=_text(body, "comment") or "",
                    author=_text(body, "author") or "api",
                ),
                self.config(),
                now.timestamp(),
            )
        except ControlError as exc:
            return _error(str(exc), 400)
        self.changed()
        return _json(silence_json(silence, now.timestamp()), 201)

    async def _expire(self, request: web.Request) -> web.Response:
        now = datetime.now(tz=UTC).timestamp()
        try:
            ended = await expire_silence(self._store(), request.match_info["id"], now)
        except ControlError as exc:
            return _error(str(exc), 404 if exc.not_found else 400)
        self.changed()
        return _json(silence_json(ended, now))

    async def _ack(self, request: web.Request) -> web.Response:
        body = await _body(request) if request.can_read_body else {}
        unknown = set(body) - _TEXT_KEYS
        if unknown:
            return _error(f"unknown keys: {', '.join(sorted(unknown))}", 400)
        now = datetime.now(tz=UTC)
        try:
            ack, new = await acknowledge(
                self._store(),
                self.config(),
                ident=request.match_info["fingerprint"],
                author=_text(body, "author") or "api",
                comment=_text(body, "comment") or "",
                now=now,
            )
        except ControlError as exc:
            return _error(str(exc), 404 if exc.not_found else 400)
        self.changed()
        return _json(
            {
                "fingerprint": ack.fingerprint,
                "rule": ack.rule,
                "account_number": ack.account_number,
                "source": ack.source,
                "acknowledged_by": ack.author,
                "acknowledged_at": rfc3339(datetime.fromtimestamp(ack.at, tz=UTC)),
                "comment": ack.comment,
                "new": new,
            }
        )

    async def _notifications(self, request: web.Request) -> web.Response:
        query = request.query
        status = query.get("status")
        if status is not None and status not in DELIVERY_STATES:
            return _error(f"status: one of {', '.join(DELIVERY_STATES)}", 400)
        try:
            since = parse_duration(query.get("since", "24h"))
        except ValueError as exc:
            return _error(f"since: {exc}", 400)
        try:
            records = await select_notifications(
                self._store(),
                since=(datetime.now(tz=UTC) - since).timestamp(),
                rule=query.get("rule"),
                account=query.get("account"),
                sink=query.get("sink"),
                status=status,
            )
        except StoreError as exc:
            return _error(str(exc), 503)
        return _json([record_json(r) for r in records])


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = encoding.loads(await request.text())
    except ValueError:
        raise web.HTTPBadRequest(
            text=encoding.dumps({"error": "the body is not JSON"}), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=encoding.dumps({"error": "the body must be a JSON object"}),
            content_type="application/json",
        )
    return body


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key}: a non-empty string")
    return value


def _ends(body: dict[str, Any], now: datetime) -> datetime:
    """When a silence asked for ends: ``for`` (a duration) or ``until`` (a time), one of."""
    if ("for" in body) == ("until" in body):
        raise ControlError("give exactly one of for, until")
    if "for" in body:
        text = _text(body, "for") or ""
        try:
            return now + parse_duration(text)
        except ValueError as exc:
            raise ControlError(f"for: {exc}") from None
    try:
        return parse_until(_text(body, "until") or "", now.astimezone())
    except ValueError as exc:
        raise ControlError(f"until: {exc}") from None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=encoding.dumps(body), status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)
