"""One poll of one source: fetch -> parse -> step -> store.commit, then log and metrics.

The decisions are :func:`monitor.cycle.step`'s (pure): this class does the I/O around it and
keeps the step's state between polls. The state is written through to the store in one
transaction per poll (only changed account rows are written). A failed poll (fetch or parse)
counts toward ``source_down`` and never raises; a ``StoreError`` does (the scheduled job logs it
and the next tick tries again from the state on disk).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from monitor.config import Config, RuleConfig
from monitor.cycle import Delivery, PollState, Step, notification_id, reconfigured, step
from monitor.errors import SourceError
from monitor.models import ActiveAlert, ParseResult, Problem
from monitor.parse import parse_body, problem_text
from monitor.rules.base import RuleProblem
from monitor.store import Store

__all__ = ["Fetcher", "PollOutcome", "SourcePipeline", "notification_id"]

#: At most this many different evaluation problems are remembered (each is logged once).
PROBLEMS_REMEMBERED = 1000

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
        self.state = PollState()
        self.last: PollOutcome | None = None
        self.last_success: datetime | None = None
        self.last_poll_at: datetime | None = None
        self._not_before: datetime | None = None
        self._problems = _ProblemLog(self.log)
        self._lock = asyncio.Lock()  # a poll and a reconfiguration never interleave
        self._split_of: PollState | None = None
        self._split: tuple[list[ActiveAlert], list[ActiveAlert]] = ([], [])

    async def load(self) -> None:
        stored = await self.store.load_source(self.source)
        self.state = PollState.loaded(stored)
        self.last_success = stored.last_success_at

    @property
    def firing(self) -> int:
        return len(self._alerts()[0])

    def pending_alerts(self) -> list[ActiveAlert]:
        """The alerts of this source waiting for their rule's ``for``."""
        return list(self._alerts()[1])

    def firing_alerts(self) -> list[ActiveAlert]:
        """Every alert of this source that is firing now (``source_down`` included)."""
        return list(self._alerts()[0])

    def _alerts(self) -> tuple[list[ActiveAlert], list[ActiveAlert]]:
        """Firing and pending alerts; worked out again only after the state changed (the
        daemon asks every source after each poll of any of them)."""
        if self._split_of is not self.state:
            self._split_of, self._split = self.state, (self.state.firing, self.state.pending)
        return self._split

    async def reconfigure(
        self, config: Config, rules: tuple[RuleConfig, ...], fetcher: Fetcher, down_after: int
    ) -> list[str]:
        """Swap in a reloaded config between polls; return the rules whose alerts will end
        (:func:`monitor.cycle.reconfigured`)."""
        async with self._lock:
            self.state, ending = reconfigured(self.state, self.rules, rules)
            self.config, self.rules, self.fetcher = config, rules, fetcher
            self.down_after = down_after
            return ending

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
            seen: ParseResult | SourceError
            try:
                body = await self.fetcher.fetch()
                seen = parse_body(body, self.state.accounts)
            except SourceError as exc:
                seen = exc
            else:
                self._problems.records(seen.problems)
            done = step(
                self.state,
                seen,
                source=self.source,
                config=self.config,
                rules=self.rules,
                down_after=self.down_after,
                now=now,
            )
            await self.store.commit(done.write)
            previous, self.state = self.state, done.state
            outcome = self._logged(done, previous, now, time.monotonic() - started)
            self.last, self.last_poll_at = outcome, now
        if self.on_poll is not None:
            self.on_poll(outcome)
        return outcome

    def _logged(
        self, done: Step, previous: PollState, now: datetime, duration: float
    ) -> PollOutcome:
        """Log the poll and its alerts; the outcome for metrics and readiness."""
        ms = round(duration * 1000, 1)
        if done.error is not None:
            retry = done.retry_after
            self._not_before = now + timedelta(seconds=retry) if retry else None
            self.log.warning(
                "poll_failed",
                error=done.error,
                failures=done.state.health.failures,
                retry_after=retry,
                duration_ms=ms,
            )
            self._announce(done.write.deliveries)
            return PollOutcome(
                ok=False,
                source=self.source,
                error=done.error,
                notifications=len(done.write.queued),
                duration=duration,
            )
        self._not_before = None
        self.last_success = now
        self._problems.rules(done.problems)
        count = done.write.poll.account_count or 0
        event = "baseline_recorded" if previous.accounts is None else "poll_ok"
        quiet = previous.accounts is not None and not done.changed and not done.alerts
        (self.log.debug if quiet else self.log.info)(
            event,
            accounts=count,
            changed=done.changed,
            notifications=done.alerts,
            duration_ms=ms,
        )
        self._announce(done.write.deliveries)
        return PollOutcome(
            ok=True,
            source=self.source,
            accounts=count,
            changed=done.changed,
            notifications=done.alerts,
            duration=duration,
        )

    def _announce(self, deliveries: Sequence[Delivery]) -> None:
        """Log every alert: queued ones, and held ones with the mute window holding them."""
        for d in sorted(deliveries, key=lambda d: d.held_by is not None):
            a = d.notification.alert
            extra = {"held_by": d.held_by} if d.held_by is not None else {}
            self.log.info(
                "alert_" + a.status.value,
                rule=a.rule,
                account=a.account_number,
                severity=a.severity.value,
                summary=a.summary,
                sinks=list(d.sinks),
                id=d.notification.id,
                **extra,
            )
        if any(d.held_by is None for d in deliveries):
            self.on_queued()


class _ProblemLog:
    """Logs each problem once: a bad record (again only when its problem changes), an unknown
    enum value (once per process), a kind of rule problem (once, with how many accounts it hit
    this poll and one of them; the alerts went out with the default text)."""

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self.log = logger
        self._records: dict[str, str] = {}
        self._enums: set[tuple[str, str]] = set()
        self._rules: set[tuple[str, str, str]] = set()
        self._rules_full = False

    def records(self, problems: Sequence[Problem]) -> None:
        seen: dict[str, str] = {}
        for problem in problems:
            number, field = problem.account_number, problem.field
            if not problem.skipped:
                key = (str(field), problem.message)
                if key not in self._enums:
                    self._enums.add(key)
                    self.log.warning(
                        "unknown_value", account=number, field=field, problem=problem.message
                    )
                continue
            ident = number if number is not None else f"#{problem.index}"
            text = problem_text(problem)
            seen[ident] = text
            if self._records.get(ident) != text:
                self.log.warning("record_skipped", account=number, field=field, problem=text)
        self._records = seen

    def rules(self, problems: Sequence[RuleProblem]) -> None:
        kinds: dict[tuple[str, str, str], list[str | None]] = {}
        for problem in problems:
            kinds.setdefault((problem.rule, problem.what, problem.detail), []).append(
                problem.account
            )
        for key, accounts in kinds.items():
            if key in self._rules:
                continue
            if len(self._rules) >= PROBLEMS_REMEMBERED:
                if not self._rules_full:
                    self._rules_full = True
                    self.log.warning("rule_problems_suppressed", remembered=PROBLEMS_REMEMBERED)
                return
            self._rules.add(key)
            rule, what, detail = key
            self.log.warning(
                "rule_problem",
                rule=rule,
                problem=f"{what}: {detail}",
                accounts=len(accounts),
                example=next((a for a in accounts if a is not None), None),
            )
