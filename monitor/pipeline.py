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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias

import structlog

from monitor.config import Config, DeltaRuleConfig, RuleConfig
from monitor.cycle import Delivery, HistoryPoint, PollRecord, PollWrite
from monitor.errors import FetchError, SourceError
from monitor.models import (
    Account,
    ActiveAlert,
    Alert,
    JSONValue,
    Notification,
    ParseResult,
    Problem,
    Snapshot,
    Status,
)
from monitor.mutes import muting
from monitor.parse import parse_body, problem_text
from monitor.rules import AlertKey, SourceHealth, evaluate, evaluate_source, retired_alerts
from monitor.rules.base import RuleProblem
from monitor.store import Store

#: At most this many different evaluation problems are remembered (each is logged once).
PROBLEMS_REMEMBERED = 1000

Queued: TypeAlias = list[tuple[Notification, tuple[str, ...]]]
Held: TypeAlias = list[tuple[Notification, tuple[str, ...], str]]

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
        #: Values over time of the fields windowed ``delta`` rules look at.
        self._history: dict[tuple[str, str], list[tuple[datetime, JSONValue]]] = {}
        #: Rules removed by a reload whose alerts still fire: resolved at the next poll.
        self._retired: dict[str, RuleConfig] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self._reported_full = False
        self._split_of: dict[AlertKey, ActiveAlert] | None = None
        self._split_cache: tuple[list[ActiveAlert], list[ActiveAlert]] = ([], [])

    async def load(self) -> None:
        state = await self.store.load_source(self.source)
        self._accounts, self._health, self._active = state.accounts, state.health, state.active
        self._history = state.history or {}
        self.last_success = state.last_success_at

    @property
    def firing(self) -> int:
        return len(self._split()[0]) + (self._health.down is not None)

    def pending_alerts(self) -> list[ActiveAlert]:
        """The alerts of this source waiting for their rule's ``for``."""
        return list(self._split()[1])

    def firing_alerts(self) -> list[ActiveAlert]:
        """Every alert of this source that is firing now (``source_down`` included)."""
        down = [self._health.down] if self._health.down is not None else []
        return [*self._split()[0], *down]

    def _split(self) -> tuple[list[ActiveAlert], list[ActiveAlert]]:
        """The rule alerts, firing and pending; worked out again only after the state changed
        (the daemon asks every source after each poll of any of them)."""
        if self._split_of is not self._active:
            firing = [a for a in self._active.values() if a.state == "firing"]
            pending = [a for a in self._active.values() if a.state == "pending"]
            self._split_of, self._split_cache = self._active, (firing, pending)
        return self._split_cache

    async def reconfigure(
        self, config: Config, rules: tuple[RuleConfig, ...], fetcher: Fetcher, down_after: int
    ) -> list[str]:
        """Swap in a reloaded config between polls; return the rules whose alerts will end.

        A rule that keeps its name and kind keeps its alerts: the new definition decides at
        the next poll whether they still fire (and resolves them if not). The firing alerts of
        a removed rule (or one that became an event rule) are resolved at the next poll,
        with the old rule's severity, labels and sinks.
        """
        async with self._lock:
            new = {r.name: r for r in rules}
            retired = []
            for rule in self.rules:
                now = new.get(rule.name)
                if now is None or rule.kind != now.kind:
                    retired.append(rule.name)
                    self._retired[rule.name] = rule
            # A rule retired by an earlier reload and back now (as a condition again, if it
            # was one) keeps its alerts; one that just became an event rule stays retired.
            for name, rule in new.items():
                old = self._retired.get(name)
                if old is not None and old.kind == rule.kind:
                    del self._retired[name]
            self.config, self.rules, self.fetcher = config, rules, fetcher
            self._full = True
            self.down_after = down_after
            return sorted(retired)

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
        queued, held = self._queue([alert] if alert else [], now)
        await self.store.commit(
            PollWrite(
                self.source,
                PollRecord(now, ok=False, error=error),
                health,
                deliveries=_deliveries(queued, held),
            )
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
        self._announce(queued, held)
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
        added, dropped = self._record_history(accounts, now, only)
        ended, active = self._retire(now)
        evaluation = evaluate(
            self.rules, previous, snapshot, active, skip=skip, only=only, history=self._history
        )
        self._report(evaluation.problems)
        health, source_alert = self._source_health(ok=True, error=None, now=now)
        alerts = list(evaluation.alerts) + ([source_alert] if source_alert else [])
        old = previous or {}
        if changed is not None:
            upserts = [accounts[n] for n in changed if old.get(n) != accounts[n]]
        else:
            upserts = [a for n, a in accounts.items() if (p := old.get(n)) is None or p != a]
        deletes = [n for n in old if n not in accounts and n not in skip]
        queued, held = self._queue(alerts, now)
        retired_queued, retired_held = self._queue(ended, now, self._retired)
        queued += retired_queued
        held += retired_held
        await self.store.commit(
            PollWrite(
                self.source,
                PollRecord(now, ok=True, account_count=len(accounts)),
                health,
                upserts=tuple(upserts),
                deletes=tuple(deletes),
                active=evaluation.active if evaluation.active != self._active else None,
                active_before=self._active,
                history=tuple(added),
                history_deletes=tuple(dropped),
                deliveries=_deliveries(queued, held),
            )
        )
        self._retired.clear()
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
        self._announce(queued, held)
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

    def _queue(
        self,
        alerts: list[Alert],
        now: datetime,
        definitions: Mapping[str, RuleConfig] | None = None,
    ) -> tuple[Queued, Held]:
        """Each alert with its sinks: queued, or held when a mute window covers its rule.

        ``definitions`` are the rules behind alerts that are no longer in the config (a reload
        removed them): their sinks, ``min_severity`` filter and ``send_resolved`` still apply.
        """
        queued: Queued = []
        held: Held = []
        for a in alerts:
            sinks = self.config.sinks_for(
                a.rule,
                a.severity,
                resolved=a.status is Status.RESOLVED,
                definition=(definitions or {}).get(a.rule),
            )
            item = (Notification(notification_id(a), a), sinks)
            mute = muting(self.config.mute, a.rule, now)
            if mute is None:
                queued.append(item)
            else:
                held.append((*item, mute.name))
        return queued, held

    def _retire(self, now: datetime) -> tuple[list[Alert], dict[AlertKey, ActiveAlert]]:
        """Resolved alerts for the firing alerts of rules a reload removed; the state without
        them (pending ones are simply forgotten)."""
        if not self._retired:
            return [], self._active
        ended: list[Alert] = []
        kept: dict[AlertKey, ActiveAlert] = {}
        for key, state in self._active.items():
            rule = self._retired.get(key[0])
            if rule is None:
                kept[key] = state
            elif state.state == "firing":
                ended += retired_alerts(rule, [state], source=self.source, now=now)
        return ended, kept

    def _record_history(
        self, accounts: Mapping[str, Account], now: datetime, only: frozenset[str] | None
    ) -> tuple[list[HistoryPoint], list[HistoryPoint]]:
        """Note the new values of the fields windowed ``delta`` rules look at; forget those
        that every window has left behind (the value at a window's start is kept)."""
        windows: dict[str, timedelta] = {}
        for rule in self.rules:
            if isinstance(rule, DeltaRuleConfig) and rule.window is not None:
                windows[rule.field] = max(windows.get(rule.field, rule.window), rule.window)
        if not windows and not self._history:
            return [], []
        added: list[HistoryPoint] = []
        dropped: list[HistoryPoint] = []
        numbers = accounts.keys() if only is None else only
        for name in windows:
            for number in numbers:
                account = accounts.get(number)
                if account is None or name not in account.record:
                    continue
                value = account.get(name)
                entries = self._history.setdefault((number, name), [])
                if not entries or entries[-1][1] != value:
                    entries.append((now, value))
                    added.append((number, name, now, value))
        for key, entries in list(self._history.items()):
            window = windows.get(key[1])
            if window is None or key[0] not in accounts:
                dropped += [(key[0], key[1], at, v) for at, v in entries]
                del self._history[key]
                continue
            start = now - window
            # Keep the last value seen at or before the window's start, and everything after.
            while len(entries) > 1 and entries[1][0] <= start:
                at, value = entries.pop(0)
                dropped.append((key[0], key[1], at, value))
        return added, dropped

    def _report(self, problems: tuple[RuleProblem, ...]) -> None:
        """Log each kind of evaluation problem once (a template that failed, an expression that
        cannot be evaluated), with how many accounts it hit this poll and one of them; the
        alerts went out with the default text, the accounts kept their state."""
        kinds: dict[tuple[str, str, str], list[str | None]] = {}
        for problem in problems:
            key = (problem.rule, problem.what, problem.detail)
            kinds.setdefault(key, []).append(problem.account)
        for (rule, what, detail), accounts in kinds.items():
            if (rule, what, detail) in self._reported:
                continue
            if len(self._reported) >= PROBLEMS_REMEMBERED:
                if not self._reported_full:
                    self._reported_full = True
                    self.log.warning("rule_problems_suppressed", remembered=PROBLEMS_REMEMBERED)
                return
            self._reported.add((rule, what, detail))
            self.log.warning(
                "rule_problem",
                rule=rule,
                problem=f"{what}: {detail}",
                accounts=len(accounts),
                example=next((a for a in accounts if a is not None), None),
            )

    def _announce(self, queued: Queued, held: Held | None = None) -> None:
        """Log every alert: queued ones, and held ones with the mute window holding them."""
        items = [(n, sinks, None) for n, sinks in queued] + list(held or [])
        for notification, sinks, mute in items:
            a = notification.alert
            extra = {"held_by": mute} if mute is not None else {}
            self.log.info(
                "alert_" + a.status.value,
                rule=a.rule,
                account=a.account_number,
                severity=a.severity.value,
                summary=a.summary,
                sinks=list(sinks),
                id=notification.id,
                **extra,
            )
        if queued:
            self.on_queued()


def _deliveries(queued: Queued, held: Held) -> tuple[Delivery, ...]:
    return tuple(
        [Delivery(n, tuple(sinks)) for n, sinks in queued]
        + [Delivery(n, tuple(sinks), mute) for n, sinks, mute in held]
    )
