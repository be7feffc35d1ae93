"""A :class:`~monitor.digest.Digest` in each sink's own format, within each sink's limits.

Every format has the same parts, in this order: a headline (the digest, its period), the
totals across the accounts, a line per account (and per account that left in the period), the
alerts that fired and resolved, the alerts still firing since before the period, the sources
that failed polls, and one "all clear" line when none of these has anything to say. When a
message would pass its sink's limit, account and alert lines are cut at whole lines with
``…and N more``; the headline and the totals are always kept.

:func:`text` is the plain text: the ``log`` sink's message, the email's text part, the webhook
document's ``text`` and ``balance-monitor digest NAME --print``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from monitor import encoding
from monitor.digest import AccountFigures, Digest
from monitor.digest_data import AlertLine, DepartedAccount, SourcePolls, StillFiring
from monitor.models import DEFAULT_SOURCE, JSONValue
from monitor.text import MISSING, clip, money_text, value_text

TELEGRAM_LIMIT = 4096
SLACK_SECTION_LIMIT = 3000
SLACK_TEXT_LIMIT = 3000
DISCORD_DESCRIPTION_LIMIT = 4096
DISCORD_TITLE_LIMIT = 256
TEAMS_TEXT_LIMIT = 20000
#: The bytes of JSON the card's long text block keeps to (the card stays under the 24,000 of a
#: batch card, Teams refusing messages over about 28 KB).
TEAMS_TEXT_BYTES = 20_000
ALL_CLEAR = "All clear: no alert fired and every poll succeeded."
FIRING_SYMBOL = "🔥"
RESOLVED_SYMBOL = "✅"
FAILED_SYMBOL = "⚠️"


# --------------------------------------------------------------------------- the parts


def signed(value: Decimal) -> str:
    """``+12.50`` or ``-3.00``: a change."""
    return ("+" if value >= 0 else "-") + money_text(abs(value))


def money(value: Decimal | None) -> str:
    return MISSING if value is None else money_text(value)


def _when(digest: Digest, moment: datetime) -> str:
    local = moment.astimezone(ZoneInfo(digest.timezone))
    return local.strftime("%Y-%m-%d %H:%M %Z")


def headline(digest: Digest) -> str:
    """``Digest close: 2026-12-01``: the digest's local day (the same for the scheduled
    message and a ``--print`` later that day)."""
    day = digest.day or digest.until.astimezone(ZoneInfo(digest.timezone)).date()
    return f"Digest {digest.name}: {day.isoformat()}"


def summary(digest: Digest) -> str:
    """One line: the notification record's summary, the dashboard's notification list."""
    return f"{headline(digest)}. {totals_line(digest)}"


def period(digest: Digest) -> str:
    if digest.since is None:
        return "No earlier digest to compare with."
    return f"Since {_when(digest, digest.since)}"


def change_text(change: Decimal | None, percent: Decimal | None) -> str:
    if change is None:
        return ""
    return f" ({signed(change)}{f', {signed(percent)}%' if percent is not None else ''})"


def totals_line(digest: Digest) -> str:
    t = digest.totals
    count = f"{t.accounts} account{'' if t.accounts == 1 else 's'}"
    return (
        f"Total of {count}: value {money(t.value)}{change_text(t.change, t.percent)}"
        f" · cash {money(t.cash)} · cash to withdraw {money(t.cash_to_withdraw)}"
    )


def place(source: str, account: str | None) -> str:
    """``12345678``, ``12345678@ib`` (another source's account), ``source ib`` (its own)."""
    if account is None:
        return f"source {source}"
    return account if source == DEFAULT_SOURCE else f"{account}@{source}"


def account_name(a: AccountFigures) -> str:
    return place(a.source, a.account_number)


def account_line(digest: Digest, a: AccountFigures) -> str:
    if a.new and digest.since is not None:
        change = f" (new since {_when(digest, digest.since)})"
    else:
        change = change_text(a.change, a.percent)
    restriction = a.restriction or MISSING
    if a.restriction_reason:
        restriction += f" ({a.restriction_reason})"
    daytrades = MISSING if a.daytrades is None else str(a.daytrades)
    return (
        f"{account_name(a)}: value {money(a.value)}{change} · cash {money(a.cash)}"
        f" · cash to withdraw {money(a.cash_to_withdraw)} · buying power {money(a.buying_power)}"
        f" · restriction {restriction} · day trades {daytrades}"
    )


def departed_line(digest: Digest, a: DepartedAccount) -> str:
    at = a.left_at.astimezone(ZoneInfo(digest.timezone)).strftime("%m-%d %H:%M")
    return f"{place(a.source, a.account_number)}: left {at}, last value {money(a.value)}"


def alerts_heading(digest: Digest) -> str:
    return f"Alerts: {len(digest.fired)} fired, {len(digest.resolved)} resolved"


def alert_line(digest: Digest, a: AlertLine) -> str:
    symbol = FIRING_SYMBOL if a.status == "firing" else RESOLVED_SYMBOL
    at = a.at.astimezone(ZoneInfo(digest.timezone)).strftime("%m-%d %H:%M")
    where = place(a.source, a.account_number)
    text = a.summary
    if a.account_number is not None:  # a default summary starts with its account: once is enough
        text = text.removeprefix(f"{a.account_number}: ")
    return f"{symbol} {at} {a.status.upper()} {a.rule} on {where}: {text}"


def still_firing_line(digest: Digest, f: StillFiring) -> str:
    at = f.started_at.astimezone(ZoneInfo(digest.timezone)).strftime("%m-%d %H:%M")
    return (
        f"{FIRING_SYMBOL} still firing since {at}: {f.rule} on {place(f.source, f.account_number)}"
    )


def failure_line(s: SourcePolls) -> str:
    error = f"; last error: {s.last_error}" if s.last_error else ""
    polls = "poll" if s.failed == 1 else "polls"
    return f"{FAILED_SYMBOL} source {s.source}: {s.failed} {polls} failed{error}"


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True, slots=True)
class Block:
    """Lines of a message; a ``more`` block may lose lines from its end (then ``more(n)``
    stands for the ``n`` left out)."""

    lines: tuple[str, ...]
    more: Callable[[int], str] | None = None
    #: Cuttable blocks get their room lowest first (the alerts before the accounts).
    priority: int = 0


def fit(blocks: Sequence[Block], limit: int, *, sep: str = "\n") -> list[str]:
    """The blocks' lines within ``limit`` characters (joined by ``sep``): the fixed blocks
    whole, the cuttable ones cut at whole lines, in order, each with its ``…and N more``."""
    every = [line for b in blocks for line in b.lines]
    if len(sep.join(every)) <= limit:
        return every
    fixed = sum(len(line) + len(sep) for b in blocks if b.more is None for line in b.lines)
    # Each cuttable block keeps room for its "more" line, so a later one is never squeezed out.
    reserve = {
        i: len(b.more(len(b.lines))) + len(sep)
        for i, b in enumerate(blocks)
        if b.more is not None and b.lines
    }
    budget = limit - fixed - sum(reserve.values())
    kept: dict[int, int] = {}
    for i in sorted(reserve, key=lambda i: blocks[i].priority):
        count = 0
        for line in blocks[i].lines:
            if len(line) + len(sep) > budget:
                break
            budget -= len(line) + len(sep)
            count += 1
        kept[i] = count
        if count == len(blocks[i].lines):
            budget += reserve[i]  # its "more" line is not needed
    out: list[str] = []
    for i, b in enumerate(blocks):
        if i not in kept:
            out.extend(b.lines)
            continue
        more = b.more
        out.extend(b.lines[: kept[i]])
        if kept[i] < len(b.lines) and more is not None:
            out.append(more(len(b.lines) - kept[i]))
    return [clip(line, limit) for line in out]


def blocks(
    digest: Digest, fmt: Callable[[str], str] = str, bold: Callable[[str], str] = str
) -> list[Block]:
    """The digest's parts, each line formatted by ``fmt`` (escaping), headings by ``bold``."""
    parts = [
        Block((bold(fmt(headline(digest))), fmt(period(digest)), bold(fmt(totals_line(digest))))),
    ]
    if digest.accounts:
        parts.append(
            Block(
                tuple(fmt(account_line(digest, a)) for a in digest.accounts),
                lambda n: fmt(f"…and {n} more account{'' if n == 1 else 's'}"),
                priority=1,
            )
        )
    else:
        parts.append(Block((fmt("No accounts stored yet."),)))
    if digest.departed:
        parts.append(
            Block(
                tuple(fmt(departed_line(digest, a)) for a in digest.departed),
                lambda n: fmt(f"…and {n} more account{'' if n == 1 else 's'} left"),
                priority=1,
            )
        )
    if digest.alerts:
        parts.append(Block((bold(fmt(alerts_heading(digest))),)))
        parts.append(
            Block(
                tuple(fmt(alert_line(digest, a)) for a in digest.alerts),
                lambda n: fmt(f"…and {n} more alert{'' if n == 1 else 's'}"),
            )
        )
    if digest.still_firing:
        parts.append(
            Block(
                tuple(fmt(still_firing_line(digest, f)) for f in digest.still_firing),
                lambda n: fmt(f"…and {n} more still firing"),
            )
        )
    if digest.failed_sources:
        parts.append(Block(tuple(fmt(failure_line(s)) for s in digest.failed_sources)))
    if digest.all_clear:
        parts.append(Block((fmt(ALL_CLEAR),)))
    return parts


# --------------------------------------------------------------------------- formats


def text(digest: Digest) -> str:
    """The plain text, whole (no limit): log, email text part, webhook ``text``, ``--print``."""
    return "\n".join(line for b in blocks(digest) for line in b.lines)


def webhook_document(digest: Digest) -> dict[str, JSONValue]:
    """The webhook's JSON document: the figures as numbers, the rendered text beside them."""
    return {**digest.payload(), "text": text(digest)}


def telegram_html(digest: Digest, limit: int = TELEGRAM_LIMIT) -> str:
    """Telegram's ``parse_mode = "HTML"`` text, within its 4096 characters."""
    parts = blocks(digest, html.escape, lambda s: f"<b>{s}</b>")
    return "\n".join(fit(parts, limit))


def telegram_message(digest: Digest, chat_id: int | str) -> dict[str, Any]:
    return {
        "chat_id": chat_id,
        "text": telegram_html(digest),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def _slack_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(digest: Digest) -> dict[str, Any]:
    """A Block Kit message: a section with the headline and totals, one with the accounts
    (cut to Slack's 3000 characters a section), one with the alerts and sources."""
    fallback = clip(f"{headline(digest)}. {totals_line(digest)}", SLACK_TEXT_LIMIT)
    head = [
        f"*{_slack_escape(headline(digest))}*",
        _slack_escape(period(digest)),
        f"*{_slack_escape(totals_line(digest))}*",
    ]
    sections = ["\n".join(head)]
    rest = blocks(digest, _slack_escape, lambda s: f"*{s}*")[1:]
    count = 2 if digest.departed else 1  # the accounts, and those that left
    accounts, others = rest[:count], rest[count:]
    sections.append("\n".join(fit(accounts, SLACK_SECTION_LIMIT)))
    if others:
        sections.append("\n".join(fit(others, SLACK_SECTION_LIMIT)))
    return {
        "text": fallback,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": clip(s, SLACK_SECTION_LIMIT)}}
            for s in sections
            if s
        ],
    }


def discord_message(digest: Digest) -> dict[str, Any]:
    """One embed: the headline as its title, the totals as its first line, the rest below."""
    parts = blocks(digest)
    head = Block((period(digest), f"**{totals_line(digest)}**"))
    lines = fit([head, *parts[1:]], DISCORD_DESCRIPTION_LIMIT)
    color = 0x2ECC71 if digest.all_clear else 0xE67E22
    return {
        "content": clip(headline(digest), 2000),
        "embeds": [
            {
                "title": clip(headline(digest), DISCORD_TITLE_LIMIT),
                "description": "\n".join(lines),
                "color": color,
                "footer": {"text": f"digest {digest.name} · {digest.id}"},
            }
        ],
    }


def teams_body(digest: Digest) -> list[dict[str, Any]]:
    """The Adaptive Card's body: the headline, the totals, then a text block of the rest, cut
    to :data:`TEAMS_TEXT_BYTES` of JSON (Teams counts bytes: a character may take six)."""
    limit = TEAMS_TEXT_LIMIT
    while True:
        rest = "\n\n".join(fit(blocks(digest)[1:], limit, sep="\n\n"))
        size = len(encoding.dumps(rest).encode())
        if size <= TEAMS_TEXT_BYTES or limit <= TEAMS_TEXT_BYTES // 12:
            break
        limit = limit * TEAMS_TEXT_BYTES // size - 1  # by the bytes a character takes so far
    return [
        {
            "type": "TextBlock",
            "text": headline(digest),
            "weight": "bolder",
            "size": "medium",
            "wrap": True,
        },
        {
            "type": "TextBlock",
            "text": period(digest),
            "isSubtle": True,
            "wrap": True,
            "spacing": "none",
        },
        {"type": "TextBlock", "text": totals_line(digest), "weight": "bolder", "wrap": True},
        {"type": "TextBlock", "text": rest, "wrap": True},
    ]


def email_subject(digest: Digest) -> str:
    t = digest.totals
    status = "all clear" if digest.all_clear else f"{len(digest.fired)} fired"
    if digest.still_firing:
        status += f", {len(digest.still_firing)} still firing"
    return f"{headline(digest)}: {money(t.value)}{change_text(t.change, t.percent)}, {status}"


def email_html(digest: Digest) -> str:
    """The text/html alternative: a table of the accounts, the alerts as a list."""
    e = html.escape
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(cell)}</td>"
            for cell in (
                account_name(a),
                money(a.value),
                "new" if a.new else change_text(a.change, a.percent).strip(" ()") or MISSING,
                money(a.cash),
                money(a.cash_to_withdraw),
                money(a.buying_power),
                (a.restriction or MISSING)
                + (f" ({a.restriction_reason})" if a.restriction_reason else ""),
                MISSING if a.daytrades is None else str(a.daytrades),
            )
        )
        + "</tr>"
        for a in digest.accounts
    )
    heads = "".join(
        f'<th align="left">{h}</th>'
        for h in (
            "Account",
            "Value",
            "Change",
            "Cash",
            "Cash to withdraw",
            "Buying power",
            "Restriction",
            "Day trades",
        )
    )
    body = [
        f"<h2>{e(headline(digest))}</h2>",
        f"<p>{e(period(digest))}</p>",
        f"<p><strong>{e(totals_line(digest))}</strong></p>",
        f"<table><tr>{heads}</tr>{rows}</table>",
    ]

    def bullets(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>"

    if digest.departed:
        body.append(bullets([departed_line(digest, a) for a in digest.departed]))
    if digest.alerts:
        lines = [alert_line(digest, a) for a in digest.alerts]
        body.append(f"<p><strong>{e(alerts_heading(digest))}</strong></p>{bullets(lines)}")
    if digest.still_firing:
        body.append(bullets([still_firing_line(digest, f) for f in digest.still_firing]))
    if digest.failed_sources:
        body.append(bullets([failure_line(s) for s in digest.failed_sources]))
    if digest.all_clear:
        body.append(f"<p>{e(ALL_CLEAR)}</p>")
    page = "".join(body)
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{page}</body></html>\n'


def loggable(digest: Digest) -> dict[str, Any]:
    """The ``log`` sink's context: the figures as exact digits, and the text."""
    t = digest.totals
    return {
        "digest": digest.name,
        "id": digest.id,
        "accounts": t.accounts,
        "account_value_total": value_text(t.value),
        "change": None if t.change is None else value_text(t.change),  # null, as the webhook's
        "alerts_fired": len(digest.fired),
        "alerts_resolved": len(digest.resolved),
        "still_firing": len(digest.still_firing),
        "failed_sources": [s.source for s in digest.failed_sources],
        "all_clear": digest.all_clear,
        "text": text(digest),
    }
