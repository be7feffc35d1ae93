"""The built-in ``source_down`` rule: consecutive failed polls of one source. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.config import SOURCE_DOWN_RULE
from monitor.models import ActiveAlert, Alert, Severity, Status
from monitor.rules.base import fingerprint


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What the state database knows of a source between polls."""

    failures: int = 0
    down: ActiveAlert | None = None


def evaluate_source(
    health: SourceHealth,
    *,
    ok: bool,
    error: str | None,
    down_after: int,
    source: str,
    now: datetime,
) -> tuple[SourceHealth, Alert | None]:
    """Count failed polls; fire once at ``down_after``, resolve on the next successful poll."""
    if ok:
        if health.down is None:
            return SourceHealth(), None
        summary = f"source {source} is back up after {health.failures} failed polls"
        return SourceHealth(), _alert(
            Status.RESOLVED,
            started=health.down.started_at,
            fp=health.down.fingerprint,
            source=source,
            now=now,
            summary=summary,
            failures=health.failures,
        )
    failures = health.failures + 1
    if health.down is None and failures >= down_after:
        fp = fingerprint(source, SOURCE_DOWN_RULE, None, now)
        down = ActiveAlert(SOURCE_DOWN_RULE, None, fp, now)
        summary = f"source {source} is down: {failures} failed polls in a row (last: {error})"
        return SourceHealth(failures, down), _alert(
            Status.FIRING,
            started=now,
            fp=fp,
            source=source,
            now=now,
            summary=summary,
            failures=failures,
        )
    return SourceHealth(failures, health.down), None


def _alert(
    status: Status,
    *,
    started: datetime,
    fp: str,
    source: str,
    now: datetime,
    summary: str,
    failures: int,
) -> Alert:
    return Alert(
        status=status,
        fingerprint=fp,
        rule=SOURCE_DOWN_RULE,
        type=SOURCE_DOWN_RULE,
        severity=Severity.CRITICAL,
        account_number=None,
        field=None,
        previous=None,
        current=failures,
        summary=summary,
        observed_at=now,
        snapshot=None,
        source=source,
        started_at=started,
    )
