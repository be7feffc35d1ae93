"""Digests (``[[digests]]``): what they say. Pure. When they are due and the period they
cover (the previous scheduled occurrence) is :mod:`monitor.digest_schedule`.

:func:`build` turns the plain data one store query reads (:class:`~monitor.digest_data.
DigestData`: the stored accounts with the value each had then, the notifications recorded
since, the failed polls, the alerts firing, the accounts that left) into a :class:`Digest`.
Its :meth:`Digest.payload` is what the outbox keeps and, with the rendered text beside it,
what a ``webhook`` sink receives (``"type": "digest"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fnmatch import fnmatchcase
from typing import Any

from monitor.config import DigestConfig
from monitor.digest_data import (
    AlertLine,
    DepartedAccount,
    DigestData,
    SourcePolls,
    StillFiring,
    StoredAccount,
    integer,
    money,
)
from monitor.models import JSONValue, rfc3339

#: The ``type`` of a digest's JSON document (and of its outbox payload).
DIGEST_TYPE = "digest"
#: The notification record's ``status`` of a digest (an alert's is ``firing``/``resolved``).
DIGEST_STATUS = "digest"
#: A digest's fingerprint (and its notification record's ``rule``) is this and its name.
FINGERPRINT_PREFIX = "digest:"
_CENT = Decimal("0.01")


# --------------------------------------------------------------------------- the digest


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """One account's lines of a digest."""

    source: str
    account_number: str
    value: Decimal | None
    #: ``account_value_total`` at the period's start; ``None`` for a ``new`` account.
    previous: Decimal | None
    new: bool
    cash: Decimal | None
    cash_to_withdraw: Decimal | None
    #: ``margin_buying_power`` (``non_margin_buying_power`` for a cash account).
    buying_power: Decimal | None
    restriction: str | None
    restriction_reason: str | None
    daytrades: int | None

    @property
    def change(self) -> Decimal | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def percent(self) -> Decimal | None:
        return _percent(self.change, self.previous)


@dataclass(frozen=True, slots=True)
class Totals:
    """The sums across the accounts (a change only over the accounts that have one)."""

    accounts: int
    value: Decimal
    previous: Decimal | None
    cash: Decimal
    cash_to_withdraw: Decimal

    @property
    def change(self) -> Decimal | None:
        return None if self.previous is None else self.value_compared - self.previous

    #: The value of the accounts that have a previous value (set by :func:`totals`).
    value_compared: Decimal = Decimal(0)

    @property
    def percent(self) -> Decimal | None:
        return _percent(self.change, self.previous)


@dataclass(frozen=True, slots=True)
class Digest:
    """One digest, ready to render for any sink."""

    id: str
    name: str
    timezone: str
    since: datetime | None
    until: datetime
    accounts: tuple[AccountFigures, ...]
    totals: Totals
    alerts: tuple[AlertLine, ...] = ()
    failed_sources: tuple[SourcePolls, ...] = ()
    #: The local day it is for (the scheduled digest's day).
    day: date | None = None
    #: The alerts firing since before the period that still fire (no line in ``alerts``
    #: says so: they fired before it).
    still_firing: tuple[StillFiring, ...] = ()
    #: The accounts that left in the period (in no total: the previous digest had them).
    departed: tuple[DepartedAccount, ...] = ()

    @property
    def fired(self) -> tuple[AlertLine, ...]:
        return tuple(a for a in self.alerts if a.status == "firing")

    @property
    def resolved(self) -> tuple[AlertLine, ...]:
        return tuple(a for a in self.alerts if a.status == "resolved")

    @property
    def all_clear(self) -> bool:
        """Nothing fired, nothing fires since before, and no source failed a poll."""
        return not self.fired and not self.still_firing and not self.failed_sources

    @property
    def fingerprint(self) -> str:
        return FINGERPRINT_PREFIX + self.name

    def payload(self) -> dict[str, JSONValue]:
        """The digest's JSON document (money as exact numbers); the outbox keeps it."""
        t = self.totals
        return {
            "type": DIGEST_TYPE,
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "timezone": self.timezone,
            "day": self.day.isoformat() if self.day is not None else None,
            "since": rfc3339(self.since) if self.since is not None else None,
            "until": rfc3339(self.until),
            "all_clear": self.all_clear,
            "totals": {
                "accounts": t.accounts,
                "account_value_total": t.value,
                "previous": t.previous,
                "compared": t.value_compared,
                "change": t.change,
                "change_percent": t.percent,
                "cash": t.cash,
                "cash_to_withdraw": t.cash_to_withdraw,
            },
            "accounts": [
                {
                    "source": a.source,
                    "account_number": a.account_number,
                    "account_value_total": a.value,
                    "previous": a.previous,
                    "new": a.new,
                    "change": a.change,
                    "change_percent": a.percent,
                    "cash": a.cash,
                    "cash_to_withdraw": a.cash_to_withdraw,
                    "buying_power": a.buying_power,
                    "restriction": a.restriction,
                    "restriction_reason": a.restriction_reason,
                    "daytrades_count": a.daytrades,
                }
                for a in self.accounts
            ],
            "departed": [
                {
                    "source": a.source,
                    "account_number": a.account_number,
                    "account_value_total": a.value,
                    "left_at": rfc3339(a.left_at),
                }
                for a in self.departed
            ],
            "alerts": [
                {
                    "status": a.status,
                    "rule": a.rule,
                    "source": a.source,
                    "account_number": a.account_number,
                    "summary": a.summary,
                    "at": rfc3339(a.at),
                    "fingerprint": a.fingerprint,
                }
                for a in self.alerts
            ],
            "still_firing": [
                {
                    "rule": f.rule,
                    "source": f.source,
                    "account_number": f.account_number,
                    "started_at": rfc3339(f.started_at),
                    "fingerprint": f.fingerprint,
                }
                for f in self.still_firing
            ],
            "failed_sources": [
                {
                    "source": s.source,
                    "polls": s.polls,
                    "failed": s.failed,
                    "last_error": s.last_error,
                }
                for s in self.failed_sources
            ],
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> Digest:
        """The inverse of :meth:`payload` (the outbox stores payloads)."""
        t = p["totals"]
        since = p.get("since")
        day = p.get("day")
        return cls(
            id=p["id"],
            name=p["name"],
            timezone=p["timezone"],
            since=datetime.fromisoformat(since) if since else None,
            until=datetime.fromisoformat(p["until"]),
            day=date.fromisoformat(day) if day else None,
            accounts=tuple(
                AccountFigures(
                    source=a["source"],
                    account_number=a["account_number"],
                    value=money(a.get("account_value_total")),
                    previous=money(a.get("previous")),
                    new=bool(a.get("new")),
                    cash=money(a.get("cash")),
                    cash_to_withdraw=money(a.get("cash_to_withdraw")),
                    buying_power=money(a.get("buying_power")),
                    restriction=a.get("restriction"),
                    restriction_reason=a.get("restriction_reason"),
                    daytrades=integer(a.get("daytrades_count")),
                )
                for a in p.get("accounts", ())
            ),
            totals=Totals(
                accounts=int(t["accounts"]),
                value=money(t["account_value_total"]) or Decimal(0),
                previous=money(t.get("previous")),
                cash=money(t["cash"]) or Decimal(0),
                cash_to_withdraw=money(t["cash_to_withdraw"]) or Decimal(0),
                value_compared=money(t.get("compared")) or Decimal(0),
            ),
            alerts=tuple(
                AlertLine(
                    a["status"],
                    a["rule"],
                    a["source"],
                    a.get("account_number"),
                    a["summary"],
                    datetime.fromisoformat(a["at"]),
                    a.get("fingerprint", ""),
                )
                for a in p.get("alerts", ())
            ),
            failed_sources=tuple(
                SourcePolls(s["source"], int(s["polls"]), int(s["failed"]), s.get("last_error"))
                for s in p.get("failed_sources", ())
            ),
            departed=tuple(
                DepartedAccount(
                    a["source"],
                    a["account_number"],
                    money(a.get("account_value_total")),
                    datetime.fromisoformat(a["left_at"]),
                )
                for a in p.get("departed", ())
            ),
            still_firing=tuple(
                StillFiring(
                    f["rule"],
                    f["source"],
                    f.get("account_number"),
                    datetime.fromisoformat(f["started_at"]),
                    f["fingerprint"],
                )
                for f in p.get("still_firing", ())
            ),
        )


def label(fingerprint: str) -> str:
    """How a digest is named where an alert shows its rule and account (the notification
    list of the CLI and of the dashboard): ``digest close``."""
    return f"digest {fingerprint.removeprefix(FINGERPRINT_PREFIX)}"


def is_digest_payload(payload: Mapping[str, Any]) -> bool:
    """Whether an outbox payload is a digest (an alert's ``type`` is its rule's type)."""
    return payload.get("type") == DIGEST_TYPE and "totals" in payload


def build(
    digest: DigestConfig,
    data: DigestData,
    *,
    ident: str,
    timezone: str,
    since: datetime | None,
    until: datetime,
    day: date | None = None,
    events: frozenset[str] = frozenset(),
) -> Digest:
    """The digest ``digest`` makes of ``data`` for the period (``since``, ``until``];
    ``events`` are the rules whose alerts are events (their notifications never resolve)."""
    accounts = tuple(
        _figures(a)
        for a in sorted(data.accounts, key=lambda a: (a.source, a.account_number))
        if covers(digest, a.source, a.account_number)
    )
    alerts = episodes(
        sorted(
            (
                a
                for a in data.alerts
                if (a.status == "firing" or (a.status == "resolved" and a.rule not in events))
                and covers(digest, a.source, a.account_number)
                and (since is None or a.at > since)
                and a.at <= until
            ),
            key=lambda a: a.at,
        ),
        data.open_before,
    )
    failed = tuple(
        sorted(
            (
                s
                for s in data.polls
                if s.failed and (digest.sources is None or s.source in digest.sources)
            ),
            key=lambda s: s.source,
        )
    )
    still = tuple(
        sorted(
            (
                f
                for f in data.firing
                if (since is None or f.started_at <= since)
                and covers(digest, f.source, f.account_number)
            ),
            key=lambda f: (f.started_at, f.rule, f.source, f.account_number or ""),
        )
    )
    departed = tuple(
        sorted(
            (
                a
                for a in data.departed
                if (since is None or a.left_at > since)
                and a.left_at <= until
                and covers(digest, a.source, a.account_number)
            ),
            key=lambda a: (a.source, a.account_number),
        )
    )
    return Digest(
        id=ident,
        name=digest.name,
        timezone=timezone,
        since=since,
        until=until,
        day=day,
        accounts=accounts,
        totals=totals(accounts),
        alerts=alerts,
        failed_sources=failed,
        still_firing=still,
        departed=departed,
    )


def episodes(lines: Sequence[AlertLine], open_before: frozenset[str]) -> tuple[AlertLine, ...]:
    """The lines (oldest first) that start or end an episode: a firing notification of an
    alert already firing (a ``repeat``, an escalation step, an ack sent on) is left out."""
    firing = set(open_before)
    out = []
    for a in lines:
        if a.fingerprint:
            if a.status == "firing":
                if a.fingerprint in firing:
                    continue
                firing.add(a.fingerprint)
            else:
                firing.discard(a.fingerprint)
        out.append(a)
    return tuple(out)


def covers(digest: DigestConfig, source: str, account_number: str | None) -> bool:
    """Whether the digest covers this source and account (no account: the source's own)."""
    if digest.sources is not None and source not in digest.sources:
        return False
    return account_number is None or any(fnmatchcase(account_number, p) for p in digest.accounts)


def totals(accounts: Sequence[AccountFigures]) -> Totals:
    compared = [a for a in accounts if a.change is not None]
    return Totals(
        accounts=len(accounts),
        value=sum((a.value for a in accounts if a.value is not None), Decimal(0)),
        previous=(
            sum((a.previous for a in compared if a.previous is not None), Decimal(0))
            if compared
            else None
        ),
        cash=sum((a.cash for a in accounts if a.cash is not None), Decimal(0)),
        cash_to_withdraw=sum(
            (a.cash_to_withdraw for a in accounts if a.cash_to_withdraw is not None), Decimal(0)
        ),
        value_compared=sum((a.value for a in compared if a.value is not None), Decimal(0)),
    )


def _figures(a: StoredAccount) -> AccountFigures:
    r = a.record
    margin = r.get("margin_type")
    power = r.get("non_margin_buying_power" if margin == "cash" else "margin_buying_power")
    restriction = r.get("restriction")
    reason = r.get("restriction_reason")
    return AccountFigures(
        source=a.source,
        account_number=a.account_number,
        value=money(r.get("account_value_total")),
        previous=None if a.new else money(a.then),
        new=a.new,
        cash=money(r.get("cash")),
        cash_to_withdraw=money(r.get("cash_to_withdraw")),
        buying_power=money(power),
        restriction=restriction if isinstance(restriction, str) else None,
        restriction_reason=reason if isinstance(reason, str) and reason else None,
        daytrades=integer(r.get("daytrades_count")),
    )


def _percent(change: Decimal | None, base: Decimal | None) -> Decimal | None:
    """The change as a percent of the base's size: a negative base (a margin deficit) that
    shrinks is a rise, with a ``+``."""
    if change is None or base is None or base == 0:
        return None
    return (change * 100 / abs(base)).quantize(_CENT, rounding=ROUND_HALF_EVEN)
