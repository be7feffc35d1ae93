"""Why a balance moved, the pure part (:mod:`monitor.explain`): which notifications ask for the
journal, what an answer says, the notifications with it; the payload and the chat line."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from cycle_helpers import SINKS, baseline, body, config, later, record, run
from sinks_helpers import make_notification

from monitor import encoding
from monitor.cycle import Delivery, Step
from monitor.errors import ParseError
from monitor.explain import MAX_ENTRIES, attach, read_journal, wanted
from monitor.models import JournalEntry, Notification, Status
from monitor.sinks import slack, telegram
from monitor.sinks.text import detail_rows, explanation_lines

WITHDRAWAL = JournalEntry("MONEY:OUT", "withdrawal", Decimal("-2000.00"), "2024-05-01")
LOW = {"type": "threshold", "name": "low", "field": "cash", "op": "<", "value": 1000}
DAY = {"type": "threshold", "name": "day", "field": "daytrades_count", "op": ">=", "value": 3}


def delivery(**changes: Any) -> Delivery:
    return Delivery(make_notification(**changes), ("ops",))


@pytest.mark.parametrize(
    ("explain", "source_explains", "changes", "expected"),
    [
        (True, False, {}, ["12345678"]),
        (False, True, {}, ["12345678"]),
        (False, False, {}, []),
        (True, False, {"status": Status.RESOLVED}, []),
        (True, False, {"field": "daytrades_count"}, []),
        (True, False, {"field": None}, []),
        (True, False, {"account_number": None}, []),
        (True, False, {"rule": "another"}, []),
    ],
)
def test_only_firing_alerts_of_explained_rules_on_money_fields_want_the_journal(
    explain: bool, source_explains: bool, changes: dict[str, Any], expected: list[str]
) -> None:
    cfg = config({**LOW, "name": "low-cash", "explain": explain})
    assert wanted([delivery(**changes)], cfg.rules, source_explains=source_explains) == expected


def test_one_request_per_account_however_many_alerts() -> None:
    cfg = config({**LOW, "name": "low-cash", "explain": True})
    found = wanted(
        [delivery(), delivery(field="cash"), delivery(account_number="B")],
        cfg.rules,
        source_explains=False,
    )
    assert found == ["12345678", "B"]


def entry(kind: str, amount: Any, date: str | None, description: str | None = "x") -> Any:
    return {
        "type": kind,
        "description": description,
        "cash": {"gross_amount": amount, "net_amount": amount},
        "date": date,
        "asset": {"symbol": "AAPL"},
    }


def test_the_journal_answer_becomes_entries_since_the_previous_snapshot() -> None:
    answer = encoding.dumps(
        [
            entry("MONEY:IN", Decimal("10.00"), "2024-04-30T23:00:00Z"),  # before: left out
            entry("MONEY:OUT:CHRG", Decimal("-2000.00"), "2024-05-01T12:30:00Z", "withdrawal"),
            entry("SALE:EXCH:ASG", 5, "2024-05-01", "option assignment"),  # a day: kept
            {"no": "type"},
        ]
    ).encode()
    since = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert read_journal(answer, since) == (
        JournalEntry("MONEY:OUT:CHRG", "withdrawal", Decimal("-2000.00"), "2024-05-01T12:30:00Z"),
        JournalEntry("SALE:EXCH:ASG", "option assignment", Decimal(5), "2024-05-01"),
    )


def test_an_object_holding_the_list_and_the_limit() -> None:
    many = [entry("FEE", Decimal("-1"), None) for _ in range(MAX_ENTRIES + 5)]
    assert len(read_journal(encoding.dumps({"data": many}).encode(), None)) == MAX_ENTRIES


@pytest.mark.parametrize(("text", "error"), [(b"nope", "not JSON"), (b"{}", "no list")])
def test_an_unusable_journal_answer_is_a_parse_error(text: bytes, error: str) -> None:
    with pytest.raises(ParseError, match=error):
        read_journal(text, None)


def test_attach_puts_the_entries_on_the_alert_and_keeps_its_id() -> None:
    cfg = config({**LOW, "explain": True}, {**DAY, "explain": True}, sinks=SINKS)
    state = baseline(record("A", daytrades_count=0))
    done: Step = run(
        state, body(record("A", cash="500.00", daytrades_count=3)), cfg, now=later(minutes=1)
    )
    explained = attach(done, {"A": (WITHDRAWAL,)})
    by_rule = {d.notification.alert.rule: d for d in explained.write.deliveries}
    assert by_rule["low"].notification.alert.explanation == (WITHDRAWAL,)
    assert by_rule["day"].notification.alert.explanation is None  # not a money field
    assert [d.notification.id for d in explained.write.deliveries] == [
        d.notification.id for d in done.write.deliveries
    ]
    assert attach(done, {}) is done


def test_the_payload_has_the_explanation_only_when_there_is_one() -> None:
    plain = make_notification()
    explained = replace(plain, alert=replace(plain.alert, explanation=(WITHDRAWAL,)))
    assert "explanation" not in plain.payload()
    payload = explained.payload()
    assert payload["explanation"] == [
        {
            "type": "MONEY:OUT",
            "description": "withdrawal",
            "amount": Decimal("-2000.00"),
            "date": "2024-05-01",
        }
    ]
    stored = encoding.loads(encoding.dumps(payload))  # as the outbox keeps it
    assert Notification.from_payload(stored) == explained


def test_chat_messages_have_a_line_per_entry() -> None:
    plain = make_notification(field="cash")
    alert = replace(plain.alert, explanation=(WITHDRAWAL,))
    line = "cash \u22122,000.00: withdrawal (MONEY:OUT)"
    assert explanation_lines(alert) == [line]
    assert explanation_lines(plain.alert) == []
    assert line in json.dumps(slack.message(alert), ensure_ascii=False, default=str)
    assert any(line in text for text in telegram._single(alert))
    assert ("Why", line) in detail_rows(alert)
