"""Explaining alerts with the transactions journal (``explain``): the requests, bounded. I/O.

For the notifications of one poll or push that ask for it (:func:`monitor.explain.wanted`), the
journal of each account is requested once, all accounts at once, and none is waited for longer
than ``timeout`` (:data:`JOURNAL_TIMEOUT`): a slow or failing journal never holds an alert back
longer than that, and never blocks it. The alert then goes without its explanation, and the
reason is logged once (``journal_unavailable``, again only when it changes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, datetime
from typing import Final, Protocol, runtime_checkable

import structlog

from monitor.auth import EASTERN
from monitor.config import RuleConfig
from monitor.cycle import Step
from monitor.errors import MonitorError
from monitor.explain import MAX_ENTRIES, attach, read_journal, wanted
from monitor.models import JournalEntry

__all__ = ["JOURNAL_TIMEOUT", "Explainer", "JournalFetcher"]

#: How long the journal may take to explain an alert: the alert waits no longer.
JOURNAL_TIMEOUT: Final = 2.0


@runtime_checkable
class JournalFetcher(Protocol):
    """A fetcher that also reads an account's transactions journal
    (:meth:`monitor.source.BalancesSource.journal`)."""

    async def journal(self, account: str, *, start: date, end: date, limit: int) -> bytes: ...


class Explainer:
    """One source's journal requests, and the one log line per reason they fail."""

    def __init__(
        self, log: structlog.typing.FilteringBoundLogger, timeout: float = JOURNAL_TIMEOUT
    ) -> None:
        self.log = log
        self.timeout = timeout
        self._problem: str | None = None

    async def explain(
        self,
        done: Step,
        fetcher: JournalFetcher,
        rules: Sequence[RuleConfig],
        *,
        source_explains: bool,
        since: datetime | None,
        now: datetime,
    ) -> Step:
        """``done`` with each explained account's entries since ``since`` attached (nothing
        before a first snapshot: there is no previous one to explain the change from)."""
        if since is None:
            return done
        accounts = wanted(done.write.deliveries, rules, source_explains=source_explains)
        if not accounts:
            return done
        found = await asyncio.gather(*(self._entries(fetcher, a, since, now) for a in accounts))
        return attach(done, {a: e for a, e in zip(accounts, found, strict=True) if e is not None})

    async def _entries(
        self, fetcher: JournalFetcher, account: str, since: datetime, now: datetime
    ) -> tuple[JournalEntry, ...] | None:
        start = since.astimezone(EASTERN).date()
        end = now.astimezone(EASTERN).date()
        try:
            async with asyncio.timeout(self.timeout):
                body = await fetcher.journal(account, start=start, end=end, limit=MAX_ENTRIES)
            entries = read_journal(body, since)
        except TimeoutError:
            self._failed(f"no answer within {self.timeout:g}s", account)
            return None
        except MonitorError as exc:
            self._failed(str(exc), account)
            return None
        self._problem = None
        return entries

    def _failed(self, reason: str, account: str) -> None:
        if reason != self._problem:
            self._problem = reason
            self.log.warning("journal_unavailable", account=account, error=reason)
        else:
            self.log.debug("journal_unavailable", account=account, error=reason)
