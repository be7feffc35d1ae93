"""Test helpers for the rules: accounts, snapshots and rule configs to evaluate, and two ways of
feeding polls through ``evaluate`` as the pipeline does: :class:`Run` (one poll every
``INTERVAL``) and :class:`Timeline` (polls at given minutes, with ``only`` and ``history``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from pydantic import TypeAdapter

from monitor.config import (
    ChangeRuleConfig,
    RestrictionChangeRuleConfig,
    RuleConfig,
    ThresholdRuleConfig,
)
from monitor.models import Account, ActiveAlert, Alert, JSONValue, Snapshot
from monitor.rules import AlertKey, History, evaluate

SOURCE = "default"
T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
INTERVAL = timedelta(seconds=30)
A = "12345678@vision"
B = "11111111@cor"
C = "22222222@demo"

F, R = "firing", "resolved"


def at(poll: int) -> datetime:
    return T0 + poll * INTERVAL


def m(minutes: float) -> datetime:
    """The moment ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def account(number: str, **fields: JSONValue) -> Account:
    return Account(number, MappingProxyType({"account_number": number, **fields}))


def cash(value: int, number: str = A) -> Account:
    return account(number, cash=Decimal(value))


def hist(*entries: tuple[float, int]) -> History:
    """Account A's cash history: (minute, value) pairs, oldest first."""
    return {(A, "cash"): [(m(t), Decimal(v)) for t, v in entries]}


def snapshot(*accounts: Account, poll: int = 0, source: str = SOURCE) -> Snapshot:
    return Snapshot(source, at(poll), {a.account_number: a for a in accounts})


# --------------------------------------------------------------------------- rules

RULE: TypeAdapter[RuleConfig] = TypeAdapter(RuleConfig)


def rule(**fields: Any) -> RuleConfig:
    """A rule as the TOML gives it (``for`` included), named ``r`` unless said otherwise."""
    return RULE.validate_python({"name": "r", **fields})


def threshold(**fields: Any) -> ThresholdRuleConfig:
    rule = {"name": "low-cash", "type": "threshold", "field": "cash_to_withdraw", "op": "<"}
    return ThresholdRuleConfig.model_validate({**rule, "value": 1000, **fields})


def restriction(**fields: Any) -> RestrictionChangeRuleConfig:
    rule = {"name": "restriction", "type": "restriction_change", **fields}
    return RestrictionChangeRuleConfig.model_validate(rule)


def change(field: str, **fields: Any) -> ChangeRuleConfig:
    rule = {"name": f"{field}-changed", "type": "change", "field": field, **fields}
    return ChangeRuleConfig.model_validate(rule)


# --------------------------------------------------------------------------- polls


@dataclass(frozen=True)
class Poll:
    """One successful poll: its accounts and the account numbers whose record was unusable."""

    accounts: Sequence[Account]
    skip: frozenset[str] = frozenset()


@dataclass
class Run:
    """Feeds polls through ``evaluate`` the way the pipeline does, keeping what it returns."""

    rules: Sequence[RuleConfig]
    source: str = SOURCE
    previous: Mapping[str, Account] | None = None
    active: Mapping[AlertKey, ActiveAlert] = field(default_factory=dict)
    polls: int = 0

    def poll(self, *accounts: Account, skip: frozenset[str] = frozenset()) -> list[Alert]:
        current = snapshot(*accounts, poll=self.polls, source=self.source)
        result = evaluate(self.rules, self.previous, current, self.active, skip=skip)
        self.previous, self.active = current.accounts, result.active
        self.polls += 1
        return list(result.alerts)

    def all(self, polls: Sequence[Poll]) -> list[list[Alert]]:
        return [self.poll(*p.accounts, skip=p.skip) for p in polls]


def statuses(alerts: list[list[Alert]]) -> list[str]:
    """One string per poll: the statuses of its alerts joined by '+', '' when it had none."""
    return ["+".join(a.status.value for a in poll) for poll in alerts]


GONE = object()  # the account is not in the snapshot
NO_FIELD = object()  # the account lacks the field


@dataclass(frozen=True)
class Skipped:
    """The account is in ``skip`` this poll (its record unusable), whatever the value says."""

    value: JSONValue


def cash_poll(value: object) -> Poll:
    """A poll where account A has ``cash_to_withdraw = value`` (or one of the markers)."""
    if value is GONE:
        return Poll([account(B, cash_to_withdraw=Decimal(5000))])
    if value is NO_FIELD:
        return Poll([account(A, cash=Decimal(1))])
    if isinstance(value, Skipped):
        return Poll([account(A, cash_to_withdraw=value.value)], skip=frozenset({A}))
    assert value is None or isinstance(value, str | int | bool | Decimal)
    return Poll([account(A, cash_to_withdraw=value)])


@dataclass
class Timeline:
    """Feeds polls through ``evaluate`` at given minutes after T0, with ``only`` and ``history``
    as the pipeline passes them, keeping the previous accounts, the state and the problems."""

    rules: Sequence[RuleConfig]
    previous: Mapping[str, Account] | None = None
    active: Mapping[AlertKey, ActiveAlert] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def poll(
        self,
        minute: float,
        *accounts: Account,
        skip: frozenset[str] = frozenset(),
        only: frozenset[str] | None = None,
        history: History | None = None,
    ) -> list[Alert]:
        current = Snapshot(SOURCE, m(minute), {a.account_number: a for a in accounts})
        result = evaluate(
            self.rules, self.previous, current, self.active, skip=skip, only=only, history=history
        )
        self.previous, self.active = current.accounts, result.active
        self.problems += [str(p) for p in result.problems]
        return list(result.alerts)

    def cash(self, minute: float, value: object) -> list[Alert]:
        """A poll of account A's ``cash_to_withdraw`` (or a marker of :func:`cash_poll`)."""
        p = cash_poll(value)
        return self.poll(minute, *p.accounts, skip=p.skip)
