"""Frozen value types that flow through the pipeline.

``Account`` and ``Snapshot`` come out of :mod:`monitor.parse`, ``Change`` out of
:mod:`monitor.diff` (the one change detector), ``Alert`` (with the ``ActiveAlert`` state it
updates) out of :mod:`monitor.rules`, and ``Notification`` (an alert with its delivery id) goes
into the outbox.
Money is ``Decimal`` everywhere; nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

JSONScalar: TypeAlias = str | int | bool | Decimal | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
Record: TypeAlias = Mapping[str, JSONValue]

MONEY_FIELDS: tuple[str, ...] = (
    "account_value_total",
    "cash",
    "day_trading_buying_power",
    "margin_buying_power",
    "non_margin_buying_power",
    "position_market_value",
    "unsettled_cash",
    "cash_to_withdraw",
)
INTEGER_FIELDS: tuple[str, ...] = ("daytrades_count",)
NUMERIC_FIELDS: tuple[str, ...] = MONEY_FIELDS + INTEGER_FIELDS
TEXT_FIELDS: tuple[str, ...] = (
    "account_number",
    "trade_platform",
    "margin_type",
    "restriction",
    "restriction_reason",
)
KNOWN_FIELDS: tuple[str, ...] = TEXT_FIELDS + NUMERIC_FIELDS
#: The fields whose values over time the dashboard draws (``account_history``): every money
#: field, ``daytrades_count`` and the restriction with its reason.
SERIES_FIELDS: tuple[str, ...] = (*NUMERIC_FIELDS, "restriction", "restriction_reason")

#: Enumerations documented upstream. Other values are kept as data (the vendor adds them).
KNOWN_ENUMS: Mapping[str, frozenset[str]] = {
    "margin_type": frozenset({"cash", "marginx1", "marginx2", "daytrader"}),
    "restriction": frozenset({"none", "restricted", "disabled", "closed"}),
}

DEFAULT_SOURCE = "default"
#: The states of a notification for one sink in the outbox and the notification record
#: (``notifications --status``, ``GET /api/v1/notifications?status=``).
DELIVERY_STATES: tuple[str, ...] = ("delivered", "pending", "failed", "expired")


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Status(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Account:
    """One account's record as the API returned it, validated; money fields are ``Decimal``.

    ``record`` holds every field of the response object, unknown ones included.
    """

    account_number: str
    record: Record
    #: The record as decoded, before validation: a later poll whose record equals it needs no
    #: validation, no diff and no write (``None`` when unknown, e.g. loaded from the state).
    raw: Any = dataclass_field(default=None, compare=False, repr=False)
    #: The keys of ``raw`` that ``==`` alone cannot compare as JSON (``monitor.diff.raw_checks``).
    checks: tuple[str, ...] = dataclass_field(default=(), compare=False, repr=False)

    def get(self, name: str) -> JSONValue:
        return self.record.get(name)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every usable account of one successful poll of one source."""

    source: str
    observed_at: datetime
    accounts: Mapping[str, Account]


@dataclass(frozen=True, slots=True)
class Problem:
    """A record that could not be used, or a value worth a warning. Never fatal."""

    message: str
    account_number: str | None = None
    field: str | None = None
    index: int | None = None
    #: True for a skipped record, False for a value kept with a warning (an unknown enum value).
    skipped: bool = True


@dataclass(frozen=True, slots=True)
class ParseResult:
    accounts: Mapping[str, Account]
    problems: tuple[Problem, ...] = ()
    #: Accounts that are new or whose record differs from the previous poll's; ``None`` when
    #: the parser was not given the previous accounts (then every account may have changed).
    changed: frozenset[str] | None = None


ChangeKind = Literal["changed", "added", "removed"]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the previous and the current snapshot.

    For ``added``/``removed`` accounts ``field`` is ``None`` and ``previous``/``current`` hold the
    whole record (or ``None``).
    """

    kind: ChangeKind
    account_number: str
    field: str | None = None
    previous: Any = None
    current: Any = None


AlertState = Literal["pending", "firing"]
#: ``event``: fires once, never resolves. ``condition``: lasts while it holds, then resolves.
#: Decided by the rule's config (``RuleConfig.kind``) and carried on every alert.
AlertKind = Literal["event", "condition"]


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert episode kept in the state database until it resolves.

    ``pending``: the condition holds but not yet for the rule's ``for`` (``started_at`` is when
    it began to hold, ``fingerprint`` is empty). ``firing``: notified (``started_at`` is when it
    fired; ``notified_at`` the last firing notification, for ``repeat``).
    """

    rule: str
    account_number: str | None
    fingerprint: str
    started_at: datetime
    state: AlertState = "firing"
    notified_at: datetime | None = None
    #: How many steps of the rule's ``escalate`` were sent for this episode.
    escalated: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    """A state transition worth telling someone about (an alert firing or resolving)."""

    status: Status
    fingerprint: str
    rule: str
    type: str
    severity: Severity
    account_number: str | None
    field: str | None
    previous: JSONValue
    current: JSONValue
    summary: str
    observed_at: datetime
    snapshot: Record | None = None
    source: str = DEFAULT_SOURCE
    #: The rendered ``description`` template of the rule, if it has one.
    description: str | None = None
    #: The rule's ``labels``, carried into every notification and sink.
    labels: Mapping[str, str] = dataclass_field(default_factory=dict)
    #: When the episode began firing (for events: the moment they happened).
    started_at: datetime | None = None
    #: Whether a resolved notification will end this alert (from the rule's config).
    kind: AlertKind = "condition"
    #: Why the money moved: the journal entries since the previous snapshot (rules with
    #: ``explain = true``); ``None`` when not asked for or not available.
    explanation: tuple[JournalEntry, ...] | None = None
    #: Who acknowledged the episode, and when (``balance-monitor ack``): only then in payloads.
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One entry of the account's transactions journal that explains why money moved: its
    typed ``type`` (``MONEY:OUT:CHRG``), ``description``, net ``amount`` and ``date``."""

    type: str
    description: str | None
    amount: Decimal | None
    date: str | None

    def payload(self) -> dict[str, JSONValue]:
        return {
            "type": self.type,
            "description": self.description,
            "amount": self.amount,
            "date": self.date,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> JournalEntry:
        amount = data.get("amount")
        return cls(
            type=str(data.get("type", "")),
            description=data.get("description"),
            amount=Decimal(str(amount)) if isinstance(amount, int | Decimal | str) else None,
            date=data.get("date"),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """An alert with the id that identifies it to receivers, the same across its retries."""

    id: str
    alert: Alert

    def payload(self) -> dict[str, JSONValue]:
        """The notification's JSON document: exactly the documented fields, in order."""
        a = self.alert
        document: dict[str, JSONValue] = {
            "id": self.id,
            "fingerprint": a.fingerprint,
            "status": a.status.value,
            "rule": a.rule,
            "type": a.type,
            "kind": a.kind,
            "severity": a.severity.value,
            "source": a.source,
            "account_number": a.account_number,
            "field": a.field,
            "previous": a.previous,
            "current": a.current,
            "summary": a.summary,
            "description": a.description,
            "labels": dict(a.labels),
            "observed_at": rfc3339(a.observed_at),
            "started_at": rfc3339(a.started_at) if a.started_at is not None else None,
            "snapshot": dict(a.snapshot) if a.snapshot is not None else None,
            **(
                {
                    "acknowledged_by": a.acknowledged_by,
                    "acknowledged_at": rfc3339(a.acknowledged_at),
                }
                if a.acknowledged_at is not None
                else {}
            ),
        }
        if a.explanation is not None:  # only with explain = true, and a journal that answered
            document["explanation"] = [e.payload() for e in a.explanation]
        return document

    @classmethod
    def from_payload(
        cls, payload: Mapping[str, Any], *, source: str = DEFAULT_SOURCE
    ) -> Notification:
        """The inverse of :meth:`payload` (the outbox stores payloads)."""
        snapshot = payload.get("snapshot")
        started = payload.get("started_at")
        labels = payload.get("labels")
        acked = payload.get("acknowledged_at")
        alert = Alert(
            status=Status(payload["status"]),
            fingerprint=payload["fingerprint"],
            rule=payload["rule"],
            type=payload["type"],
            severity=Severity(payload["severity"]),
            account_number=payload.get("account_number"),
            field=payload.get("field"),
            previous=payload.get("previous"),
            current=payload.get("current"),
            summary=payload["summary"],
            observed_at=datetime.fromisoformat(payload["observed_at"]),
            snapshot=dict(snapshot) if isinstance(snapshot, Mapping) else None,
            source=payload.get("source", source),
            description=payload.get("description"),
            labels=dict(labels) if isinstance(labels, Mapping) else {},
            started_at=datetime.fromisoformat(started) if started else None,
            kind="event" if payload.get("kind") == "event" else "condition",
            explanation=_explanation(payload.get("explanation")),
            acknowledged_by=payload.get("acknowledged_by") if acked else None,
            acknowledged_at=datetime.fromisoformat(acked) if acked else None,
        )
        return cls(id=payload["id"], alert=alert)


def _explanation(value: object) -> tuple[JournalEntry, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(JournalEntry.from_payload(e) for e in value if isinstance(e, Mapping))


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``: UTC, with a ``Z``; ``moment`` must be timezone-aware."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    text = moment.astimezone(tz=UTC).isoformat()
    return text.replace("+00:00", "Z")
