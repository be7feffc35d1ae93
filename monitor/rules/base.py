"""Types shared by the rule evaluators, and the helpers they all use. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any, TypeAlias

from monitor.models import Account, ActiveAlert, Alert, JSONValue, Severity, Snapshot, Status

#: (rule name, account number or None for source-wide alerts)
AlertKey: TypeAlias = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Context:
    previous: Mapping[str, Account] | None
    current: Snapshot
    active: Mapping[AlertKey, ActiveAlert]
    skip: frozenset[str] = frozenset()
    #: Only these accounts can have changed since ``previous`` (``None``: any of them).
    only: frozenset[str] | None = None

    @property
    def now(self) -> datetime:
        return self.current.observed_at

    def candidates(self) -> list[tuple[str, Account]]:
        """The current accounts worth evaluating, in account order: an account whose record is
        unchanged cannot change a rule's outcome, so with ``only`` just those are looked at."""
        accounts = self.current.accounts
        if self.only is None:
            return sorted(accounts.items())
        return sorted((n, accounts[n]) for n in self.only if n in accounts)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One rule's result: alerts to notify, and its firing alerts after this poll."""

    alerts: list[Alert] = field(default_factory=list)
    active: dict[AlertKey, ActiveAlert] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    alerts: tuple[Alert, ...]
    active: dict[AlertKey, ActiveAlert]


Evaluator: TypeAlias = Callable[[Any, Context], Outcome]


def fingerprint(
    source: str, rule: str, account: str | None, started_at: datetime, *extra: str
) -> str:
    """One id per alert episode: the same in its firing and its resolved notification."""
    text = "\x1f".join((source, rule, account or "", started_at.isoformat(), *extra))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def matches(number: str, patterns: tuple[str, ...] | None) -> bool:
    return patterns is None or any(fnmatchcase(number, p) for p in patterns)


def show(value: JSONValue) -> str:
    """A value as a person reads it in a summary: money with its own digits, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def alert(
    ctx: Context,
    *,
    status: Status,
    fingerprint: str,
    rule: Any,
    account: Account | None,
    field: str | None,
    previous: JSONValue,
    current: JSONValue,
    summary: str,
) -> Alert:
    return Alert(
        status=status,
        fingerprint=fingerprint,
        rule=rule.name,
        type=rule.type,
        severity=Severity(rule.severity),
        account_number=account.account_number if account else None,
        field=field,
        previous=previous,
        current=current,
        summary=summary,
        observed_at=ctx.now,
        snapshot=account.record if account else None,
        source=ctx.current.source,
    )
