"""One poll cycle of one source: fetch -> parse -> diff -> rules -> outbox, in one transaction.

The previous snapshot, the firing alerts and the source's health live in memory and are written
through to the store; only changed account rows are written. A failed poll (fetch or parse)
counts toward ``source_down`` and never raises; a ``StoreError`` does (the scheduled job logs it
and the next tick tries again from the state on disk).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from monitor.config import Config, RuleConfig
from monitor.errors import FetchError, SourceError
from monitor.models import (
    Account,
    ActiveAlert,
    Alert,
    Notification,
    ParseResult,
    Problem,
    Snapshot,
)
from monitor.parse import parse_body, problem_text
from monitor.rules import AlertKey, SourceHealth, evaluate, evaluate_source
from monitor.store import PollRecord, Store

log = structlog.get_logger("monitor.pipeline")


class Fetcher(Protocol):
    """Where the raw balances come from (:class:`monitor.source.BalancesSource`, or a fake)."""

    async def fetch(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class PollOutcome:
    ok: bool
    source: str = ""
    error: str | None = None
    accounts: int = 0
    changed: int = 0
    notifications: int = 0
    duration: float = 0.0


def notification_id(alert: Alert) -> str:
    """Stable id of one notification: a replayed poll produces the same id, never a new one."""
    text = f"{alert.fingerprint}\x1f{alert.status.value}\x1f{alert.observed_at.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SourcePipeline:
    """Polls one source and turns what it sees into queued notifications."""

    def __init__(
        self,
        *,
        source: str,
        config: Config,
        rules: tuple[RuleConfig, ...],
        fetcher: Fetcher,
        store: Store,
        on_queued: Callable[[], None],
        clock: Callable[[], datetime],
        on_poll: Callable[[PollOutcome], None] | None = None,
        down_after: int = 3,
    ) -> None:
        self.down_after = down_after
        self.source = source
        self.on_poll = on_poll
        self.config = config
        self.rules = rules
        self.fetcher = fetcher
        self.store = store
        self.on_queued = on_queued
        self.clock = clock
        self.log = log.bind(source=source)
        self._accounts: dict[str, Account] | None = None
        self._health = SourceHealth()
        self._active: dict[AlertKey, ActiveAlert] = {}
        self._not_before: datetime | None = None
        self._problems: dict[str, str] = {}
        self._enum_warned: set[tuple[str, str]] = set()
        self.last: PollOutcome | None = None
        self.last_success: datetime | None = None
        self.last_poll_at: datetime | None = None
        self._lock = asyncio.Lock()  # a poll and a reconfiguration never interleave
        self._full = True  # evaluate every account on the next poll (start-up, reload)

    async def load(self) -> None:
        state = await self.store.load_source(self.source)
        self._accounts, self._health, self._active = state.accounts, state.health, state.active
        self.last_success = state.last_success_at

    @property
    def firing(self) -> int:
        return len(self._active) + (self._health.down is not None)

    def firing_alerts(self) -> list[ActiveAlert]:
        """Every alert of this source that is firing now (``source_down`` included)."""
        down = [self._health.down] if self._health.down is not None else []
        return [*self._active.values(), *down]

    async def reconfigure(
        self, config: Config, rules: tuple[RuleConfig, ...], fetcher: Fetcher, down_after: int
    ) -> list[str]:
        """Swap in a reloaded config between polls; return the rules whose state was reset.

        A rule whose definition is unchanged keeps its firing alerts (no re-notification); a
        changed or removed rule's alerts are dropped, so the new definition decides afresh.
        """
        async with self._lock:
            old = {r.name: r for r in self.rules}
            new = {r.name: r for r in rules}
            reset = sorted(name for name, rule in old.items() if new.get(name) != rule)
            self._active = {k: v for k, v in self._active.items() if k[0] not in reset}
            self.config, self.rules, self.fetcher = config, rules, fetcher
            self._full = True
            self.down_after = down_after
            return reset

    async def job(self) -> None:
        """The scheduled job: one poll, honouring a ``Retry-After``; never raises."""
        now = self.clock()
        if self._not_before is not None and now < self._not_before:
            self.log.info("poll_deferred", until=self._not_before.isoformat())
            return
        try:
            await self.poll()
        except Exception as exc:  # the one broad except of this job: log and go on
            self.log.error("poll_crashed", error=str(exc), exc_info=True)

    async def poll(self) -> PollOutcome:
        async with self._lock:
            started = time.monotonic()
            now = self.clock()
            try:
                body = await self.fetcher.fetch()
                result = parse_body(body, self._accounts)
            except SourceError as exc:
                outcome = await self._failed(now, exc, started)
            else:
                outcome = await self._succeeded(now, result, started)
                self.last_success = now
            self.last, self.last_poll_at = outcome, now
        if self.on_poll is not None:
            self.on_poll(outcome)
        return outcome

    async def _failed(self, now: datetime, exc: SourceError, started: float) -> PollOutcome:
        error = str(exc)
        retry_after = exc.retry_after if isinstance(exc, FetchError) else None
        self._not_before = now + timedelta(seconds=retry_after) if retry_after else None
        health, alert = self._source_health(ok=False, error=error, now=now)
        queued = self._queue([alert] if alert else [])
        await self.store.commit_poll(
            self.source, poll=PollRecord(now, ok=False, error=error), health=health, outbox=queued
        )
        self._health = health
        duration = time.monotonic() - started
        self.log.warning(
            "poll_failed",
            error=error,
            failures=health.failures,
            retry_after=retry_after,
            duration_ms=round(duration * 1000, 1),
        )
        self._announce(queued)
        return PollOutcome(
            ok=False, source=self.source, error=error, notifications=len(queued), duration=duration
        )

    async def _succeeded(self, now: datetime, result: ParseResult, started: float) -> PollOutcome:
        self._not_before = None
        accounts, changed = result.accounts, result.changed
        # A duplicate of a usable record is skipped, not the account: the first record wins.
        skip = frozenset(n for n in self._note_problems(result.problems) if n not in accounts)
        snapshot = Snapshot(self.source, now, accounts)
        previous = self._accounts
        # Unchanged records cannot change a rule's outcome; after a reload every rule is new.
        only = None if previous is None or self._full else changed
        evaluation = evaluate(self.rules, previous, snapshot, self._active, skip=skip, only=only)
        health, source_alert = self._source_health(ok=True, error=None, now=now)
        alerts = list(evaluation.alerts) + ([source_alert] if source_alert else [])
        old = previous or {}
        if changed is not None:
            upserts = [accounts[n] for n in changed if old.get(n) != accounts[n]]
        else:
            upserts = [a for n, a in accounts.items() if (p := old.get(n)) is None or p != a]
        deletes = [n for n in old if n not in accounts and n not in skip]
        queued = self._queue(alerts)
        await self.store.commit_poll(
            self.source,
            poll=PollRecord(now, ok=True, account_count=len(accounts)),
            health=health,
            upserts=upserts,
            deletes=deletes,
            active=evaluation.active if evaluation.active != self._active else None,
            outbox=queued,
        )
        merged = dict(accounts)
        for number in skip:  # an unusable record keeps its last good snapshot
            if number in old:
                merged[number] = old[number]
        self._accounts, self._health, self._active = merged, health, evaluation.active
        self._full = False
        duration = time.monotonic() - started
        event = "baseline_recorded" if previous is None else "poll_ok"
        level = (
            self.log.info if (previous is None or upserts or deletes or alerts) else self.log.debug
        )
        level(
            event,
            accounts=len(accounts),
            changed=len(upserts) + len(deletes),
            notifications=len(alerts),
            duration_ms=round(duration * 1000, 1),
        )
        self._announce(queued)
        return PollOutcome(
            ok=True,
            source=self.source,
            accounts=len(accounts),
            changed=len(upserts) + len(deletes),
            notifications=len(alerts),
            duration=duration,
        )

    def _source_health(
        self, *, ok: bool, error: str | None, now: datetime
    ) -> tuple[SourceHealth, Alert | None]:
        return evaluate_source(
            self._health,
            ok=ok,
            error=error,
            down_after=self.down_after,
            source=self.source,
            now=now,
        )

    def _note_problems(self, problems: tuple[Problem, ...]) -> frozenset[str]:
        """Warn once per bad record (again only when its problem changes); return their numbers.

        An unknown enum value is kept as data and warned about once per process.
        """
        skip: set[str] = set()
        seen: dict[str, str] = {}
        for problem in problems:
            number, field = problem.account_number, problem.field
            if not problem.skipped:
                key = (str(field), problem.message)
                if key not in self._enum_warned:
                    self._enum_warned.add(key)
                    self.log.warning(
                        "unknown_value", account=number, field=field, problem=problem.message
                    )
                continue
            if number is not None:
                skip.add(number)
            ident = number if number is not None else f"#{problem.index}"
            text = problem_text(problem)
            seen[ident] = text
            if self._problems.get(ident) != text:
                self.log.warning("record_skipped", account=number, field=field, problem=text)
        self._problems = seen
        return frozenset(skip)

    def _queue(self, alerts: list[Alert]) -> list[tuple[Notification, tuple[str, ...]]]:
        return [
            (Notification(notification_id(a), a), self.config.sinks_for(a.rule, a.severity))
            for a in alerts
        ]

    def _announce(self, queued: list[tuple[Notification, tuple[str, ...]]]) -> None:
        for notification, sinks in queued:
            a = notification.alert
            self.log.info(
                "alert_" + a.status.value,
                rule=a.rule,
                account=a.account_number,
                severity=a.severity.value,
                summary=a.summary,
                sinks=list(sinks),
                id=notification.id,
            )
        if queued:
            self.on_queued()
