"""(previous accounts, current accounts) -> the list of changes between them. Pure.

The one change detector: the parser's fast path (is this record the same as last poll's?),
the poll step (which accounts to write, which to evaluate) and the rules (what ``change``,
``restriction_change`` and ``delta`` see) all ask this module, so they cannot disagree.

Values are compared as data: numbers numerically (``1.0`` equals ``1.00`` and ``1``), a field
missing on one side equals ``null``, and a boolean never equals a number (``true`` is not ``1``).
The order is deterministic: by account number, then the fields in the order of
:data:`~monitor.models.KNOWN_FIELDS`, then unknown fields sorted by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from monitor.models import KNOWN_FIELDS, Account, Change, JSONValue

__all__ = ["changed_fields", "diff", "raw_checks", "same", "same_raw"]

_KNOWN: Final = frozenset(KNOWN_FIELDS)
#: Types whose ``==`` is already JSON equality when both sides have the same type.
_SCALARS: Final = frozenset({Decimal, int, str})
_NO_FIELDS: Final[Mapping[str, JSONValue]] = MappingProxyType({})


def diff(
    previous: Mapping[str, Account] | None,
    current: Mapping[str, Account],
    *,
    only: Iterable[str] | None = None,
) -> list[Change]:
    """Every change from ``previous`` to ``current``; ``previous`` is ``None`` on the first poll.

    Accounts in both give one ``changed`` per differing field; an account only in ``current`` is
    ``added`` (``current`` holds its record), one only in ``previous`` is ``removed``.
    ``only`` (when known) names the accounts of ``current`` that may differ from ``previous``
    (the parser's fast path knows the others are the same records): the rest are not compared.
    """
    if previous is None:
        return []
    if only is None:
        numbers = previous.keys() | current.keys()
    else:
        numbers = {n for n in only if n in current} | (previous.keys() - current.keys())
    changes: list[Change] = []
    for number in sorted(numbers):
        before = previous.get(number)
        after = current.get(number)
        if before is not None and after is not None:
            for name, (old, new) in changed_fields(before, after).items():
                changes.append(
                    Change(
                        kind="changed", account_number=number, field=name, previous=old, current=new
                    )
                )
        elif after is not None:
            changes.append(Change(kind="added", account_number=number, current=after.record))
        elif before is not None:
            changes.append(Change(kind="removed", account_number=number, previous=before.record))
    return changes


def changed_fields(previous: Account | None, current: Account) -> dict[str, tuple[Any, Any]]:
    """``{field: (previous value, current value)}`` for every field that differs, in diff order.

    A missing field reads as ``None``; with no ``previous`` every non-null field of ``current``
    is listed.
    """
    old = previous.record if previous is not None else _NO_FIELDS
    new = current.record
    if old is new:
        return {}
    fields: dict[str, tuple[Any, Any]] = {}
    names = KNOWN_FIELDS
    if not (_KNOWN.issuperset(old) and _KNOWN.issuperset(new)):
        names += tuple(sorted((old.keys() | new.keys()) - _KNOWN))
    for name in names:
        a = old.get(name)
        b = new.get(name)
        if a is b or (type(a) is type(b) and type(a) in _SCALARS and a == b):
            continue  # the common case: the same kind of scalar with an equal value
        if not _same(a, b):
            fields[name] = (a, b)
    return fields


def same_raw(previous: Account, item: Mapping[str, Any]) -> bool:
    """Whether ``item`` (a record as decoded, before validation) is the record ``previous`` was
    made from, by the same JSON equality as :func:`changed_fields`.

    Python's ``==`` (fast, in C) is JSON equality except that ``true == 1`` and ``false == 0``,
    also inside containers; so the few keys :func:`raw_checks` noted for ``previous`` are
    looked at again: a boolean or container as data, a 0 or 1 for a boolean in its place.
    """
    raw = previous.raw
    if raw is None or raw != item:
        return False
    for key in previous.checks:
        was = raw[key]
        now = item[key]
        if type(was) in _CONFUSABLE:
            if not _same(was, now):
                return False
        elif now is True or now is False:
            return False
    return True


def raw_checks(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of a decoded record where ``==`` may call a different JSON value equal:
    booleans, containers, and numbers equal to 0 or 1 (see :func:`same_raw`)."""
    keys = tuple(
        key
        for key, value in raw.items()
        if type(value) in _CONFUSABLE or (type(value) in _NUMBERS and value in (0, 1))
    )
    if not keys:
        return ()
    # Records of one source share a few such tuples (``("daytrades_count",)``): keep one each.
    shared = _SHARED.get(keys)
    if shared is None:
        if len(_SHARED) < _SHARED_MAX:
            _SHARED[keys] = keys
        return keys
    return shared


#: Decoded values whose ``==`` may hold against a different JSON value: see :func:`raw_checks`.
_CONFUSABLE: Final = frozenset({bool, list, dict})
_NUMBERS: Final = frozenset({int, float, Decimal})
_SHARED: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_MAX: Final = 1024


def same(a: Any, b: Any) -> bool:
    """JSON equality of two values: numbers numerically (``1`` equals ``1.00``), a boolean only
    equals itself, a missing value (``None``) only ``null``, containers deeply."""
    return _same(a, b)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers numerically, a boolean only equals itself, containers deeply."""
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False  # True and False are singletons, so `a is b` has already said yes
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return False
    return bool(a == b)
