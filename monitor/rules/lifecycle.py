"""The life of a condition alert: pending -> firing -> (repeat) -> resolved. Pure.

Every rule type with a condition (``threshold``, ``expression``, ``delta`` with a ``window``,
``stale``) gives :func:`run` a *check*: for one account it says whether the condition holds,
with the values and default summaries to notify. :func:`run` does the rest, the same for all:

* the condition must hold for the rule's ``for`` before the alert fires (``pending`` until
  then, kept in the state database so a restart does not start the wait over);
* a firing alert resolves when the check says it *clears* (hysteresis: ``clear``), or when its
  account leaves the response; otherwise it is notified again every ``repeat``;
* every resolution is returned as an alert; ``send_resolved = false`` is applied when sinks are
  chosen (:meth:`monitor.config.Config.sinks_for`): only sinks that track alert state
  (Alertmanager, PagerDuty) still get it, or their alert would never end;
* an account whose record is unusable or lacks the field keeps its state: an alert is never
  resolved for want of data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from monitor.config import RuleConfig
from monitor.models import Account, ActiveAlert, JSONValue, Status
from monitor.rules.base import (
    AlertKey,
    ConditionRule,
    Context,
    Outcome,
    alert,
    fingerprint,
    matcher,
    matches,
    watched_field,
)

#: One condition rule type (each check takes its own).
R = TypeVar("R", bound=ConditionRule)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check found for one account."""

    holds: bool
    field: str | None
    previous: JSONValue
    current: JSONValue
    #: The default summaries when the alert fires and when it resolves.
    firing: str
    resolved: str
    #: For a firing alert: whether it resolves now (``None``: when the condition no longer holds).
    clears: bool | None = None
    #: The condition starts over now (``stale``: the value changed).
    restart: bool = False


Check = Callable[[R, Context, str, Account], Verdict | None]
#: Whether the condition may hold for an account (``False``: it surely does not): lets
#: :func:`run` pass over an account with no alert without building a :class:`Verdict`.
Holds = Callable[[R, Account], bool]


def run(
    rule: R,
    ctx: Context,
    check: Check[R],
    *,
    extra: Iterable[str] = (),
    may_hold: Holds[R] | None = None,
) -> Outcome:
    """Evaluate a condition rule over the accounts that may have changed its outcome.

    Those are the changed accounts, ``extra`` ones (a window that moves with time), the ones
    whose pending wait or repeat is due, and the ones that left the response. An account with
    no alert for which ``may_hold`` says the condition does not hold is passed over (a verdict
    that does not hold changes nothing for it).
    """
    episodes = _Episodes(rule, ctx)
    mine = ctx.alerts_of(rule.name)
    episodes.out.active.update(mine)
    removed = set(ctx.removed())
    accounts = ctx.current.accounts
    pairs: Iterable[tuple[str, Account | None]] = ctx.candidates()
    more = set(extra) | _due(rule, mine, ctx.now)
    if mine and removed:
        more |= removed & {k[1] for k in mine if k[1] is not None}
    if more - ctx.candidate_numbers():  # beyond the candidates: every one, in account order
        every = {n for n, _ in pairs} | more
        pairs = [(n, accounts.get(n)) for n in sorted(every)]
    select = matcher(rule.accounts)
    for number, account in pairs:
        state = mine.get((rule.name, number)) if mine else None
        if account is None:
            if number in removed and state is not None:
                episodes.gone(state, number)
            continue
        if number in ctx.skip or not select(number):
            continue
        if state is None and may_hold is not None and not may_hold(rule, account):
            continue
        verdict = check(rule, ctx, number, account)
        if verdict is not None:
            episodes.step(state, account, verdict)
    out = episodes.out
    # Alerts of accounts the rule no longer selects (its `accounts` changed) are dropped.
    if rule.accounts is not None:
        for key in [k for k in out.active if k[1] is not None and not matches(k[1], rule.accounts)]:
            del out.active[key]
    return out


def next_wait(
    rules: Iterable[RuleConfig], active: Mapping[AlertKey, ActiveAlert]
) -> datetime | None:
    """When the next pending wait (``for``) ends or the next ``repeat`` reminder falls due
    among ``active`` (``None``: none will, as things are): what :func:`run` looks at with no
    account changed, so the daemon can step a source polled minutes apart at that time."""
    waits: dict[str, tuple[timedelta | None, timedelta | None]] = {
        r.name: (getattr(r, "for_", None), getattr(r, "repeat", None)) for r in rules
    }
    due: list[datetime] = []
    for (rule, number), state in active.items():
        if number is None or rule not in waits:
            continue
        for_, repeat = waits[rule]
        wait = for_ if state.state == "pending" else repeat
        if wait is not None:
            due.append((state.notified_at or state.started_at) + wait)
    return min(due, default=None)


def _due(rule: ConditionRule, mine: Mapping[AlertKey, ActiveAlert], now: datetime) -> set[str]:
    """Accounts whose pending wait is over, or whose firing alert is due to repeat."""
    due: set[str] = set()
    for (_, number), state in mine.items():
        if number is None:
            continue
        if state.state == "pending":
            wait = rule.for_
        elif rule.repeat is not None:
            wait = rule.repeat
        else:
            continue
        if now - (state.notified_at or state.started_at) >= wait:
            due.add(number)
    return due


class _Episodes(Generic[R]):
    """One rule's episodes over one poll: the state machine of the module's doc."""

    def __init__(self, rule: R, ctx: Context) -> None:
        self.rule = rule
        self.ctx = ctx
        self.out = Outcome()

    def step(self, state: ActiveAlert | None, account: Account, verdict: Verdict) -> None:
        rule, now, active = self.rule, self.ctx.now, self.out.active
        number = account.account_number
        key: AlertKey = (rule.name, number)
        if state is None or state.state == "pending":
            if not verdict.holds:
                active.pop(key, None)
                return
            since = now if state is None or verdict.restart else state.started_at
            if now - since >= rule.for_:
                self.fire(account, verdict)
            else:
                active[key] = ActiveAlert(rule.name, number, "", since, "pending")
            return
        clears = verdict.clears if verdict.clears is not None else not verdict.holds
        if clears or verdict.restart:
            del active[key]
            self.notify(Status.RESOLVED, state, account, verdict)
            if verdict.restart and verdict.holds:  # it starts over: wait `for` again
                active[key] = ActiveAlert(rule.name, number, "", now, "pending")
            return
        # Still firing (inside the ``clear`` band too, where the condition itself is false).
        last = state.notified_at or state.started_at
        if rule.repeat is not None and now - last >= rule.repeat:
            active[key] = replace(state, notified_at=now)
            self.notify(Status.FIRING, state, account, verdict)

    def fire(self, account: Account, verdict: Verdict) -> None:
        rule, now = self.rule, self.ctx.now
        number = account.account_number
        fp = fingerprint(self.ctx.current.source, rule.name, number, now)
        state = ActiveAlert(rule.name, number, fp, now, "firing", now)
        self.out.active[(rule.name, number)] = state
        self.notify(Status.FIRING, state, account, verdict)

    def notify(
        self, status: Status, state: ActiveAlert, account: Account, verdict: Verdict
    ) -> None:
        firing = status is Status.FIRING
        self.out.alerts.append(
            alert(
                self.ctx,
                status=status,
                fingerprint=state.fingerprint,
                rule=self.rule,
                account=account,
                field=verdict.field,
                previous=verdict.previous,
                current=verdict.current,
                summary=verdict.firing if firing else verdict.resolved,
                started_at=state.started_at,
            )
        )

    def gone(self, state: ActiveAlert, number: str) -> None:
        """The account left the response: a firing alert resolves, a pending one is forgotten."""
        rule, ctx = self.rule, self.ctx
        del self.out.active[(rule.name, number)]
        if state.state != "firing":
            return
        before = ctx.previous.get(number) if ctx.previous is not None else None
        field = watched_field(rule)
        last = before.get(field) if before is not None and field is not None else None
        self.out.alerts.append(
            alert(
                ctx,
                status=Status.RESOLVED,
                fingerprint=state.fingerprint,
                rule=rule,
                account=before,
                field=field,
                previous=last,
                current=None,
                summary=f"{number}: account no longer in the response",
                started_at=state.started_at,
            )
        )
