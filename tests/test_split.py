"""monitor.split: the lean parse gives what monitor.parse gives, decoding only what changed.

The property: for any two bodies (the second sharing some records with the first, at the same
or at other positions), parsing the second against the first's accounts gives the same accounts
and the same problems as ``parse_body`` of the second alone, and names as changed at least
every account whose record differs.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_parse_properties import SETTINGS, records

from monitor.errors import ParseError
from monitor.models import Account
from monitor.parse import parse_body
from monitor.split import Book, parse_split


def body(*items: str) -> bytes:
    return ("[" + ",".join(items) + "]").encode()


def rec(number: str, cash: str = "100.50", **more: object) -> str:
    extra = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in more.items())
    return f'{{"account_number":"{number}","cash":{cash},"restriction":"none"{extra}}}'


def _same_as_parse_body(data: bytes, previous: Book | None) -> None:
    try:
        expected = parse_body(data)
    except ParseError as exc:
        wording = str(exc)
        with pytest.raises(ParseError) as raised:
            parse_split(data, previous)
        assert str(raised.value) == wording
        return
    got = parse_split(data, previous)
    assert dict(got.accounts) == dict(expected.accounts)
    assert got.problems == expected.problems
    if previous is not None:
        differ = {n for n, a in expected.accounts.items() if n not in previous or previous[n] != a}
        assert got.changed is None or differ <= got.changed  # None: any may have changed


@SETTINGS
@given(
    first=st.lists(records(), max_size=6),
    edits=st.lists(st.tuples(st.integers(0, 7), records() | st.none()), max_size=4),
    shuffle=st.booleans(),
    data=st.data(),
)
def test_parsing_against_the_previous_poll_gives_what_parse_body_gives(
    first: list[str],
    edits: list[tuple[int, str | None]],
    shuffle: bool,
    data: st.DataObject,
) -> None:
    second = list(first)
    for at, item in edits:  # replace, insert or drop a record
        if item is None:
            if second:
                del second[at % len(second)]
        elif at < len(second) and at % 2:
            second[at] = item
        else:
            second.insert(min(at, len(second)), item)
    if shuffle:
        second = data.draw(st.permutations(second))
    try:
        previous = parse_split(body(*first)).accounts
    except ParseError:
        previous = None
    _same_as_parse_body(body(*second), previous if isinstance(previous, Book) else None)


def test_only_changed_records_are_decoded() -> None:
    """Unchanged records stay byte slices; the changed one is decoded and named as changed."""
    first = parse_split(body(rec("A"), rec("B"), rec("C")))
    second = parse_split(body(rec("A"), rec("B", "99.75"), rec("C")), first.accounts)
    assert isinstance(second.accounts, Book)
    assert second.changed == frozenset({"B"})
    assert set(second.accounts.decoded) == {"B"}
    assert second.accounts["A"].get("cash") == Decimal("100.50")  # decoded when looked up
    assert second.accounts["B"].get("cash") == Decimal("99.75")
    assert isinstance(first.accounts, Book)
    assert second.accounts.where is first.accounts.where  # nothing moved: shared


def test_nothing_changed_decodes_nothing() -> None:
    first = parse_split(body(rec("A"), rec("B")))
    second = parse_split(body(rec("A"), rec("B")), first.accounts)
    assert second.changed == frozenset()
    assert isinstance(second.accounts, Book)
    assert second.accounts.decoded == {}
    assert len(second.accounts) == 2
    assert second.accounts.keys() == {"A", "B"}


def test_a_later_duplicate_of_an_unchanged_record_is_skipped() -> None:
    first = parse_split(body(rec("A"), rec("B")))
    second = parse_split(body(rec("A"), rec("A", "1.00"), rec("B")), first.accounts)
    assert second.accounts["A"].get("cash") == Decimal("100.50")
    assert [(p.index, p.message) for p in second.problems] == [(1, "duplicate account_number")]
    assert second.problems == parse_body(body(rec("A"), rec("A", "1.00"), rec("B"))).problems


def test_an_earlier_record_of_the_same_account_wins_and_moves_it() -> None:
    """A new record before an unchanged one with the same number: the first wins (all decoded)."""
    first = parse_split(body(rec("A"), rec("B")))
    second = parse_split(body(rec("B", "5.00"), rec("A"), rec("B")), first.accounts)
    assert second.accounts["B"].get("cash") == Decimal("5.00")
    assert [p.index for p in second.problems] == [2]


def test_swapped_accounts_are_compared_by_number() -> None:
    first = parse_split(body(rec("A"), rec("B", "2.00")))
    second = parse_split(body(rec("B", "2.00"), rec("A", "3.00")), first.accounts)
    assert second.accounts["A"].get("cash") == Decimal("3.00")
    assert second.accounts["B"].get("cash") == Decimal("2.00")
    assert second.changed is not None
    assert "A" in second.changed


def test_a_skipped_record_is_reported_at_every_poll() -> None:
    bad = rec("C", '"lots"')
    first = parse_split(body(rec("A"), bad))
    second = parse_split(body(rec("A"), bad), first.accounts)
    assert [p.field for p in first.problems] == [p.field for p in second.problems] == ["cash"]
    assert "C" not in second.accounts


def test_a_number_a_float_cannot_hold_is_exact() -> None:
    first = parse_split(body(rec("A")))
    second = parse_split(body(rec("A", "0.12345678901234567890123")), first.accounts)
    assert second.accounts["A"].get("cash") == Decimal("0.12345678901234567890123")


def test_kept_accounts_are_looked_up_and_not_shared() -> None:
    first = parse_split(body(rec("A"), rec("B")))
    kept = Account("Z", {"account_number": "Z"})
    book = first.accounts
    assert isinstance(book, Book)
    with_z = book.keeping({"Z": kept})
    assert with_z["Z"] is kept
    assert "Z" not in book
    second = parse_split(body(rec("A"), rec("B")), with_z)
    assert set(second.accounts) == {"A", "B"}


@pytest.mark.parametrize("data", [b"", b"{}", b"[1,", b'{"a": [1]}', b"nope"])
def test_what_cannot_be_split_is_worded_as_parse_body_words_it(data: bytes) -> None:
    _same_as_parse_body(data, None)
