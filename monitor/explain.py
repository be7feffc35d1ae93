"""Why a balance moved: which notifications want the transactions journal, what its answer
says, and the notifications with it attached. Pure.

A firing alert of a rule with ``explain = true`` (or of a source with ``[api] explain = true``)
on a money field of an account asks for the journal entries of that account since the previous
snapshot. :func:`wanted` names the accounts (one request per account, however many alerts),
:func:`read_journal` turns an answer of ``GET /accounts/{account}/transactions`` into
:class:`~monitor.models.JournalEntry` values, and :func:`attach` puts them on the alerts.
Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from monitor.config import RuleConfig
from monitor.cycle import Delivery, Step
from monitor.encoding import loads
from monitor.errors import ParseError
from monitor.models import MONEY_FIELDS, JournalEntry, Notification, Status
from monitor.text import one_line

__all__ = ["MAX_ENTRIES", "attach", "read_journal", "wanted"]

#: At most this many entries are asked for, and attached, per account.
MAX_ENTRIES: Final = 20
_TEXT: Final = 200


def wanted(
    deliveries: Sequence[Delivery], rules: Sequence[RuleConfig], *, source_explains: bool
) -> list[str]:
    """The accounts whose journal the firing notifications of explained rules on a money
    field ask for, each once, in order."""
    explained = {r.name for r in rules if r.explain or source_explains}
    accounts: dict[str, None] = {}
    for delivery in deliveries:
        alert = delivery.notification.alert
        if (
            alert.status is Status.FIRING
            and alert.rule in explained
            and alert.account_number is not None
            and alert.field in MONEY_FIELDS
        ):
            accounts[alert.account_number] = None
    return list(accounts)


def read_journal(body: bytes, since: datetime | None) -> tuple[JournalEntry, ...]:
    """The entries of a journal answer (a JSON array, or an object holding one under ``data``
    or ``transactions``) dated at or after ``since`` (entries whose date cannot be read are
    kept), at most :data:`MAX_ENTRIES`. ``ParseError`` when it is not JSON or holds no list."""
    try:
        value = loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"journal answer is not JSON: {exc}") from None
    if isinstance(value, dict):
        value = value.get("data", value.get("transactions"))
    if not isinstance(value, list):
        raise ParseError("journal answer holds no list of entries")
    entries = [e for item in value if (e := _entry(item)) is not None]
    if since is not None:
        entries = [e for e in entries if not _before(e.date, since)]
    return tuple(entries[:MAX_ENTRIES])


def attach(step: Step, journals: Mapping[str, tuple[JournalEntry, ...]]) -> Step:
    """``step`` with each firing notification on a money field of an account in ``journals``
    carrying that account's entries as its ``explanation`` (ids do not change)."""
    if not journals:
        return step
    changed = False
    deliveries = []
    for delivery in step.write.deliveries:
        alert = delivery.notification.alert
        entries = journals.get(alert.account_number or "")
        if entries is None or alert.status is not Status.FIRING or alert.field not in MONEY_FIELDS:
            deliveries.append(delivery)
            continue
        changed = True
        explained = replace(alert, explanation=entries)
        deliveries.append(
            replace(delivery, notification=Notification(delivery.notification.id, explained))
        )
    if not changed:
        return step
    return replace(step, write=replace(step.write, deliveries=tuple(deliveries)))


def _entry(item: Any) -> JournalEntry | None:
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return None
    cash = item.get("cash")
    amount = None
    if isinstance(cash, dict):
        for key in ("net_amount", "gross_amount"):
            value = cash.get(key)
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                amount = Decimal(value)
                break
    description = item.get("description")
    date = item.get("date")
    return JournalEntry(
        type=one_line(item["type"])[:_TEXT],
        description=one_line(description)[:_TEXT] if isinstance(description, str) else None,
        amount=amount,
        date=date if isinstance(date, str) else None,
    )


def _before(date: str | None, since: datetime) -> bool:
    """Whether an entry dated ``date`` (ISO 8601, a day or a moment) is before ``since``."""
    if date is None:
        return False
    try:
        moment = datetime.fromisoformat(date.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:  # a day, or a local time: compare the days
        return moment.date() < since.date()
    return moment < since
