"""The bot's answers (:mod:`monitor.bot_answers`), pure: what people read, escaped, and never
longer than one Telegram message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from monitor.bot_answers import (
    CUT,
    TEXT_LIMIT,
    alerts_text,
    balance_text,
    fit_message,
    plain,
    status_text,
)
from monitor.silences import Silence, resolve_account
from monitor.store.base import AccountRow, AlertRow, SourceRow

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def account(number: str, source: str = "default", cash: str = "10.5") -> AccountRow:
    record = {"account_number": number, "cash": Decimal(cash), "restriction": "none"}
    return AccountRow(source, number, record, NOW - timedelta(minutes=2))


ROWS = [account("12345678@vision"), account("87654321@vision"), account("12349999@other")]


@pytest.mark.parametrize(
    ("asked", "numbers"),
    [
        (None, ["12345678@vision", "87654321@vision", "12349999@other"]),
        ("12345678@vision", ["12345678@vision"]),
        ("12345678", ["12345678@vision"]),  # the number before @
        ("1234*", ["12345678@vision", "12349999@other"]),  # a glob, as in rules
        ("5678", ["12345678@vision"]),  # no exact match: the numbers containing it
        ("VISION", ["12345678@vision", "87654321@vision"]),
        ("1234", ["12345678@vision", "12349999@other"]),
        ("99*", []),  # a glob matching nothing is not read as a substring
        ("55555", []),
    ],
)
def test_balance_finds_accounts_by_number_glob_or_part(
    asked: str | None, numbers: list[str]
) -> None:
    text = balance_text(ROWS, asked, NOW)
    shown = [
        n for n in ("12345678@vision", "87654321@vision", "12349999@other") if f"<b>{n}</b>" in text
    ]
    assert shown == numbers
    if not numbers:
        assert text.startswith("No account matches <code>")
        assert text.endswith(": /balance lists the 3 polled.")


def test_balance_is_as_of_the_last_successful_poll_not_the_last_change() -> None:
    """An account unchanged for an hour was still read by the poll a second ago: the figures
    are that poll's, so "as of" is its age (the row's own time only when it is later)."""
    quiet = AccountRow("default", "12345678@vision", {"cash": Decimal(1)}, NOW - timedelta(hours=1))
    other = AccountRow("other", "11111111@cor", {"cash": Decimal(1)}, NOW - timedelta(minutes=5))
    polled = {"default": NOW - timedelta(seconds=1), "other": None}
    text = balance_text([quiet, other], None, NOW, polled=polled)
    first, second = text.split("\n\n")
    assert first.endswith("<i>as of 1s ago</i>")
    assert second.endswith("<i>as of 5m ago</i>")  # no successful poll known: the row's time


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("12345678@vision", ("12345678@vision", True)),
        ("12345678", ("12345678@vision", True)),  # the number before @, as /balance reads it
        ("1234*", ("1234*", True)),  # a glob stays a glob
        ("*@vision", ("*@vision", True)),
        ("5678", ("5678", False)),  # no part-matching: a silence must say what it holds
        ("55555555", ("55555555", False)),
        ("22222222", ("22222222", False)),  # two accounts with that number: not guessed
    ],
)
def test_a_silence_names_an_account_as_balance_does(asked: str, expected: tuple[str, bool]) -> None:
    numbers = ["12345678@vision", "87654321@vision", "22222222@a", "22222222@b"]
    assert resolve_account(numbers, asked) == expected


def test_thousands_of_accounts_are_cut_whole_and_counted() -> None:
    rows = [account(f"{n:08d}@vision") for n in range(3000)]
    text = balance_text(rows, None, NOW)
    assert len(text) <= TEXT_LIMIT
    blocks = text.split("\n\n")
    shown = blocks[:-1]
    assert all(b.startswith("<b>") and b.endswith("ago</i>") for b in shown)  # whole accounts
    assert blocks[-1] == (
        f"<i>…and {3000 - len(shown)} more accounts (of 3000): /balance ACCOUNT for one</i>"
    )


def test_user_text_in_answers_is_escaped() -> None:
    rows = [account("<b>1&2</b>", source="a<i>")]
    rows.append(account("x", source="b"))
    text = balance_text(rows, "<b>1&2</b>", NOW)
    assert text.startswith("<b>&lt;b&gt;1&amp;2&lt;/b&gt;</b> · a&lt;i&gt;")
    assert balance_text(rows, "<script>", NOW).startswith("No account matches <code>&lt;script")
    alert = AlertRow("s<1>", "r<&>", "a<b>", "f<p>", NOW - timedelta(hours=1), "firing")
    listed = alerts_text([alert], [], NOW)
    assert "<b>r&lt;&amp;&gt;</b> on a&lt;b&gt;, since 1h00m ago" in listed
    assert "id <code>f&lt;p&gt;</code>" in listed
    source = SourceRow("s<1>", NOW, "failed", "HTTP 500: <html>", None, 3, None, 4, 0)
    status = status_text([source], [alert], [], NOW)
    assert (
        "❌ s&lt;1&gt;: failing (3 in a row), last success never: HTTP 500: &lt;html&gt;" in status
    )
    assert "• r&lt;&amp;&gt; on a&lt;b&gt;" in status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short <b>x</b>", "short <b>x</b>"),
        (
            "<b>line</b>\n" * 1000,
            "\n".join(["<b>line</b>"] * ((TEXT_LIMIT - len(CUT)) // 12) + [CUT]),
        ),
        ("<code>" + "&amp;" * 1000 + "</code>", "&amp;" * 819 + "…"),
    ],
)
def test_fit_message_cuts_whole_lines_or_else_plain_text(text: str, expected: str) -> None:
    fitted = fit_message(text)
    assert fitted == expected
    assert len(fitted) <= TEXT_LIMIT


def test_plain_drops_tags_and_entities() -> None:
    assert plain("🔕 Silenced <b>low&amp;cash</b> on 1&lt;2") == "🔕 Silenced low&cash on 1<2"


def test_status_names_the_active_silences_soonest_end_first() -> None:
    moment = NOW.timestamp()
    silences = [
        Silence("s1", moment - 60, moment + 7200, rule="low-cash", account="1234*",
                author="telegram:@al"),
        Silence("s2", moment - 60, moment + 300, source="default", comment="maintenance"),
        Silence("s3", moment - 7200, moment - 60, rule="gone"),  # ended
        Silence("s4", moment + 60, moment + 600, rule="later"),  # not yet
    ]  # fmt: skip
    text = status_text([], [], silences, NOW)
    assert text.split("\n")[-3:] == [
        "Silences active: 2",
        "🔕 every rule on source default for 5m more",
        "🔕 low-cash on 1234* for 2h00m more, by telegram:@al",
    ]
