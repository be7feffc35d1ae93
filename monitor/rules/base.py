"""Types shared by the rule evaluators, and the helpers they all use. Pure."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TypeAlias

from monitor.config import (
    ChangeRuleConfig,
    DeltaRuleConfig,
    ExpressionRuleConfig,
    RuleConfig,
    StaleRuleConfig,
    ThresholdRuleConfig,
)
from monitor.models import (
    Account,
    ActiveAlert,
    Alert,
    Change,
    JSONValue,
    Severity,
    Snapshot,
    Status,
)
from monitor.text import value_text

#: (rule name, account number or None for source-wide alerts)
AlertKey: TypeAlias = tuple[str, str | None]
#: (account number, field) -> the field's values over time, oldest first: each entry is the
#: moment a value was first seen (the value held until the next entry).
History: TypeAlias = Mapping[tuple[str, str], Sequence[tuple[datetime, JSONValue]]]
#: The rule types whose alerts have a condition: pending -> firing -> resolved.
ConditionRule: TypeAlias = (
    ThresholdRuleConfig | ExpressionRuleConfig | DeltaRuleConfig | StaleRuleConfig
)


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """A rule that could not do its whole job on one alert or account (a template that failed
    to render, an expression that cannot be evaluated): the pipeline logs it, once per kind."""

    rule: str
    what: str
    detail: str
    account: str | None = None

    def __str__(self) -> str:
        where = f" for {self.account}" if self.account is not None else ""
        return f"rule '{self.rule}': {self.what}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Context:
    previous: Mapping[str, Account] | None
    current: Snapshot
    active: Mapping[AlertKey, ActiveAlert]
    skip: frozenset[str] = frozenset()
    #: Only these accounts can have changed since ``previous`` (``None``: any of them).
    only: frozenset[str] | None = None
    history: History = field(default_factory=dict)
    #: Problems met while evaluating (a template that failed to render): logged, not fatal.
    problems: list[RuleProblem] = field(default_factory=list)
    #: Accounts of ``previous`` missing from ``current`` (computed once per poll).
    gone: frozenset[str] = frozenset()
    #: The changed fields of accounts in both polls (:func:`monitor.diff.diff`), by field.
    changed: Mapping[str, Sequence[Change]] = field(default_factory=dict)
    #: ``active`` indexed by rule name (account alerts only): each rule looks at its own
    #: alerts without scanning everyone's (:func:`index_by_rule`; built when not given).
    by_rule: Mapping[str, Mapping[AlertKey, ActiveAlert]] | None = None
    #: :meth:`candidates`, worked out once per poll for every rule (when given).
    ordered: Sequence[tuple[str, Account]] | None = None
    #: Their account numbers.
    ordered_numbers: frozenset[str] | None = None

    @property
    def now(self) -> datetime:
        return self.current.observed_at

    def candidates(self) -> Sequence[tuple[str, Account]]:
        """The current accounts worth evaluating, in account order: an account whose record is
        unchanged cannot change a rule's outcome, so with ``only`` just those are looked at."""
        if self.ordered is not None:
            return self.ordered
        accounts = self.current.accounts
        if self.only is None:
            return sorted(accounts.items())
        return sorted((n, accounts[n]) for n in self.only if n in accounts)

    def candidate_numbers(self) -> frozenset[str]:
        """The account numbers of :meth:`candidates`."""
        if self.ordered_numbers is not None:
            return self.ordered_numbers
        return frozenset(n for n, _ in self.candidates())

    def alerts_of(self, rule: str) -> Mapping[AlertKey, ActiveAlert]:
        """The account alerts (pending or firing) of one rule."""
        if self.by_rule is not None:
            return self.by_rule.get(rule, {})
        return {k: v for k, v in self.active.items() if k[0] == rule and k[1] is not None}

    def removed(self) -> list[str]:
        """Accounts of the previous poll that are not in this response (nor merely unusable)."""
        return sorted(self.gone - self.skip)

    def value_at(self, number: str, name: str, moment: datetime) -> JSONValue:
        """The field's value at ``moment`` from the history; the oldest known value when the
        history does not reach back that far; ``None`` when there is none."""
        entries = self.history.get((number, name))
        if not entries:
            return None
        value = entries[0][1]
        for at, seen in entries:
            if at > moment:
                break
            value = seen
        return value


def index_by_rule(
    active: Mapping[AlertKey, ActiveAlert],
) -> dict[str, dict[AlertKey, ActiveAlert]]:
    """The account alerts of ``active`` by rule name: one pass, instead of one per rule."""
    index: dict[str, dict[AlertKey, ActiveAlert]] = {}
    for key, state in active.items():
        if key[1] is not None:
            mine = index.get(key[0])
            if mine is None:
                mine = index[key[0]] = {}
            mine[key] = state
    return index


@dataclass(frozen=True, slots=True)
class Outcome:
    """One rule's result: alerts to notify, and its alert states after this poll."""

    alerts: list[Alert] = field(default_factory=list)
    active: dict[AlertKey, ActiveAlert] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    alerts: tuple[Alert, ...]
    active: dict[AlertKey, ActiveAlert]
    problems: tuple[RuleProblem, ...] = ()


Evaluator: TypeAlias = Callable[[RuleConfig, Context], Outcome]


def fingerprint(
    source: str, rule: str, account: str | None, started_at: datetime, *extra: str
) -> str:
    """One id per alert episode: the same in its firing and its resolved notification."""
    text = "\x1f".join((source, rule, account or "", started_at.isoformat(), *extra))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def matches(number: str, patterns: tuple[str, ...] | None) -> bool:
    return patterns is None or any(fnmatchcase(number, p) for p in patterns)


def _everyone(number: str) -> bool:
    return True


@functools.lru_cache(maxsize=256)
def matcher(patterns: tuple[str, ...] | None) -> Callable[[str], bool]:
    """:func:`matches` for one rule's ``accounts``, as one compiled regular expression (C speed,
    for a rule looking at every account)."""
    if patterns is None:
        return _everyone
    compiled = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return lambda number: compiled.match(number) is not None


def show(value: JSONValue) -> str:
    """A value in a summary: :func:`monitor.text.value_text` (money with its exact digits,
    records as JSON), with ``none`` for no value."""
    return value_text(value, none="none")


def alert(
    ctx: Context,
    *,
    status: Status,
    fingerprint: str,
    rule: RuleConfig,
    account: Account | None,
    field: str | None,
    previous: JSONValue,
    current: JSONValue,
    summary: str,
    started_at: datetime | None = None,
    number: str | None = None,
) -> Alert:
    """The alert of a configured rule, with its labels and its templates rendered.

    ``number`` names the account when there is no record of it to give (``account``)."""
    made = Alert(
        status=status,
        fingerprint=fingerprint,
        rule=rule.name,
        type=rule.type,
        severity=Severity(rule.severity),
        account_number=account.account_number if account else number,
        field=field,
        previous=previous,
        current=current,
        summary=summary,
        observed_at=ctx.now,
        snapshot=account.record if account else None,
        source=ctx.current.source,
        labels=dict(rule.labels),
        started_at=started_at or ctx.now,
        kind=rule.kind,
    )
    return _templated(ctx, rule, made)


def event(
    ctx: Context,
    rule: RuleConfig,
    account: Account,
    *,
    summary: str,
    field: str | None = None,
    previous: JSONValue = None,
    current: JSONValue = None,
) -> Alert:
    """A one-off ``firing`` alert: its own fingerprint, and never a ``resolved`` one."""
    extra = (field,) if field is not None else ()
    number = account.account_number
    return alert(
        ctx,
        status=Status.FIRING,
        fingerprint=fingerprint(ctx.current.source, rule.name, number, ctx.now, *extra),
        rule=rule,
        account=account,
        field=field,
        previous=previous,
        current=current,
        summary=summary,
    )


def compared(
    ctx: Context, rule: RuleConfig, field: str
) -> Iterator[tuple[str, Account, JSONValue, JSONValue]]:
    """``(number, account, previous value, current value)`` of the accounts the rule selects
    whose ``field`` changed since the previous poll (as :mod:`monitor.diff` says; none on the
    first poll), in account order."""
    accounts = ctx.current.accounts
    for change in ctx.changed.get(field, ()):
        number = change.account_number
        if number in ctx.skip or not matches(number, rule.accounts):
            continue
        yield number, accounts[number], change.previous, change.current


def watched_field(rule: RuleConfig) -> str | None:
    """The one field a rule watches, if it watches one (an expression may name several)."""
    if isinstance(rule, ThresholdRuleConfig | ChangeRuleConfig | DeltaRuleConfig | StaleRuleConfig):
        return rule.field
    return None


def _templated(ctx: Context, rule: RuleConfig, made: Alert) -> Alert:
    """Render the rule's ``summary``/``description``; a failure keeps the default summary."""
    if rule.summary is None and rule.description is None:
        return made
    from monitor.templates import TemplateError, compile_template, template_context

    variables = template_context(made, default_summary=made.summary)
    rendered: dict[str, str | None] = {"summary": made.summary, "description": None}
    for key, text in (("summary", rule.summary), ("description", rule.description)):
        if text is None:
            continue
        try:
            rendered[key] = compile_template(text, labels=rule.labels).render(variables)
        except TemplateError as exc:
            ctx.problems.append(
                RuleProblem(rule.name, f"the {key} template failed", str(exc), made.account_number)
            )
    return replace(
        made, summary=rendered["summary"] or made.summary, description=rendered["description"]
    )
