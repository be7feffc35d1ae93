"""Properties of monitor.parse on hostile input, with hypothesis: any body is a ``ParseError``
or a ``ParseResult`` (never another exception), and every account it accepts can be written
by a real SQLite store (as its row and inside a queued notification), and read back equal.

Bodies are made as JSON text, so they can hold what no Python value encodes to: numbers past
a float's range or with thousands of digits, nesting deeper than any decoder takes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import encoding
from monitor.cycle import Delivery, PollRecord, PollWrite
from monitor.diff import changed_fields
from monitor.errors import ParseError
from monitor.models import KNOWN_FIELDS, Account, Alert, Notification, ParseResult, Severity, Status
from monitor.parse import parse_body
from monitor.rules import SourceHealth
from monitor.store import sqlite_ops as ops

SOURCE = "default"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- JSON as text

#: Numbers as a hostile upstream may write them: past a float's range both ways, more digits
#: than a float or Python's int conversion keeps, negative zero, exponents of every size.
HOSTILE_NUMBERS = st.sampled_from(
    [
        "0",
        "-0",
        "-0.0",
        "1e400",
        "-1e400",
        "1e-400",
        "1E+999999999",
        "1e-999999999",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "0.12345678901234567890123",
        "2524.5",
        "1" * 4301,
        "-" + "9" * 5000,
        "1." + "0" * 5000 + "1",
        "1e" + "9" * 30,
    ]
)
NUMBERS = st.one_of(
    HOSTILE_NUMBERS,
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
#: Text, and what JSON's escapes can say that is no Unicode text: lone surrogates.
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\udfff", "\udc00\ud800", "\ud83d\ude00"]),
)
STRINGS = TEXT.map(json.dumps)
SCALARS = st.one_of(NUMBERS, STRINGS, st.sampled_from(["true", "false", "null"]))


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


#: Any JSON value of any shape (as text).
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(TEXT, inner), max_size=4).map(_object),
    ),
    max_leaves=12,
)


@st.composite
def deep(draw: st.DrawFn) -> str:
    """A value nested from a few levels to far past every decoder's limit."""
    depth = draw(st.one_of(st.integers(0, 130), st.integers(240, 270), st.integers(900, 1100)))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"k":', "}")]))
    leaf = draw(SCALARS)
    return opener * depth + leaf + closer * depth


FIELD_VALUES = st.one_of(VALUES, deep())
FIELD_NAMES = st.one_of(st.sampled_from(KNOWN_FIELDS[1:]), TEXT)
ACCOUNT_NUMBERS = st.one_of(
    st.sampled_from(["A", "B", "C"]).map(json.dumps), STRINGS, SCALARS, deep()
)


@st.composite
def records(draw: st.DrawFn) -> str:
    """An account record: mostly an object with an account number, sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(FIELD_VALUES)
    pairs = [("account_number", draw(ACCOUNT_NUMBERS))]
    pairs += draw(st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=5))
    return _object(draw(st.permutations(pairs)))


BODIES = st.one_of(
    st.lists(records(), max_size=5).map(_array),
    FIELD_VALUES,
    st.binary(max_size=64),
)


# --------------------------------------------------------------------------- a real store


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """One SQLite state database for every example (each rolls its writes back)."""
    path: Path = tmp_path_factory.mktemp("properties") / "state.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=OFF")  # speed: the file's durability is not under test
    ops.upgrade(conn, path)
    try:
        yield conn
    finally:
        conn.close()


def _alert(account: Account) -> Alert:
    """An alert carrying the account's record, as a ``change`` rule's would."""
    values = list(account.record.values())
    return Alert(
        status=Status.FIRING,
        fingerprint="fp",
        rule="change",
        type="change",
        severity=Severity.WARNING,
        account_number=account.account_number,
        field="x",
        previous=values[-1],
        current=values[0],
        summary="changed",
        observed_at=NOW,
        snapshot=account.record,
        source=SOURCE,
    )


def _write_and_read_back(db: sqlite3.Connection, accounts: dict[str, Account]) -> None:
    """Commit the accounts (and a notification carrying each) and read them back."""
    deliveries = tuple(
        Delivery(Notification(f"n-{i}", _alert(a)), ("ops",))
        for i, a in enumerate(accounts.values())
    )
    db.execute("DELETE FROM accounts")
    db.execute("DELETE FROM outbox")
    ops.commit(
        db,
        PollWrite(
            SOURCE,
            PollRecord(NOW, ok=True, account_count=len(accounts)),
            SourceHealth(),
            upserts=tuple(accounts.values()),
            deliveries=deliveries,
        ),
    )
    loaded = ops.load_source(db, SOURCE).accounts
    assert loaded is not None
    assert loaded.keys() == accounts.keys()
    for number, account in accounts.items():
        back = loaded[number]
        assert back.record.keys() == account.record.keys()
        assert changed_fields(account, back) == {}
    queued = [row.notification() for row in ops.next_batch(db, "ops", 100, NOW.timestamp())]
    assert len(queued) == len(accounts)
    for notification in queued:
        snapshot = notification.alert.snapshot
        assert snapshot is not None
        original = accounts[str(notification.alert.account_number)]
        assert changed_fields(original, Account(original.account_number, snapshot)) == {}
    # SQLite's own JSON functions read every payload (expire and restore use them).
    ops.expire(db, older_than=0.0, now=(NOW + timedelta(days=30)).timestamp())
    ops.firing_deliveries(db, "ops")


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(body=BODIES)
def test_any_body_parses_or_is_a_parse_error(body: str | bytes) -> None:
    """Whatever the body, parse_body returns a ParseResult or raises ParseError."""
    data = body.encode() if isinstance(body, str) else body
    try:
        result = parse_body(data)
    except ParseError:
        return
    assert isinstance(result, ParseResult)


@SETTINGS
@given(body=st.lists(records(), min_size=1, max_size=4).map(_array))
def test_every_accepted_account_is_written_and_read_back_equal(
    db: sqlite3.Connection, body: str
) -> None:
    """Each account the parser accepts can be stored (row and notification payload) and is
    read back with the same values, by the same JSON equality the diff uses; also after being
    accepted a second time from the previous poll's records (the fast path's reuse)."""
    try:
        result = parse_body(body.encode())
    except ParseError:
        return
    accounts = dict(result.accounts)
    for account in accounts.values():
        text = encoding.dumps(account.record)
        assert changed_fields(account, Account("", encoding.loads(text))) == {}
    _write_and_read_back(db, accounts)
    again = parse_body(body.encode(), result.accounts)
    assert again.accounts.keys() == result.accounts.keys()


@SETTINGS
@given(depth=st.integers(1, 1100), number=st.sampled_from(["A", "B"]))
def test_a_record_nested_deeper_than_the_store_writes_is_skipped_alone(
    db: sqlite3.Connection, depth: int, number: str
) -> None:
    """However deep one record's unknown field nests, the other records are accepted: the deep
    one is accepted only as deep as the store can write it, else skipped as a problem of its
    own (naming its account, which keeps its last snapshot)."""
    nested = "[" * depth + "1" + "]" * depth
    other = "B" if number == "A" else "A"
    body = f'[{{"account_number":"{number}","extra":{nested}}},{{"account_number":"{other}"}}]'
    result = parse_body(body.encode())
    assert other in result.accounts
    if number in result.accounts:
        assert depth < encoding.MAX_DEPTH
    else:
        [problem] = result.problems
        assert (problem.account_number, problem.field) == (number, "extra")
        assert f"nested deeper than {encoding.MAX_DEPTH} levels" in problem.message
    _write_and_read_back(db, dict(result.accounts))
