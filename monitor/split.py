"""The lean parse: a body split into per-record byte slices, only the changed ones decoded. Pure.

:func:`parse_split` is what a poll runs. msgspec splits the JSON array into one
:class:`msgspec.Raw` slice per record (in C, without building a Python object per value); a
slice whose bytes equal the previous poll's slice at the same position is the same record of
the same account, unchanged, so it is neither decoded nor validated again. Only the other
slices (about 1% per poll) are decoded and validated, each exactly as :mod:`monitor.parse`
does it (orjson, then ``Decimal`` through the shortest repr; the standard library with
``Decimal`` for a number a binary float cannot hold), and their problems are the same, at the
same record indexes.

The accounts come back as a :class:`Book`, a read-only mapping that keeps the body's slices
rather than a decoded record per account: an account is decoded when it is looked up (the
changed ones already are). That keeps about 0.5 KiB per account instead of 4-5 KiB.

When the order of the accounts moves (a record's account number now names an account that
was at another position, or one that a later record would shadow) the whole body is decoded
record by record, as on the first poll; a body msgspec cannot split (not JSON, not an array)
goes to :func:`monitor.parse.parse_body`, which words the error precisely.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import msgspec
import orjson

from monitor.encoding import loads
from monitor.models import Account, ParseResult, Problem
from monitor.parse import InexactError, check_one, exact_record, parse_body

__all__ = ["Book", "parse_split"]

_SPLIT: Final = msgspec.json.Decoder(list[msgspec.Raw])


class Book(Mapping[str, Account]):
    """The accounts of one body, kept as its records' byte slices.

    ``numbers[i]`` is the account number of record ``i`` when that record was accepted
    (``None`` when it was skipped; ``skipped`` lists those positions); ``where`` maps each
    accepted account number to its record's position, or to ``-1`` for an account kept from an
    earlier poll because its record is unusable now (:meth:`keeping`; ``kept`` counts them).
    ``decoded`` holds the accounts decoded so far. Never changed in place once built, except
    for ``decoded`` filling in: a later poll shares ``numbers`` and ``where`` when they did not
    move.
    """

    __slots__ = ("decoded", "kept", "numbers", "records", "skipped", "where")

    def __init__(
        self,
        records: Sequence[msgspec.Raw],
        numbers: Sequence[str | None],
        where: dict[str, int],
        decoded: dict[str, Account],
        *,
        skipped: tuple[int, ...] = (),
        kept: int = 0,
    ) -> None:
        self.records = records
        self.numbers = numbers
        self.where = where
        self.decoded = decoded
        self.skipped = skipped
        self.kept = kept

    def __getitem__(self, number: str) -> Account:
        account = self.decoded.get(number)
        if account is not None:
            return account
        at = self.where[number]  # KeyError: not an account of this poll
        account = _decode_accepted(self.records[at])
        self.decoded[number] = account
        return account

    def get(self, number: str, default: Any = None) -> Any:
        if number in self.where:
            return self[number]
        return default

    def __contains__(self, number: object) -> bool:
        return number in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)

    def keys(self) -> Any:  # dict_keys: set operations in C
        return self.where.keys()

    def keeping(self, kept: Mapping[str, Account]) -> Book:
        """These accounts too (their last usable record, this poll's being unusable)."""
        if not kept:
            return self
        where = dict(self.where)
        where.update(dict.fromkeys(kept, -1))
        return Book(
            self.records,
            self.numbers,
            where,
            {**self.decoded, **kept},
            skipped=self.skipped,
            kept=self.kept + len(kept),
        )


def _decode_accepted(record: msgspec.Raw) -> Account:
    """An account whose record was accepted before (same bytes): decoded and validated again."""
    accepted: dict[str, Account] = {}
    raw, item = _decode(bytes(record))
    check_one(0, item, set(), accepted, [], raw=raw)
    (account,) = accepted.values()
    return account


def _decode(data: bytes) -> tuple[Any, Any]:
    """One record as orjson decoded it (``None`` when orjson could not) and with exact
    numbers: orjson and shortest reprs, or the standard library with ``Decimal``."""
    try:
        item = orjson.loads(data)
        return (item, exact_record(item)) if type(item) is dict else (None, item)
    except (orjson.JSONDecodeError, InexactError):
        return None, loads(data)


def parse_split(body: bytes, previous: Mapping[str, Account] | None = None) -> ParseResult:
    """Parse ``body`` against the previous poll's accounts (a :class:`Book` for the fast
    comparison; any other mapping, or none, means every record is decoded)."""
    try:
        records = _SPLIT.decode(body)
    except msgspec.DecodeError:
        return parse_body(body, previous)
    try:
        if isinstance(previous, Book):
            result = _incremental(records, previous)
            if result is not None:
                return result
        return _whole(records)
    except (ValueError, RecursionError):  # what msgspec split, a decoder refused: say why
        return parse_body(body, previous)


def _whole(records: list[msgspec.Raw]) -> ParseResult:
    """Every record decoded and validated, in order (the first poll, or after a reorder)."""
    accepted: dict[str, Account] = {}
    problems: list[Problem] = []
    seen: set[str] = set()
    numbers: list[str | None] = []
    for index, record in enumerate(records):
        raw, item = _decode(bytes(record))
        ok = check_one(index, item, seen, accepted, problems, raw=raw)
        numbers.append(item["account_number"] if ok else None)
    return ParseResult(
        _book(records, _compact(numbers), accepted), tuple(problems), frozenset(accepted)
    )


def _compact(numbers: list[str | None]) -> list[str | None]:
    """The account numbers as new strings, made after every record was decoded: side by side in
    memory, rather than each amid its decoded record. Those records are freed after this poll,
    and the memory they held can then go back to the system (numbers scattered among them
    would keep most of it, about 1 KiB per account)."""
    return [None if n is None else n.encode().decode() for n in numbers]


def _book(
    records: list[msgspec.Raw],
    numbers: Sequence[str | None],
    decoded: dict[str, Account],
    where: dict[str, int] | None = None,
) -> Book:
    if where is None:
        where = {n: i for i, n in enumerate(numbers) if n is not None}
    skipped = (
        tuple(i for i, n in enumerate(numbers) if n is None) if len(where) < len(numbers) else ()
    )
    return Book(records, numbers, where, decoded, skipped=skipped)


def _incremental(records: list[msgspec.Raw], previous: Book) -> ParseResult | None:
    """Only the records whose bytes differ from the previous poll's at the same position are
    decoded; ``None`` when the accounts moved (then :func:`_whole` decodes everything)."""
    before, old_numbers, old_where = previous.records, previous.numbers, previous.where
    common = min(len(records), len(before))
    differ = itertools.compress(
        itertools.count(), map(operator.ne, records[:common], before[:common])
    )
    # Records skipped last time are looked at again (their problems are this poll's too).
    redo = sorted({*differ, *(i for i in previous.skipped if i < common)})
    todo = [*redo, *range(common, len(records))]
    redone = set(todo)
    accepted: dict[str, Account] = {}
    problems: list[Problem] = []
    seen: set[str] = set()
    numbers: list[str | None] | None = None  # copied on the first change of an account number
    for index in todo:
        raw, item = _decode(bytes(records[index]))
        number = item.get("account_number") if type(item) is dict else None
        if type(number) is str:
            at = old_where.get(number, -1)
            if at >= 0 and at != index:
                if at in redone or at > index:
                    return None  # the account moved, or this record comes first now
                seen.add(number)  # a later duplicate of an unchanged record: skipped
        ok = check_one(index, item, seen, accepted, problems, raw=raw)
        now = number if ok else None
        if index >= common or old_numbers[index] != now:
            if numbers is None:
                numbers = list(old_numbers[:common])
            if index < len(numbers):
                numbers[index] = now
            else:
                numbers.append(now)
    if numbers is None and len(records) == len(before):
        # Nothing moved: the same numbers at the same positions (the usual poll).
        where = old_where if previous.kept == 0 else None
        return ParseResult(
            Book(records, old_numbers, where or _where(old_numbers), accepted,
                 skipped=previous.skipped),
            tuple(problems),
            frozenset(accepted),
        )  # fmt: skip
    if numbers is None:
        numbers = list(old_numbers[:common])
    return ParseResult(_book(records, numbers, accepted), tuple(problems), frozenset(accepted))


def _where(numbers: Sequence[str | None]) -> dict[str, int]:
    return {n: i for i, n in enumerate(numbers) if n is not None}
