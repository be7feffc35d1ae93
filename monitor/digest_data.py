"""What a digest is built from: the plain data one store read returns (:class:`DigestData`),
and the lines a :class:`~monitor.digest.Digest` carries as they are. Pure: no decisions here,
:func:`monitor.digest.build` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from monitor.models import JSONValue, Record


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """An account's stored record and its ``account_value_total`` at the period's start
    (``new``: the account was first seen after it, so there is nothing to compare with)."""

    source: str
    account_number: str
    record: Record
    then: JSONValue = None
    new: bool = False


@dataclass(frozen=True, slots=True)
class AlertLine:
    """A notification recorded in the period: an alert that fired or resolved."""

    status: str
    rule: str
    source: str
    account_number: str | None
    summary: str
    at: datetime
    #: The alert's fingerprint: its notifications of one episode are one line.
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class DepartedAccount:
    """An account the source stopped returning (``departed``), with its last value."""

    source: str
    account_number: str
    value: Decimal | None
    left_at: datetime


@dataclass(frozen=True, slots=True)
class StillFiring:
    """An alert firing now (``alerts``), since ``started_at``."""

    rule: str
    source: str
    account_number: str | None
    started_at: datetime
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SourcePolls:
    """A source's polls in the period: how many, how many failed, the last error."""

    source: str
    polls: int
    failed: int
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DigestData:
    """What one store query reads for a digest: plain data, nothing decided yet."""

    accounts: tuple[StoredAccount, ...] = ()
    alerts: tuple[AlertLine, ...] = ()
    polls: tuple[SourcePolls, ...] = ()
    #: The fingerprints of the alerts firing at the period's start (their last notification
    #: before it was a firing one): a firing one in the period is a repeat, not a new episode.
    open_before: frozenset[str] = frozenset()
    #: The alerts firing now.
    firing: tuple[StillFiring, ...] = ()
    #: The accounts kept as departed, each with when it left.
    departed: tuple[DepartedAccount, ...] = ()


# --------------------------------------------------------------------------- numbers


def money(value: object) -> Decimal | None:
    """A number of a record or a payload as ``Decimal`` (``None`` when it is none)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    return None


def integer(value: object) -> int | None:
    """A whole number of a record or a payload (``None`` when it is none)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return None
