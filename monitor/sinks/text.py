"""Plain text about alerts for people, shared by the chat, email and Apprise sinks.

Nothing here knows a message format: :func:`title` (``[CRITICAL] FIRING low-cash``),
:func:`details`, :func:`detail_rows` (the labelled lines of the email and Apprise bodies),
:func:`tally` (``3 alerts: 2 firing, 1 resolved``), :func:`more`, Unicode emoji (:func:`symbol`)
and whole lines within a limit (:func:`join_lines`). :func:`escape` turns ``&``, ``<`` and ``>``
into entities, as both Slack and HTML (Telegram) want them. Values as text and text cut to a
limit come from :mod:`monitor.text` (:func:`~monitor.text.value_text`,
:func:`~monitor.text.clip`, which never cuts inside such an entity), shared with the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from monitor.models import DEFAULT_SOURCE, Alert, Severity, Status, rfc3339
from monitor.text import MISSING, clip, one_line, value_text

T = TypeVar("T")

#: Unicode emoji for the chat sinks that do not know Slack's ``:codes:``.
SYMBOLS: Mapping[Severity, str] = {
    Severity.CRITICAL: "🚨",
    Severity.WARNING: "⚠️",
    Severity.INFO: "\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16}",
}
RESOLVED_SYMBOL = "✅"


def pick(alert: Alert, by_severity: Mapping[Severity, T], resolved: T) -> T:
    """``resolved`` once the alert is resolved, else its severity's entry (a colour, an emoji)."""
    return resolved if alert.status is Status.RESOLVED else by_severity[alert.severity]


def escape(text: str) -> str:
    """Slack's control characters as entities: ``&`` ``<`` ``>`` (also right for HTML text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def title(alert: Alert) -> str:
    """``[CRITICAL] FIRING low-cash`` or ``RESOLVED [CRITICAL] low-cash (vision)``: plain text."""
    rule = alert.rule if alert.source == DEFAULT_SOURCE else f"{alert.rule} ({alert.source})"
    severity = alert.severity.value.upper()
    if alert.status is Status.RESOLVED:
        return f"RESOLVED [{severity}] {rule}"
    return f"[{severity}] FIRING {rule}"


def symbol(alert: Alert) -> str:
    """The alert's Unicode emoji: ✅ once resolved, else by severity."""
    return pick(alert, SYMBOLS, RESOLVED_SYMBOL)


def details(alert: Alert) -> str:
    """``account 12345678 · cash_to_withdraw: 1500.00 → 512.25 · team=risk``: plain text."""
    parts = [f"account {alert.account_number}"] if alert.account_number else []
    if alert.field:
        parts.append(f"{alert.field}: {value_text(alert.previous)} → {value_text(alert.current)}")
    if alert.labels:
        parts.append(labels_text(alert.labels))
    return " · ".join(parts) or f"source {alert.source}"


def facts(alert: Alert) -> dict[str, str]:
    """The alert's labelled values, in this order: account, field, previous and current values
    (``—`` for none) and source. An alert of no account (``source_down``) has no account line,
    one of no field no field nor previous line: no row of dashes in a 3 AM message."""
    rows: dict[str, str] = {}
    if alert.account_number:
        rows["Account"] = alert.account_number
    if alert.field:
        rows["Field"] = alert.field
        rows["Previous"] = value_text(alert.previous)
    rows["Current"] = value_text(alert.current)
    rows["Source"] = alert.source
    return rows


def detail_rows(alert: Alert) -> list[tuple[str, str]]:
    """The labelled lines of an alert (email and Apprise bodies), each value on one line."""
    labels = labels_text(alert.labels)
    started = rfc3339(alert.started_at) if alert.started_at is not None else MISSING
    rows = [
        ("Rule", alert.rule),
        ("Severity", alert.severity.value),
        ("Status", alert.status.value),
        ("Source", alert.source),
        ("Account", alert.account_number or MISSING),
        ("Field", alert.field or MISSING),
        ("Change", f"{value_text(alert.previous)} → {value_text(alert.current)}"),
        ("Observed at", rfc3339(alert.observed_at)),
        ("Started at", started),
        ("Labels", labels or MISSING),
        ("Fingerprint", alert.fingerprint),
    ]
    if alert.explanation:
        rows.insert(7, ("Why", "; ".join(explanation_lines(alert))))
    return [(key, one_line(value)) for key, value in rows]


#: The sign of an amount out, in explanations (U+2212, the typographic minus).
MINUS = "\u2212"


def explanation_lines(alert: Alert) -> list[str]:
    """Why the money moved, one line per journal entry (``explain = true``):
    ``cash \u22122,000.00: withdrawal (MONEY:OUT)`` (a minus sign, U+2212, before an amount
    out, a plus before one in); none without an explanation."""
    if not alert.explanation:
        return []
    lines = []
    for entry in alert.explanation:
        amount = ""
        if entry.amount is not None:
            sign = MINUS if entry.amount < 0 else "+"
            amount = f" {sign}{abs(entry.amount):,}"
        what = entry.description or entry.type
        lines.append(one_line(f"{alert.field or 'amount'}{amount}: {what} ({entry.type})"))
    return lines


def labels_text(labels: Mapping[str, str]) -> str:
    """``team=risk, desk=ny``, in the rule's order."""
    return ", ".join(f"{key}={value}" for key, value in labels.items())


def counts(alerts: Iterable[Alert]) -> str:
    """``2 firing, 1 resolved``."""
    statuses = [alert.status for alert in alerts]
    resolved = statuses.count(Status.RESOLVED)
    return f"{len(statuses) - resolved} firing, {resolved} resolved"


def tally(alerts: Sequence[Alert]) -> str:
    """``3 alerts: 2 firing, 1 resolved``: the headline of a batch."""
    noun = "alert" if len(alerts) == 1 else "alerts"
    return f"{len(alerts)} {noun}: {counts(alerts)}"


def more(alerts: Sequence[Alert]) -> str:
    """``…and 4 more: 3 firing, 1 resolved``: the alerts a batch message leaves out."""
    return f"…and {len(alerts)} more: {counts(alerts)}"


def join_lines(lines: Sequence[str], limit: int, *, rest: Callable[[int], str]) -> str:
    """The lines joined by newlines, within ``limit`` characters: whole lines only, and when
    some do not fit, the last ``n`` make way for the line ``rest(n)`` (``n`` ≥ 1)."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept, size = 0, 0  # size: the kept lines with a newline each
    for index, line in enumerate(lines[:-1]):
        if size + len(line) + 1 + len(rest(len(lines) - index - 1)) > limit:
            break
        kept, size = index + 1, size + len(line) + 1
    return clip("\n".join([*lines[:kept], rest(len(lines) - kept)]), limit)
