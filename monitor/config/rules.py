"""``[[rules]]``: what is worth a notification; one model per ``type``, a discriminated union.

Each rule model knows its :attr:`~_RuleBase.kind` (an event fires once; a condition fires,
lasts and resolves) and whether it :attr:`~_RuleBase.notifies_resolved`.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from monitor.config.types import (
    MAX_AMOUNT,
    FrozenModel,
    Name,
    Number,
    NumberRange,
    RuleDuration,
    key_problem,
    models_by_type,
    to_number,
    within,
)
from monitor.models import KNOWN_FIELDS, NUMERIC_FIELDS, AlertKind, Severity

#: The built-in rule that fires when a source cannot be polled.
SOURCE_DOWN_RULE = "source_down"

Op: TypeAlias = Literal["<", "<=", ">", ">=", "==", "!="]

#: Labels every notification carries already (Alertmanager's and our own): a rule can't set them.
RESERVED_LABELS = frozenset({"alertname", "severity", "source", "account_number"})
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


#: A Jinja2 message template (checked, with the rule's labels, by the rule's own validator).
Template: TypeAlias = Annotated[str, Field(min_length=1, max_length=10_000)]


def _numeric_field(value: str) -> str:
    if value not in NUMERIC_FIELDS:
        raise ValueError(
            f"'{value}' is not a numeric field; use one of {', '.join(NUMERIC_FIELDS)}"
        )
    return value


NumericField: TypeAlias = Annotated[str, AfterValidator(_numeric_field)]


def _changeable_field(value: str) -> str:
    if value not in KNOWN_FIELDS or value == "account_number":
        fields = ", ".join(f for f in KNOWN_FIELDS if f != "account_number")
        raise ValueError(f"unknown field '{value}'; use one of {fields}")
    return value


class _RuleBase(FrozenModel):
    name: Name
    severity: Severity = Severity.WARNING
    # None (the key left out) means every sink / every account; an empty list is a mistake.
    sinks: tuple[Name, ...] | None = Field(default=None, min_length=1)
    accounts: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(
        default=None, min_length=1
    )
    #: Only these sources (``[[sources]] name``; ``[api]`` is ``default``); all when left out.
    sources: tuple[Name, ...] | None = Field(default=None, min_length=1)
    #: Carried into every notification of the rule (payload ``labels``, Alertmanager labels).
    labels: dict[str, Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=dict
    )
    #: Jinja2 templates for the notification's ``summary`` and ``description``.
    summary: Template | None = None
    description: Template | None = None
    #: Notifications held by a ``[[mute]]`` that fired and resolved inside the window:
    #: ``summary`` sends one resolved notification saying so, ``drop`` sends nothing.
    mute_resolved: Literal["summary", "drop"] = "summary"
    #: Attach the transactions journal's entries since the previous snapshot to this rule's
    #: firing notifications on a money field (``explanation``); ``[api] explain`` turns it on
    #: for every rule of the source.
    explain: bool = False

    def applies_to(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    @property
    def kind(self) -> AlertKind:
        """``event``: each alert fires once and never resolves; ``condition``: an alert lasts
        while its condition holds, then resolves. The one place this is decided: the pipeline,
        the store and every sink read it (carried on each alert as ``Alert.kind``)."""
        return "event"

    @property
    def notifies_resolved(self) -> bool:
        """Whether sinks that do not track alert state get this rule's resolved notifications."""
        return self.kind == "condition"

    @model_validator(mode="after")
    def _templates(self) -> Self:
        for key in ("summary", "description"):
            text = getattr(self, key)
            if text is not None:
                # Imported here: Jinja2 costs start-up time and memory only where it is used.
                from monitor.templates import TemplateError, compile_template

                try:
                    compile_template(text, labels=self.labels)
                except TemplateError as exc:
                    raise key_problem(key, f"bad template: {exc}") from None
        return self

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.fullmatch(key):
                raise ValueError(f"'{key}' is not a label name (letters, digits and _)")
            if key in RESERVED_LABELS:
                raise ValueError(f"'{key}' is set by balance-monitor itself")
        return value


class EscalationStep(FrozenModel):
    """One step of a rule's ``escalate``: after the alert has fired this long unacknowledged,
    it is also sent to ``sinks`` (once)."""

    after: Annotated[timedelta, within("1s", "30d")]
    sinks: tuple[Name, ...] = Field(min_length=1)


class _ConditionRule(_RuleBase):
    """A rule whose condition holds for a while: it fires, may repeat, and resolves."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: The condition must hold this long (over consecutive polls) before the alert fires.
    for_: RuleDuration = Field(default=timedelta(0), alias="for")
    #: Notify again this often while the alert keeps firing (off when left out).
    repeat: Annotated[timedelta, within("1m", "30d")] | None = None
    #: Whether the alert's end is notified.
    send_resolved: bool = True
    #: Also send the alert to more sinks while it keeps firing unacknowledged.
    escalate: tuple[EscalationStep, ...] = ()

    @field_validator("escalate")
    @classmethod
    def _increasing(cls, steps: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
        for before, step in itertools.pairwise(steps):
            if step.after <= before.after:
                raise ValueError("each step's `after` must be longer than the one before")
        return steps

    @property
    def kind(self) -> AlertKind:
        return "condition"

    @property
    def notifies_resolved(self) -> bool:
        return self.kind == "condition" and self.send_resolved


class RestrictionChangeRuleConfig(_RuleBase):
    type: Literal["restriction_change"]


class ThresholdRuleConfig(_ConditionRule):
    type: Literal["threshold"]
    field: NumericField
    op: Op
    value: Number
    #: Hysteresis: once firing, resolve only when the condition no longer holds against
    #: ``clear`` instead of ``value`` (``op = "<"``, ``value = 1000``, ``clear = 1200``).
    clear: Number | None = None

    @model_validator(mode="after")
    def _clear(self) -> ThresholdRuleConfig:
        if self.clear is None:
            return self
        if self.op in ("==", "!="):
            raise key_problem("clear", f"not used with op '{self.op}'")
        if self.op in ("<", "<=") and self.clear < self.value:
            raise key_problem("clear", f"must be at least value ({self.value}) with op '{self.op}'")
        if self.op in (">", ">=") and self.clear > self.value:
            raise key_problem("clear", f"must be at most value ({self.value}) with op '{self.op}'")
        return self


class ChangeRuleConfig(_RuleBase):
    type: Literal["change"]
    field: str

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        return _changeable_field(value)


class ExpressionRuleConfig(_ConditionRule):
    """A condition in the Common Expression Language over the account's fields."""

    type: Literal["expression"]
    #: At most 2000 characters: the CEL library's parser overflows the stack (a crash, not an
    #: exception) on an expression some ten times longer.
    when: Annotated[str, Field(min_length=1, max_length=2000)]
    #: Record fields beyond the documented ones that ``when`` may name (ones the vendor added
    #: after this release); they are not type-checked in advance.
    fields: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ...] = ()

    @model_validator(mode="after")
    def _compile(self) -> ExpressionRuleConfig:
        from monitor.expr import ExpressionError, compile_expression

        try:
            compile_expression(self.when, extra_fields=self.fields)
        except ExpressionError as exc:
            raise key_problem("when", str(exc)) from None
        return self


class DeltaRuleConfig(_ConditionRule):
    """A numeric field moved by at least ``by`` (or ``by_pct`` percent) since the previous
    poll (an event), or within ``window`` (a condition: fires, and resolves once the move
    is no longer inside the window)."""

    type: Literal["delta"]
    field: NumericField
    by: Number | None = None
    #: A percentage of the value at the start; at most a hundredfold move.
    by_pct: Annotated[Number, AfterValidator(NumberRange(-MAX_AMOUNT, Decimal(10000)))] | None = (
        None
    )
    direction: Literal["down", "up", "any"] = "any"
    window: Annotated[timedelta, within("1m", "30d")] | None = None

    @property
    def kind(self) -> AlertKind:
        """Without a ``window`` a delta is an event (a move between two polls)."""
        return "condition" if self.window is not None else "event"

    @model_validator(mode="after")
    def _amount(self) -> DeltaRuleConfig:
        if (self.by is None) == (self.by_pct is None):
            raise ValueError("give exactly one of by, by_pct")
        amount = self.by if self.by is not None else self.by_pct
        if amount is not None and amount <= 0:
            raise key_problem("by" if self.by is not None else "by_pct", "must be positive")
        if self.window is None:
            for key, value, default in (
                ("for", self.for_, timedelta(0)),
                ("repeat", self.repeat, None),
            ):
                if value != default:
                    raise key_problem(key, "needs window (without it a delta is an event)")
        return self


class AccountAddedRuleConfig(_RuleBase):
    type: Literal["account_added"]


class AccountRemovedRuleConfig(_RuleBase):
    type: Literal["account_removed"]


class StaleRuleConfig(_ConditionRule):
    """A field has not changed for longer than ``for``."""

    type: Literal["stale"]
    field: str
    #: Values that are never stale (e.g. ``[0]`` for ``unsettled_cash``).
    ignore: tuple[str | int | float | bool, ...] = ()

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        return _changeable_field(value)

    @field_validator("ignore")
    @classmethod
    def _exact(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(to_number(v) if isinstance(v, float) else v for v in value)

    @model_validator(mode="after")
    def _for(self) -> StaleRuleConfig:
        if self.for_ <= timedelta(0):
            raise key_problem("for", "required for a stale rule (how long unchanged is stale)")
        return self


RuleConfig: TypeAlias = Annotated[
    RestrictionChangeRuleConfig
    | ThresholdRuleConfig
    | ChangeRuleConfig
    | ExpressionRuleConfig
    | DeltaRuleConfig
    | AccountAddedRuleConfig
    | AccountRemovedRuleConfig
    | StaleRuleConfig,
    Field(discriminator="type"),
]

#: The rule models by their TOML ``type``; ``monitor.rules.EVALUATORS`` has the same keys.
RULE_CONFIG_TYPES: dict[str, type[BaseModel]] = models_by_type(RuleConfig)
