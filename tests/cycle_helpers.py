"""Helpers for tests of the pure poll step (:func:`monitor.cycle.step`): a config, records and
the body that carries them, one step, and :class:`Polls`, a source's polls one after the
other with the state kept in between.

No store, no SQL, no clock: every poll says when it happens, and the tests assert on the
:class:`~monitor.cycle.Step` it returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from monitor import encoding
from monitor.config import Config, config_from_dict
from monitor.cycle import PollState, PollWrite, Step, reconfigured, step
from monitor.errors import SourceError
from monitor.models import ParseResult
from monitor.parse import parse_body
from monitor.silences import EMPTY, ControlState

SOURCE = "default"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # a Wednesday, 08:00 in New York
LOW_CASH: dict[str, Any] = {
    "type": "threshold",
    "name": "low-cash",
    "field": "cash",
    "op": "<",
    "value": 1000,
    "sinks": ["ops"],
}
#: The same rule naming no sinks: it notifies every sink.
LOW_CASH_EVERY_SINK: dict[str, Any] = {k: v for k, v in LOW_CASH.items() if k != "sinks"}
RESTRICTED: dict[str, Any] = {"type": "restriction_change", "name": "restricted"}
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
SINKS: list[dict[str, Any]] = [{"type": "log", "name": "ops"}, {"type": "log", "name": "audit"}]
#: A windowed delta rule: cash fell by 1000 or more within the last hour.
FALL: dict[str, Any] = {
    "type": "delta",
    "name": "cash-fall",
    "field": "cash",
    "by": 1000,
    "direction": "down",
    "window": "1h",
    "sinks": ["ops"],
}


def config(
    *rules: dict[str, Any], sinks: Sequence[dict[str, Any]] = SINKS, **sections: Any
) -> Config:
    """A config with these rules: ``low-cash`` and ``restricted`` when none are given,
    none with ``config(rules=[])``; other sections (``mute``) as keyword arguments."""
    return config_from_dict(
        {
            "api": {"url": "http://127.0.0.1:9/accounts", "token": "t0ken"},
            "sinks": list(sinks),
            "rules": list(rules) if rules else [LOW_CASH, RESTRICTED],
            **sections,
        },
        base_dir=Path(),
    )


def record(number: str, cash: Any = "5000.00", **fields: Any) -> dict[str, Any]:
    return {"account_number": number, "restriction": "none", "cash": cash, **fields}


def body(*records: dict[str, Any]) -> bytes:
    """The response body carrying ``records``; a number given as text (``"5000.00"``) is sent
    as a JSON number with those digits, as the API sends money."""
    return encoding.dumps([{k: _number(k, v) for k, v in r.items()} for r in records]).encode()


def _number(name: str, value: Any) -> Any:
    if name != "account_number" and isinstance(value, str) and _NUMBER.fullmatch(value):
        return Decimal(value)
    return value


def later(**delta: float) -> datetime:
    """``T0`` plus a ``timedelta`` of these arguments: when a poll happens."""
    return T0 + timedelta(**delta)


def run(
    state: PollState,
    seen: ParseResult | bytes | SourceError,
    cfg: Config | None = None,
    *,
    now: datetime = T0,
    down_after: int = 3,
    control: ControlState = EMPTY,
) -> Step:
    """One step of ``state``: ``seen`` a body (parsed here), a parse result or an error."""
    cfg = cfg if cfg is not None else config()
    if isinstance(seen, bytes):
        seen = parse_body(seen, state.accounts)
    return step(
        state,
        seen,
        source=SOURCE,
        config=cfg,
        rules=cfg.rules,
        down_after=down_after,
        now=now,
        control=control,
    )


def baseline(*records: dict[str, Any], cfg: Config | None = None) -> PollState:
    return run(PollState(), body(*records), cfg).state


def statuses(write: PollWrite) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    """``(rule, status, held_by, sinks)`` of every delivery, queued or held."""
    return [
        (d.notification.alert.rule, d.notification.alert.status.value, d.held_by, d.sinks)
        for d in write.deliveries
    ]


def outbox(*writes: PollWrite) -> list[tuple[str, str, str, str]]:
    """``(rule, status, sink, account)`` of what these writes queue, one row per sink, in the
    order the store queues them (``account`` is ``""`` for ``source_down``)."""
    return [
        (a.rule, a.status.value, sink, a.account_number or "")
        for write in writes
        for d in write.queued
        for a in [d.notification.alert]
        for sink in d.sinks
    ]


def summaries(*writes: PollWrite) -> list[tuple[str, str, str, str]]:
    """``(rule, status, sink, summary)``: :func:`outbox` with the summary for the account."""
    return [
        (
            d.notification.alert.rule,
            d.notification.alert.status.value,
            sink,
            d.notification.alert.summary,
        )
        for write in writes
        for d in write.queued
        for sink in d.sinks
    ]


def alerts(state: PollState) -> list[tuple[str, str, str, datetime | None]]:
    """``(rule, account, state, notified_at)`` of every rule alert, pending or firing."""
    return sorted(
        (a.rule, a.account_number or "", a.state, a.notified_at) for a in state.active.values()
    )


class Polls:
    """A source's polls through the pure step, one after the other: the state one poll leaves
    is the next one's, as :class:`monitor.pipeline.SourcePipeline` keeps it; each poll is told
    when it happens. ``writes`` holds every poll's write, oldest first."""

    def __init__(self, cfg: Config | None = None, *, down_after: int = 3) -> None:
        self.config = cfg if cfg is not None else config()
        self.down_after = down_after
        self.state = PollState()
        self.writes: list[PollWrite] = []
        self._last: bytes | None = None
        #: The silences and acks in force (set it between polls).
        self.control: ControlState = EMPTY

    def poll(self, seen: bytes | SourceError | None = None, *, at: datetime) -> Step:
        """A poll at ``at`` that saw ``seen`` (a body, or why there is none); the last body
        again when ``seen`` is omitted."""
        if seen is None:
            if self._last is None:
                raise LookupError("Polls: no body seen yet")
            seen = self._last
        elif isinstance(seen, bytes):
            self._last = seen
        done = run(
            self.state, seen, self.config, now=at, down_after=self.down_after, control=self.control
        )
        self.state = done.state
        self.writes.append(done.write)
        return done

    def reload(self, cfg: Config) -> list[str]:
        """Swap in ``cfg`` between polls; the rules whose alerts will end."""
        self.state, ending = reconfigured(self.state, self.config.rules, cfg.rules)
        self.config = cfg
        return ending

    def outbox(self) -> list[tuple[str, str, str, str]]:
        """:func:`outbox` of every poll so far: what the store's outbox would hold."""
        return outbox(*self.writes)

    def summaries(self) -> list[tuple[str, str, str, str]]:
        return summaries(*self.writes)
