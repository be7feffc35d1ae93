"""One poll of one source: fetch -> parse -> step -> store.commit, then log and metrics.

The decisions are :func:`monitor.cycle.step`'s (pure): this class does the I/O around it and
keeps the step's state between polls. The state is written through to the store in one
transaction per poll (only changed account rows are written).

Every poll ends as a success or as a failed poll with its cause, never otherwise:

- a fetch or parse error, and any unexpected exception out of fetch, parse or the step (a bug),
  goes through the step as a failed poll: it counts toward ``source_down``, is the
  ``PollOutcome``'s ``error`` (metrics, readiness) and is logged once (``poll_failed``; a bug
  at error level, with its traceback when it is new);
- a poll the store could not write (``StoreError``: disk full, I/O error) is a failed poll
  counted in memory only: the state stays what was last committed, so the next poll that can
  be written writes everything this one could not. The cause is logged once
  (``store_write_failed``), the recovery too (``store_write_recovered``);
- a poll whose write raised anything else (a bug) is written again as a failed poll;
- a poll whose write was fenced off (``LeaseLostError``: several replicas share a PostgreSQL
  and another one took the source over while this one was paused) is a failed poll that
  writes nothing: ``source_lost`` is logged and ``on_lost`` stops the polls of the source.

A ``Retry-After`` defers the next polls, for at most :func:`retry_after_bound`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from monitor.config import Config, RuleConfig
from monitor.cycle import Delivery, PollState, Step, notification_id, reconfigured, step
from monitor.errors import LeaseLostError, SourceError, StoreError
from monitor.escalation import next_escalation
from monitor.journal import JOURNAL_TIMEOUT, Explainer, JournalFetcher
from monitor.models import Account, ActiveAlert, ParseResult, Problem
from monitor.parse import problem_text
from monitor.rules.base import RuleProblem
from monitor.rules.lifecycle import next_wait
from monitor.silences import EMPTY, ControlState
from monitor.split import parse_split
from monitor.store import Store
from monitor.text import one_line

__all__ = ["Fetcher", "PollOutcome", "SourcePipeline", "notification_id", "retry_after_bound"]

#: At most this many different evaluation problems are remembered (each is logged once).
PROBLEMS_REMEMBERED = 1000
#: A ``Retry-After`` is honoured up to the source's poll interval, or this if that is shorter.
RETRY_AFTER_FLOOR = timedelta(minutes=5)
#: The most of an unexpected exception's text a poll's error quotes.
_BUG_TEXT = 200

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
        journal_timeout: float = JOURNAL_TIMEOUT,
        control: Callable[[], ControlState] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        #: When the accounts were last seen (a successful poll, or a push): the journal
        #: explains what happened since.
        self._seen_at: datetime | None = None
        #: Told the source's name when a poll's write was refused for a lost lease.
        self.on_lost = on_lost
        self.down_after = down_after
        #: The silences and acknowledged episodes in force (the daemon's ControlBook).
        self.control = control if control is not None else (lambda: EMPTY)
        self.source = source
        self.on_poll = on_poll
        self.config = config
        self.rules = rules
        self.fetcher = fetcher
        self.store = store
        self.on_queued = on_queued
        self.clock = clock
        self.log = log.bind(source=source)
        self._explainer = Explainer(self.log, journal_timeout)
        self.state = PollState()
        self.last: PollOutcome | None = None
        self.last_success: datetime | None = None
        self.last_poll_at: datetime | None = None
        self._not_before: datetime | None = None
        self._problems = _ProblemLog(self.log)
        self._lock = asyncio.Lock()  # a poll and a reconfiguration never interleave
        self._split_of: PollState | None = None
        self._split: tuple[list[ActiveAlert], list[ActiveAlert]] = ([], [])
        #: The unexpected exception of this poll (a bug), and the text of the last one logged
        #: with its traceback (a bug that goes on is not logged with it again).
        self._bug: Exception | None = None
        self._bug_logged: str | None = None
        #: Why the store could not write the last polls, and how many it could not.
        self._unwritten: str | None = None
        self._unwritten_polls = 0

    async def load(self) -> None:
        stored = await self.store.load_source(self.source)
        self.state = PollState.loaded(stored)
        self.last_success = self._seen_at = stored.last_success_at

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
        """One poll; a failure of any kind is the outcome's ``error``, never an exception."""
        async with self._lock:
            started = time.monotonic()
            now = self.clock()
            self._bug = None
            done = await self._explained(self._step(await self._look(), now), now)
            try:
                await self.store.commit(done.write)
            except LeaseLostError as exc:
                outcome = self._lost(str(exc), time.monotonic() - started)
            except StoreError as exc:
                outcome = self._not_written(str(exc), time.monotonic() - started)
            except Exception as exc:  # a bug in writing this poll: write it as a failed one
                done = self._step(self._unexpected(exc), now)
                try:
                    await self.store.commit(done.write)
                except Exception as again:  # nothing can be written: counted in memory
                    outcome = self._not_written(str(again), time.monotonic() - started)
                else:
                    outcome = self._written(done, now, started)
            else:
                outcome = self._written(done, now, started)
            self.last, self.last_poll_at = outcome, now
        if self.on_poll is not None:
            self.on_poll(outcome)
        return outcome

    async def push(self, seen: ParseResult, *, fresh: bool = True) -> int:
        """A push of the account stream: the accounts it carries, read by the caller with the
        current accounts as ``previous`` (:attr:`accounts`). Serialized with the polls; written
        only when it changed something; returns how many alerts it notified. A failure is logged
        (the next push or poll makes up for it), never raised. ``fresh=False``: nothing was
        seen (:meth:`step_due`), the accounts stay as fresh as they were."""
        async with self._lock:
            now = self.clock()
            try:
                done = self._run_step(seen, now, partial=True)
            except Exception as exc:  # a bug in the rules or the step: the next poll retries
                self.log.error("push_failed", error=str(exc), exc_info=True)
                return 0
            self._problems.records(seen.problems, partial=True)
            if done.write.writes_nothing:
                self.state = done.state
                return 0
            done = await self._explained(done, now)
            try:
                await self.store.commit(done.write)
            except LeaseLostError as exc:  # fenced off like a poll: another replica has it
                self._lost(str(exc), 0.0)
                return 0
            except Exception as exc:  # not written: the state stays, the next poll writes it
                self.log.error("push_not_written", error=str(exc))
                return 0
            self.state = done.state
            if fresh:
                self._seen_at = now
            self._problems.rules(done.problems)
            quiet = not done.changed and not done.alerts  # as a poll: debug when nothing moved
            (self.log.debug if quiet else self.log.info)(
                "push_applied" if fresh else "due_stepped",
                changed=done.changed,
                notifications=done.alerts,
                accounts=len(seen.accounts),
            )
            self._announce(done.write.deliveries)
            return done.alerts

    def due_at(self, *, waits: bool) -> datetime | None:
        """When time alone next changes this source's alerts, if it will: an escalation step
        and, with ``waits``, the end of a pending wait (``for``) or a ``repeat`` reminder.

        ``waits`` only while the account stream is connected: a push brings each change as it
        happens, so the records at hand are current. Without it they are as old as the last
        poll, and the next poll, which judges ``for`` on fresh records, is at most an interval
        away (an escalation only needs the alert to be firing)."""
        times = (
            next_escalation(self.rules, self.state.active, self.control().acks),
            next_wait(self.rules, self.state.active) if waits else None,
        )
        return min((t for t in times if t is not None), default=None)

    async def step_due(self) -> int:
        """Step the source with nothing new seen (an empty push: no account changes, no poll
        recorded), so that what fell due with time (:meth:`due_at`) is sent without waiting for
        a poll; how many notifications it queued. Never raises, like :meth:`push`."""
        return await self.push(ParseResult(accounts={}, changed=frozenset()), fresh=False)

    @property
    def accounts(self) -> Mapping[str, Account] | None:
        """The last known record of each account (``None`` before the first successful poll)."""
        return self.state.accounts

    async def _explained(self, done: Step, now: datetime) -> Step:
        """``done`` with the journal's entries on the notifications that ask for them
        (:class:`monitor.journal.Explainer`)."""
        fetcher = self.fetcher
        if not done.write.deliveries or not isinstance(fetcher, JournalFetcher):
            return done
        return await self._explainer.explain(
            done,
            fetcher,
            self.rules,
            source_explains=self._explains(),
            since=self._seen_at,
            now=now,
        )

    def _explains(self) -> bool:
        """Whether the source explains every rule's alerts (``[api] explain = true``)."""
        return any(s.config.explain for s in self.config.all_sources() if s.name == self.source)

    async def _look(self) -> ParseResult | SourceError:
        """What the poll saw: the parsed body, or why there is none (an unexpected exception
        out of fetch or parse included)."""
        try:
            body = await self.fetcher.fetch()
            seen = parse_split(body, self.state.accounts)
        except SourceError as exc:
            return exc
        except Exception as exc:  # a bug: the poll fails with it as its cause
            return self._unexpected(exc)
        self._problems.records(seen.problems)
        return seen

    def _step(self, seen: ParseResult | SourceError, now: datetime) -> Step:
        """The pure step on what the poll saw; an exception out of it fails the poll."""
        try:
            return self._run_step(seen, now)
        except Exception as exc:  # a bug in the rules or the step
            return self._run_step(self._unexpected(exc), now)

    def _run_step(
        self, seen: ParseResult | SourceError, now: datetime, *, partial: bool = False
    ) -> Step:
        """The pure step on this source's state; ``partial``: a push of the stream."""
        return step(
            self.state,
            seen,
            source=self.source,
            config=self.config,
            rules=self.rules,
            down_after=self.down_after,
            now=now,
            partial=partial,
            control=self.control(),
        )

    def _unexpected(self, exc: Exception) -> SourceError:
        """The error of a poll an unexpected exception ended: its class and its text."""
        self._bug = exc
        text = one_line(str(exc))[:_BUG_TEXT]
        name = type(exc).__name__
        return SourceError(
            f"unexpected error: {name}: {text}" if text else f"unexpected error: {name}"
        )

    def _written(self, done: Step, now: datetime, started: float) -> PollOutcome:
        """The poll's write is committed: the state moves on to the step's."""
        if self._unwritten is not None:
            self.log.info("store_write_recovered", polls_not_written=self._unwritten_polls)
            self._unwritten, self._unwritten_polls = None, 0
        previous, self.state = self.state, done.state
        return self._logged(done, previous, now, time.monotonic() - started)

    def _not_written(self, error: str, duration: float) -> PollOutcome:
        """The store could not write the poll: a failed poll, counted in memory only. The state
        stays what was committed, so the next poll written rewrites all this one did not."""
        self._unwritten_polls += 1
        if error != self._unwritten:
            self._unwritten = error
            self.log.error("store_write_failed", error=error)
        else:
            self.log.debug("store_write_failed", error=error, polls=self._unwritten_polls)
        return PollOutcome(
            ok=False,
            source=self.source,
            error=f"state not written: {error}",
            duration=duration,
        )

    def _lost(self, error: str, duration: float) -> PollOutcome:
        """Another replica holds the source now: nothing of this poll is written, and the
        state is what another replica may since have moved on from (reloaded if the source
        comes back)."""
        self.log.warning("source_lost", error=error)
        if self.on_lost is not None:
            self.on_lost(self.source)
        return PollOutcome(
            ok=False, source=self.source, error=f"lease lost: {error}", duration=duration
        )

    def _retry_after(self, asked: float) -> float:
        """The wait a ``Retry-After`` of ``asked`` seconds gets: at most the bound."""
        bound = retry_after_bound(self.config, self.source).total_seconds()
        if asked <= bound:
            return asked
        self.log.warning("retry_after_capped", asked=asked, used=bound)
        return bound

    def _logged(
        self, done: Step, previous: PollState, now: datetime, duration: float
    ) -> PollOutcome:
        """Log the poll and its alerts; the outcome for metrics and readiness."""
        ms = round(duration * 1000, 1)
        if done.error is not None:
            retry = done.retry_after
            if retry:
                retry = self._retry_after(retry)
            self._not_before = now + timedelta(seconds=retry) if retry else None
            failed = {
                "error": done.error,
                "failures": done.state.health.failures,
                "retry_after": retry,
                "duration_ms": ms,
            }
            if self._bug is None:
                self.log.warning("poll_failed", **failed)
            elif done.error != self._bug_logged:  # a new bug: with its traceback, once
                self._bug_logged = done.error
                self.log.error("poll_failed", **failed, exc_info=self._bug)
            else:
                self.log.error("poll_failed", **failed)
            self._announce(done.write.deliveries)
            return PollOutcome(
                ok=False,
                source=self.source,
                error=done.error,
                notifications=len(done.write.queued),
                duration=duration,
            )
        self._not_before = None
        self._bug_logged = None
        self.last_success = self._seen_at = now
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

    def records(self, problems: Sequence[Problem], *, partial: bool = False) -> None:
        """Log the bad records of a poll (``partial``: of a push, which says nothing of the
        accounts it does not carry, so those stay as the last poll left them)."""
        seen: dict[str, str] = dict(self._records) if partial else {}
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


def retry_after_bound(config: Config, source: str) -> timedelta:
    """The longest ``Retry-After`` honoured for ``source``: its longest poll interval, or
    :data:`RETRY_AFTER_FLOOR` when that is shorter. A longer wait is cut to this, so a source
    that keeps asking for one is polled, and fails, and ``source_down`` counts it."""
    schedule = config.schedule
    interval = schedule.interval
    for spec in config.all_sources():
        if spec.name == source and spec.interval is not None:
            interval = spec.interval
    longest = max(interval, schedule.off_hours_interval or interval)
    return max(longest, RETRY_AFTER_FLOOR)
