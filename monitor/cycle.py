"""One poll of one source as a pure step: what it saw -> the new state and every write. Pure.

:func:`step` takes the source's :class:`PollState`, the parse outcome or the fetch error, the
rules, the config (sinks and mutes) and ``now``; it returns the new state and one
:class:`PollWrite` describing everything the poll writes: account upserts and deletes, alert
state, history points, source health, accounts that left, and the notifications queued or held.
The flow is
parse (done by the caller) -> :func:`monitor.diff.diff` -> :func:`monitor.rules.evaluate` ->
``source_down`` -> sinks and mutes. The store writes a ``PollWrite`` in one transaction
(:meth:`monitor.store.Store.commit`); :class:`monitor.pipeline.SourcePipeline` does the I/O,
the logging and the metrics around it. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeAlias

from monitor.config import Config, DeltaRuleConfig, RuleConfig
from monitor.diff import changed_fields, diff, same
from monitor.errors import FetchError, SourceError
from monitor.escalation import escalate
from monitor.models import (
    SERIES_FIELDS,
    Account,
    ActiveAlert,
    Alert,
    Change,
    JSONValue,
    Notification,
    ParseResult,
    Snapshot,
    Status,
)
from monitor.mutes import muting
from monitor.rules import AlertKey, SourceHealth, evaluate, evaluate_source, retired_alerts
from monitor.rules.base import RuleProblem
from monitor.silences import EMPTY, ControlState
from monitor.split import Book

__all__ = [
    "DEPARTED_KEPT",
    "Delivery",
    "Departed",
    "HistoryPoint",
    "PollRecord",
    "PollState",
    "PollWrite",
    "SeriesPoint",
    "SourceState",
    "Step",
    "notification_id",
    "reconfigured",
    "step",
]

#: One value of a field from the time it was seen: (account, field, observed_at, value).
HistoryPoint: TypeAlias = tuple[str, str, datetime, JSONValue]
#: A tracked field that changed at the poll (:data:`~monitor.models.SERIES_FIELDS`):
#: (account, field, previous value, new value); the dashboard's history. ``previous`` is
#: ``None`` for an account seen for the first time.
SeriesPoint: TypeAlias = tuple[str, str, JSONValue, JSONValue]
#: (account number, field) -> the field's values over time, oldest first.
HistoryMap: TypeAlias = dict[tuple[str, str], list[tuple[datetime, JSONValue]]]
#: The same, as the step keeps it: never changed in place (a new poll makes new entries).
History: TypeAlias = Mapping[tuple[str, str], tuple[tuple[datetime, JSONValue], ...]]
#: How long the last record of an account that left the response is kept, to compare it with
#: when the account comes back (as long as finished outbox rows are): an account that returns
#: within a week is compared with what was last known of it; later it is simply new.
DEPARTED_KEPT = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Departed:
    """An account that left the response: its last usable record, and when it left."""

    account: Account
    left_at: datetime


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store keeps of a source between polls (and hands back at start-up)."""

    accounts: Mapping[str, Account] | None  # None: no successful poll yet (baseline pending)
    health: SourceHealth
    active: dict[AlertKey, ActiveAlert]
    last_success_at: datetime | None = None
    history: HistoryMap | None = None
    departed: dict[str, Departed] | None = None


@dataclass(frozen=True, slots=True)
class PollRecord:
    """The outcome of one poll, for ``sources`` and ``status``."""

    at: datetime
    ok: bool
    error: str | None = None
    account_count: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification and the sinks it goes to: queued for delivery now, or held by the mute
    window ``held_by`` until it closes."""

    notification: Notification
    sinks: tuple[str, ...]
    held_by: str | None = None


@dataclass(frozen=True, slots=True)
class PollWrite:
    """Everything one poll writes, in one transaction.

    ``active`` (when not ``None``) replaces the source's rule alerts; only the rows that differ
    from ``active_before`` are written when that is given. ``health.down`` is the source's
    ``source_down`` alert. ``history`` adds values of windowed fields, ``history_deletes``
    drops those that left every window. ``departed`` are the last records of the accounts that
    left the response at this poll (they are also in ``deletes``), kept as left at
    ``poll.at``; ``forget`` are departed accounts no longer kept (back, or gone too long).
    ``series`` are the tracked fields that changed at this poll (every one of an account new
    since the last poll; nothing at the first poll: the stored records are the starting
    values), the dashboard's history at ``poll.at``.
    """

    source: str
    poll: PollRecord
    health: SourceHealth
    upserts: tuple[Account, ...] = ()
    deletes: tuple[str, ...] = ()
    active: Mapping[AlertKey, ActiveAlert] | None = None
    active_before: Mapping[AlertKey, ActiveAlert] | None = None
    history: tuple[HistoryPoint, ...] = ()
    history_deletes: tuple[HistoryPoint, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    departed: tuple[Account, ...] = ()
    forget: tuple[str, ...] = ()
    series: tuple[SeriesPoint, ...] = ()
    #: A push of the account stream, not a poll: the source's poll record is left as it was.
    push: bool = False

    @property
    def writes_nothing(self) -> bool:
        """Whether committing this would change no row but the poll record (an unchanged push
        is not written at all)."""
        return not (
            self.upserts
            or self.deletes
            or self.active is not None
            or self.history
            or self.history_deletes
            or self.deliveries
            or self.departed
            or self.forget
            or self.series
        )

    @property
    def queued(self) -> tuple[Delivery, ...]:
        """The deliveries that go to the outbox now."""
        return tuple(d for d in self.deliveries if d.held_by is None)

    @property
    def held(self) -> tuple[Delivery, ...]:
        """The deliveries a mute window holds."""
        return tuple(d for d in self.deliveries if d.held_by is not None)


@dataclass(frozen=True, slots=True)
class PollState:
    """What the step carries from one poll of a source to the next (the store has it too)."""

    #: The last usable record of each account; ``None`` before the first successful poll.
    accounts: Mapping[str, Account] | None = None
    health: SourceHealth = field(default_factory=SourceHealth)
    #: The rule alerts, pending and firing (``source_down`` is ``health.down``).
    active: Mapping[AlertKey, ActiveAlert] = field(default_factory=dict)
    #: The values over time of the fields windowed ``delta`` rules look at.
    history: History = field(default_factory=dict)
    #: Rules a reload removed (or turned into events) whose firing alerts still need their
    #: resolved notification: sent at the next successful poll with the old rule's settings.
    retired: Mapping[str, RuleConfig] = field(default_factory=dict)
    #: Evaluate every account at the next successful poll (start-up, reload).
    full: bool = True
    #: Accounts that left the response, kept :data:`DEPARTED_KEPT`: one that comes back is
    #: compared with its last record (and is an ``account_added`` too: it was absent).
    departed: Mapping[str, Departed] = field(default_factory=dict)

    @classmethod
    def loaded(cls, stored: SourceState) -> PollState:
        """The state at start-up, from what the store kept."""
        history = {key: tuple(entries) for key, entries in (stored.history or {}).items()}
        return cls(
            stored.accounts, stored.health, stored.active, history, departed=stored.departed or {}
        )

    @property
    def firing(self) -> list[ActiveAlert]:
        """Every alert firing now, ``source_down`` included."""
        down = [self.health.down] if self.health.down is not None else []
        return [a for a in self.active.values() if a.state == "firing"] + down

    @property
    def pending(self) -> list[ActiveAlert]:
        """The alerts waiting for their rule's ``for``."""
        return [a for a in self.active.values() if a.state == "pending"]


@dataclass(frozen=True, slots=True)
class Step:
    """What one poll did: the new state, the one value the store writes, and what to log."""

    state: PollState
    write: PollWrite
    #: The alerts notified (queued or held), rule alerts and ``source_down`` alike.
    alerts: int = 0
    #: Account rows written or deleted.
    changed: int = 0
    #: Accounts whose record was unusable this poll (they keep their last good snapshot).
    skipped: frozenset[str] = frozenset()
    #: What the rules could not do (a template that failed): logged once per kind.
    problems: tuple[RuleProblem, ...] = ()
    #: The poll could not be used: why, and how long the source asked us to wait.
    error: str | None = None
    retry_after: float | None = None


def notification_id(alert: Alert) -> str:
    """Stable id of one notification: a replayed poll produces the same id, never a new one."""
    text = f"{alert.fingerprint}\x1f{alert.status.value}\x1f{alert.observed_at.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def step(
    state: PollState,
    seen: ParseResult | SourceError,
    *,
    source: str,
    config: Config,
    rules: Sequence[RuleConfig],
    down_after: int,
    now: datetime,
    partial: bool = False,
    control: ControlState = EMPTY,
) -> Step:
    """One poll of ``source``: what it ``seen`` (the parsed body, or why there is none) turned
    into the next state and everything to write.

    ``partial``: ``seen`` is a push of the account stream, a fresh snapshot of the accounts it
    carries only. The others keep their record (none is removed), the source's health and its
    poll record are left as they are (only polls count toward ``source_down``), and a push
    before the first successful poll (no baseline to compare with) changes nothing. Everything
    else (diff, rules, lifecycle, mutes, notifications) is the same as for a poll.

    ``control`` holds the silences (they hold notifications as mute windows do) and the
    acknowledged episodes (no reminders, no escalation; their resolution says who acknowledged
    them).
    """
    if isinstance(seen, SourceError):
        return _failed(
            state,
            seen,
            source=source,
            config=config,
            down_after=down_after,
            now=now,
            control=control,
        )
    if partial and state.accounts is None:
        return Step(state, PollWrite(source, PollRecord(now, ok=True), state.health, push=True))
    return _succeeded(
        state,
        seen,
        source=source,
        config=config,
        rules=rules,
        down_after=down_after,
        now=now,
        partial=partial,
        control=control,
    )


def reconfigured(
    state: PollState, old: Sequence[RuleConfig], new: Sequence[RuleConfig]
) -> tuple[PollState, list[str]]:
    """The state after a reload swapped ``old`` rules for ``new`` ones; and the rules whose
    alerts will end.

    A rule that keeps its name and kind keeps its alerts: the new definition decides at the
    next poll whether they still fire (and resolves them if not). The firing alerts of a removed
    rule (or one that became an event rule) are resolved at the next successful poll, with the
    old rule's severity, labels and sinks. A rule retired by an earlier reload and back now (as a
    condition again, if it was one) keeps its alerts.
    """
    by_name = {r.name: r for r in new}
    retired = dict(state.retired)
    ending = []
    for rule in old:
        now = by_name.get(rule.name)
        if now is None or rule.kind != now.kind:
            ending.append(rule.name)
            retired[rule.name] = rule
    for name, rule in by_name.items():
        before = retired.get(name)
        if before is not None and before.kind == rule.kind:
            del retired[name]
    return replace(state, retired=retired, full=True), sorted(ending)


def _failed(
    state: PollState,
    error: SourceError,
    *,
    source: str,
    config: Config,
    down_after: int,
    now: datetime,
    control: ControlState,
) -> Step:
    """A poll with nothing usable: it counts toward ``source_down``, nothing else changes."""
    text = str(error)
    health, alert = evaluate_source(
        state.health, ok=False, error=text, down_after=down_after, source=source, now=now
    )
    alerts = [alert] if alert is not None else []
    write = PollWrite(
        source,
        PollRecord(now, ok=False, error=text),
        health,
        deliveries=_deliveries(alerts, config, now, control),
    )
    return Step(
        replace(state, health=health),
        write,
        alerts=len(alerts),
        error=text,
        retry_after=error.retry_after if isinstance(error, FetchError) else None,
    )


def _succeeded(
    state: PollState,
    result: ParseResult,
    *,
    source: str,
    config: Config,
    rules: Sequence[RuleConfig],
    down_after: int,
    now: datetime,
    partial: bool = False,
    control: ControlState,
) -> Step:
    accounts = result.accounts
    previous = state.accounts
    if partial and previous is not None:  # a push: the accounts it does not carry stay
        accounts = {**previous, **accounts}
    # A duplicate of a usable record is skipped, not the account: the first record wins.
    skip = frozenset(
        p.account_number
        for p in result.problems
        if p.skipped and p.account_number is not None and p.account_number not in accounts
    )
    changes = diff(previous, accounts, only=result.changed)
    returned = {n: d for n, d in state.departed.items() if n in accounts}
    if returned:
        changes = _since_departure(changes, returned, accounts)
    touched = frozenset(c.account_number for c in changes if c.kind != "removed")
    # Unchanged records cannot change a rule's outcome; after a reload every rule is new.
    only = None if previous is None or state.full else touched
    history, added, dropped = _record_history(rules, state.history, accounts, now, only, skip=skip)
    ended, active = _retire(state, source, now)
    evaluation = evaluate(
        rules,
        previous,
        Snapshot(source, now, accounts),
        active,
        skip=skip,
        only=only,
        history=history,
        changes=changes,
    )
    if partial:  # a push says nothing of whether polls work
        health, source_alert = state.health, None
    else:
        health, source_alert = evaluate_source(
            state.health, ok=True, error=None, down_after=down_after, source=source, now=now
        )
    alerts = [*evaluation.alerts, *([source_alert] if source_alert is not None else [])]
    if previous is None:
        upserts = tuple(accounts.values())
        deletes: tuple[str, ...] = ()
    else:
        upserts = tuple(accounts[n] for n in sorted(touched))
        deletes = tuple(
            c.account_number
            for c in changes
            if c.kind == "removed" and c.account_number not in skip
        )
    departed, forget = _departures(state.departed, previous or {}, deletes, returned, now)
    deliveries = _deliveries(alerts, config, now, control) + _deliveries(
        ended, config, now, control, state.retired
    )
    escalated = escalate(rules, evaluation.active, accounts, control.acks, source=source, now=now)
    if escalated.due:
        evaluation = replace(
            evaluation,
            active=escalated.active,
            problems=evaluation.problems + escalated.problems,
        )
        deliveries += tuple(
            _held(Delivery(Notification(e.id, e.alert), e.sinks), config, now, control)
            for e in escalated.due
        )
    write = PollWrite(
        source,
        PollRecord(now, ok=True, account_count=len(accounts)),
        health,
        upserts=upserts,
        deletes=deletes,
        active=evaluation.active if evaluation.active != state.active else None,
        active_before=state.active,
        history=tuple(added),
        history_deletes=tuple(dropped),
        deliveries=deliveries,
        departed=tuple(departed[n].account for n in deletes if n in departed),
        forget=forget,
        push=partial,
        series=_series(changes, accounts),
    )
    # An unusable record keeps its last good snapshot.
    kept = {n: previous[n] for n in skip if previous is not None and n in previous}
    merged = accounts.keeping(kept) if isinstance(accounts, Book) else {**accounts, **kept}
    new = PollState(
        merged, health, evaluation.active, history, retired={}, full=False, departed=departed
    )
    return Step(
        new,
        write,
        alerts=len(alerts),
        changed=len(upserts) + len(deletes),
        skipped=skip,
        problems=evaluation.problems,
    )


_TRACKED = frozenset(SERIES_FIELDS)


def _series(changes: Iterable[Change], accounts: Mapping[str, Account]) -> tuple[SeriesPoint, ...]:
    """The tracked fields this poll changed, from the diff (with the value before): the
    changed ones, and every tracked field of an account that is new (no value before)."""
    points: dict[tuple[str, str], SeriesPoint] = {}
    for c in changes:
        if c.kind == "changed" and c.field in _TRACKED:
            points.setdefault(
                (c.account_number, c.field), (c.account_number, c.field, c.previous, c.current)
            )
        elif c.kind == "added":
            record = accounts[c.account_number].record
            for f in SERIES_FIELDS:
                if f in record:
                    points[(c.account_number, f)] = (c.account_number, f, None, record[f])
    return tuple(points.values())


def _since_departure(
    changes: list[Change], returned: Mapping[str, Departed], accounts: Mapping[str, Account]
) -> list[Change]:
    """``changes`` with, after the ``added`` of each account that came back, how its record
    differs from the one it left with: what ``change`` and ``restriction_change`` see."""
    merged: list[Change] = []
    for change in changes:
        merged.append(change)
        gone = returned.get(change.account_number) if change.kind == "added" else None
        if gone is None:
            continue
        number = change.account_number
        for name, (old, new) in changed_fields(gone.account, accounts[number]).items():
            merged.append(
                Change(kind="changed", account_number=number, field=name, previous=old, current=new)
            )
    return merged


def _departures(
    kept: Mapping[str, Departed],
    previous: Mapping[str, Account],
    deletes: Sequence[str],
    returned: Mapping[str, Departed],
    now: datetime,
) -> tuple[dict[str, Departed], tuple[str, ...]]:
    """The departed accounts after this poll (those that left now added, those back or kept
    :data:`DEPARTED_KEPT` dropped), and the ones dropped."""
    if not kept and not deletes:
        return {}, ()
    oldest = now - DEPARTED_KEPT
    departed: dict[str, Departed] = {}
    forget = []
    for number, gone in kept.items():
        if number in returned or gone.left_at <= oldest:
            forget.append(number)
        else:
            departed[number] = gone
    for number in deletes:
        departed[number] = Departed(previous[number], now)
    return departed, tuple(sorted(forget))


def _deliveries(
    alerts: Iterable[Alert],
    config: Config,
    now: datetime,
    control: ControlState,
    definitions: Mapping[str, RuleConfig] | None = None,
) -> tuple[Delivery, ...]:
    """Each alert with its sinks: queued, or held when a mute window covers its rule or a
    silence matches it. A reminder (``repeat``) of an acknowledged episode is not sent; its
    resolution is, saying who acknowledged it.

    ``definitions`` are the rules behind alerts that are no longer in the config (a reload
    removed them): their sinks, ``min_severity`` filter and ``send_resolved`` still apply.
    """
    made = []
    for a in alerts:
        ack = control.acks.get(a.fingerprint)
        if ack is not None:
            if a.status is Status.FIRING:
                continue
            a = replace(  # noqa: PLW2901 - the same alert, said to be acknowledged
                a,
                acknowledged_by=ack.author or "unknown",
                acknowledged_at=datetime.fromtimestamp(ack.at, tz=now.tzinfo),
            )
        sinks = config.sinks_for(
            a.rule,
            a.severity,
            resolved=a.status is Status.RESOLVED,
            definition=(definitions or {}).get(a.rule),
        )
        made.append(
            _held(Delivery(Notification(notification_id(a), a), sinks), config, now, control)
        )
    return tuple(made)


def _held(delivery: Delivery, config: Config, now: datetime, control: ControlState) -> Delivery:
    """``delivery`` held by the mute window covering its rule, or the silence matching it."""
    alert = delivery.notification.alert
    mute = muting(config.mute, alert.rule, now)
    if mute is not None:
        return replace(delivery, held_by=mute.name)
    silence = control.silencing(alert, now)
    if silence is not None:
        return replace(delivery, held_by=silence.holder)
    return delivery


def _retire(
    state: PollState, source: str, now: datetime
) -> tuple[list[Alert], Mapping[AlertKey, ActiveAlert]]:
    """Resolved alerts for the firing alerts of rules a reload removed; the state without
    them (pending ones are simply forgotten)."""
    if not state.retired:
        return [], state.active
    ended: list[Alert] = []
    kept: dict[AlertKey, ActiveAlert] = {}
    for key, alert in state.active.items():
        rule = state.retired.get(key[0])
        if rule is None:
            kept[key] = alert
        elif alert.state == "firing":
            ended += retired_alerts(rule, [alert], source=source, now=now)
    return ended, kept


def _record_history(
    rules: Sequence[RuleConfig],
    history: History,
    accounts: Mapping[str, Account],
    now: datetime,
    only: frozenset[str] | None,
    *,
    skip: frozenset[str] = frozenset(),
) -> tuple[History, list[HistoryPoint], list[HistoryPoint]]:
    """Note the new values of the fields windowed ``delta`` rules look at; forget those that
    every window has left behind (the value at a window's start is kept), and those of accounts
    gone from the response (not of the ``skip`` ones: their record was unusable this poll, they
    keep their history as they keep their snapshot). Returns the new history (``history``
    itself is left as it was), the points added and those dropped."""
    windows: dict[str, timedelta] = {}
    for rule in rules:
        if isinstance(rule, DeltaRuleConfig) and rule.window is not None:
            windows[rule.field] = max(windows.get(rule.field, rule.window), rule.window)
    if not windows and not history:
        return history, [], []
    new = dict(history)
    added: list[HistoryPoint] = []
    dropped: list[HistoryPoint] = []
    numbers = accounts.keys() if only is None else only
    for name in windows:
        for number in numbers:
            account = accounts.get(number)
            if account is None or name not in account.record:
                continue
            value = account.get(name)
            entries = new.get((number, name), ())
            if not entries or not same(entries[-1][1], value):
                new[(number, name)] = (*entries, (now, value))
                added.append((number, name, now, value))
    for key, entries in list(new.items()):
        window = windows.get(key[1])
        if window is None or (key[0] not in accounts and key[0] not in skip):
            dropped += [(key[0], key[1], at, v) for at, v in entries]
            del new[key]
            continue
        start = now - window
        # Keep the last value seen at or before the window's start, and everything after.
        first = 0
        while first + 1 < len(entries) and entries[first + 1][0] <= start:
            first += 1
        if first:
            dropped += [(key[0], key[1], at, v) for at, v in entries[:first]]
            new[key] = entries[first:]
    return new, added, dropped
