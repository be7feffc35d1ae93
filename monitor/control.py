"""Silences and acknowledgements through the store: what the CLI and the HTTP API do, and the
daemon's copy of them.

:func:`add_silence`, :func:`expire_silence` and :func:`acknowledge` are the operations
``balance-monitor silence ...``, ``balance-monitor ack`` and ``/api/v1/...`` share: they check
their input (a :class:`~monitor.errors.ControlError` names what is wrong) and write through
the :class:`~monitor.store.Store` (opened with ``control=True`` next to a running daemon).
:class:`ControlBook` is the daemon's copy: it looks at the store's ``control_version`` every
:data:`CONTROL_CHECK` seconds and reads the silences and acks again when it moved, so a change
made elsewhere is in force within a couple of seconds, without a reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from monitor.config import Config
from monitor.errors import ControlError
from monitor.models import Notification, rfc3339
from monitor.silences import EMPTY, Ack, ControlState, Silence, new_silence_id
from monitor.store import AlertRef, NotificationRecord, Store

__all__ = [
    "CONTROL_CHECK",
    "ControlBook",
    "SilenceRequest",
    "acknowledge",
    "add_silence",
    "expire_silence",
    "record_json",
    "select_notifications",
    "silence_json",
]

#: How often the daemon looks for silences and acks written elsewhere (seconds).
CONTROL_CHECK = 1.0


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """A silence as the CLI and the API take it: matchers, and ``ends_at`` (epoch seconds)."""

    ends_at: float
    rule: str | None = None
    account: str | None = None
    source: str | None = None
    labels: Mapping[str, str] | None = None
    comment: str = ""
    author: str = ""


async def add_silence(store: Store, request: SilenceRequest, config: Config, now: float) -> Silence:
    """Keep a new silence starting ``now``; :class:`ControlError` for a bad request."""
    if not (request.rule or request.account or request.source or request.labels):
        raise ControlError("a silence needs at least one matcher: rule, account, source or label")
    if request.ends_at <= now:
        raise ControlError("a silence must end in the future")
    known = {r.name for r in config.rules} | {"source_down"}
    if request.rule is not None and request.rule not in known:
        raise ControlError(
            f"unknown rule '{request.rule}' (configured: {', '.join(sorted(known))})"
        )
    sources = {s.name for s in config.all_sources()}
    if request.source is not None and request.source not in sources:
        raise ControlError(
            f"unknown source '{request.source}' (configured: {', '.join(sorted(sources))})"
        )
    silence = Silence(
        id=new_silence_id(now),
        starts_at=now,
        ends_at=request.ends_at,
        rule=request.rule,
        account=request.account,
        source=request.source,
        labels=dict(request.labels or {}),
        comment=request.comment,
        author=request.author,
        created_at=now,
    )
    await store.add_silence(silence)
    return silence


async def expire_silence(store: Store, ident: str, now: float) -> Silence:
    """End silence ``ident`` now; :class:`ControlError` when there is none by that id."""
    found = await store.expire_silence(ident, now=now)
    if found is None:
        raise ControlError(f"no silence with id '{ident}'", not_found=True)
    return found


async def acknowledge(
    store: Store,
    config: Config,
    *,
    ident: str | None = None,
    rule: str | None = None,
    account: str | None = None,
    author: str = "",
    comment: str = "",
    now: datetime,
) -> tuple[Ack, bool]:
    """Acknowledge the alert episode named by a notification id or fingerprint (``ident``), or
    the firing alert of ``rule`` on ``account``; the ack, and whether it is new.

    PagerDuty sinks that were sent the episode get an ``acknowledge`` event (queued with the
    ack, in one transaction); other sinks get nothing."""
    ref: AlertRef | None
    if ident is not None:
        ref = await store.find_alert(ident)
        if ref is None:
            raise ControlError(
                f"no notification or alert with id or fingerprint '{ident}'", not_found=True
            )
    else:
        if rule is None or account is None:
            raise ControlError(
                "give a notification id or fingerprint, or both --rule and --account"
            )
        found = await store.find_firing(rule, account)
        if not found:
            raise ControlError(
                f"no firing alert of rule '{rule}' on account {account}", not_found=True
            )
        ref = found[0]
    if not ref.firing:
        raise ControlError(
            f"the alert {ref.fingerprint} ({ref.rule}, {ref.account_number or ref.source}) is not"
            " firing any more: only the current episode can be acknowledged"
        )
    ack = Ack(
        fingerprint=ref.fingerprint,
        rule=ref.rule,
        account_number=ref.account_number,
        source=ref.source,
        at=now.timestamp(),
        author=author,
        comment=comment,
        notification_id=ref.notification_id,
    )
    pagerduty = {s.name for s in config.sinks if s.type == "pagerduty"}
    queued = [
        (_acknowledged(n, ack, now), sink, source)
        for n, sink, source in await store.last_firing(ref.fingerprint)
        if sink in pagerduty
    ]
    new = await store.add_ack(ack, queued)
    return ack, new


def _acknowledged(notification: Notification, ack: Ack, now: datetime) -> Notification:
    """The episode's last firing notification, said to be acknowledged, with an id of its own."""
    alert = replace(
        notification.alert, acknowledged_by=ack.author or "unknown", acknowledged_at=now
    )
    text = f"{notification.id}\x1fack"
    return Notification(hashlib.sha256(text.encode()).hexdigest()[:32], alert)


class ControlBook:
    """The daemon's copy of the silences and acks, read again when the store says they moved."""

    def __init__(self) -> None:
        self.state: ControlState = EMPTY
        self.version: int | None = None
        self._active: frozenset[str] = frozenset()

    def get(self) -> ControlState:
        return self.state

    async def refresh(self, store: Store, now: datetime) -> bool:
        """Read the silences and acks again if they changed; whether anything that decides
        what is held changed (a write, or a silence that ended or began since last time)."""
        version = await store.control_version()
        changed = version != self.version
        if changed:
            moment = now.timestamp()
            silences = tuple(await store.silences(now=moment))
            acks = {a.fingerprint: a for a in await store.acks()}
            self.state, self.version = ControlState(silences, acks), version
        moment = now.timestamp()
        active = frozenset(s.id for s in self.state.silences if s.active(moment))
        changed = changed or active != self._active
        self._active = active
        # Silences that ended long ago are dropped from the copy (the store keeps them).
        if any(s.until <= moment - timedelta(hours=1).total_seconds() for s in self.state.silences):
            kept = tuple(s for s in self.state.silences if s.until > moment)
            self.state = replace(self.state, silences=kept)
        return changed


# --------------------------------------------------------------------------- as JSON


def silence_json(s: Silence, now: float) -> dict[str, Any]:
    """A silence as ``silence list --json`` and the HTTP API show it."""
    return {
        "id": s.id,
        **s.matchers(),
        "starts_at": _time(s.starts_at),
        "ends_at": _time(s.ends_at),
        "active": s.active(now),
        "expired_at": _time(s.expired_at) if s.expired_at is not None else None,
        "comment": s.comment,
        "author": s.author,
        "created_at": _time(s.created_at),
    }


def _time(epoch: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, tz=UTC))


def record_json(r: NotificationRecord) -> dict[str, Any]:
    """One notification for one sink, as ``notifications --json`` and the API show it."""
    return {
        "id": r.id,
        "sink": r.sink,
        "source": r.source,
        "fingerprint": r.fingerprint,
        "rule": r.rule,
        "account_number": r.account_number,
        "status": r.status,
        "summary": r.summary,
        "created_at": _time(r.created_at),
        "state": r.state,
        "last_error": r.last_error,
        "updated_at": _time(r.updated_at),
        "attempts": [
            {"at": _time(a.at), "outcome": a.outcome, "error": a.error} for a in r.attempts
        ],
        "acknowledged_by": (r.ack.author or "unknown") if r.ack is not None else None,
        "acknowledged_at": _time(r.ack.at) if r.ack is not None else None,
        "ack_comment": r.ack.comment if r.ack is not None else None,
    }


async def select_notifications(
    store: Store,
    *,
    since: float,
    rule: str | None,
    account: str | None,
    sink: str | None,
    status: str | None,
) -> list[NotificationRecord]:
    records = await store.notifications(since=since, rule=rule, sink=sink, state=status)
    if account is not None:
        records = [
            r
            for r in records
            if r.account_number is not None and fnmatchcase(r.account_number, account)
        ]
    return records
