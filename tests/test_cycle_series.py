"""The dashboard's history from the pure step: which tracked fields a poll writes
(``PollWrite.series``), decided by the one change detector."""

from __future__ import annotations

from decimal import Decimal

from cycle_helpers import T0, Polls, body, later, record

from monitor.errors import FetchError


def test_the_first_poll_writes_no_history() -> None:
    """The stored records are every series' starting values: the baseline writes none."""
    polls = Polls()
    done = polls.poll(
        body(record("A", margin_type="cash", daytrades_count=0), record("B", "10.00")), at=T0
    )
    assert done.write.series == ()


def test_an_account_that_never_moves_writes_nothing() -> None:
    polls = Polls()
    polls.poll(body(record("A"), record("B")), at=T0)
    done = polls.poll(body(record("A"), record("B")), at=later(minutes=1))
    assert done.write.series == ()


def test_only_the_changed_tracked_fields_are_written() -> None:
    """Cash moved and a restriction began with its reason: three points for A, each with the
    value before; none for B (an equal number spelled otherwise, 5000.0, is no change), and
    none for an untracked field (margin_type)."""
    polls = Polls()
    polls.poll(body(record("A"), record("B")), at=T0)
    done = polls.poll(
        body(
            record("A", "12.34", restriction="restricted", restriction_reason="<script>x"),
            record("B", "5000.0", margin_type="cash"),
        ),
        at=later(minutes=1),
    )
    assert set(done.write.series) == {
        ("A", "cash", Decimal("5000.00"), Decimal("12.34")),
        ("A", "restriction", "none", "restricted"),
        ("A", "restriction_reason", None, "<script>x"),
    }


def test_a_new_account_writes_all_its_tracked_fields_and_a_failed_poll_none() -> None:
    polls = Polls()
    polls.poll(body(record("A")), at=T0)
    done = polls.poll(body(record("A"), record("C", "7.00")), at=later(minutes=1))
    assert set(done.write.series) == {
        ("C", "cash", None, Decimal("7.00")),
        ("C", "restriction", None, "none"),
    }
    failed = polls.poll(FetchError("HTTP 503"), at=later(minutes=2))
    assert failed.write.series == ()
