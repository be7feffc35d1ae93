"""The dashboard's history from the pure step: which tracked fields a poll writes
(``PollWrite.series``), decided by the one change detector."""

from __future__ import annotations

from decimal import Decimal

from cycle_helpers import T0, Polls, body, later, record

from monitor.errors import FetchError


def test_the_first_poll_writes_every_tracked_field_of_every_account() -> None:
    """The starting point of every series; untracked fields (margin_type) are not series."""
    polls = Polls()
    done = polls.poll(
        body(record("A", margin_type="cash", daytrades_count=0), record("B", "10.00")), at=T0
    )
    assert set(done.write.series) == {
        ("A", "cash", Decimal("5000.00")),
        ("A", "restriction", "none"),
        ("A", "daytrades_count", 0),
        ("B", "cash", Decimal("10.00")),
        ("B", "restriction", "none"),
    }


def test_an_account_that_never_moves_writes_nothing() -> None:
    polls = Polls()
    polls.poll(body(record("A"), record("B")), at=T0)
    done = polls.poll(body(record("A"), record("B")), at=later(minutes=1))
    assert done.write.series == ()


def test_only_the_changed_tracked_fields_are_written() -> None:
    """Cash moved and a restriction began with its reason: three points for A, none for B;
    an equal number spelled otherwise (5000.0) is no change."""
    polls = Polls()
    polls.poll(body(record("A"), record("B")), at=T0)
    done = polls.poll(
        body(
            record("A", "12.34", restriction="restricted", restriction_reason="<script>x"),
            record("B", "5000.0"),
        ),
        at=later(minutes=1),
    )
    assert set(done.write.series) == {
        ("A", "cash", Decimal("12.34")),
        ("A", "restriction", "restricted"),
        ("A", "restriction_reason", "<script>x"),
    }


def test_a_new_account_writes_all_its_tracked_fields_and_a_failed_poll_none() -> None:
    polls = Polls()
    polls.poll(body(record("A")), at=T0)
    done = polls.poll(body(record("A"), record("C", "7.00")), at=later(minutes=1))
    assert set(done.write.series) == {("C", "cash", Decimal("7.00")), ("C", "restriction", "none")}
    failed = polls.poll(FetchError("HTTP 503"), at=later(minutes=2))
    assert failed.write.series == ()
