"""What the SQL of :mod:`monitor.store.sqlite_ops` needs of a connection, on either backend.

A ``sqlite3.Connection`` is one as it is; :class:`monitor.store.postgres.PgConnection` wraps a
psycopg connection to be one (``?`` placeholders become ``%s``). So each operation is written
once, in the SQL both dialects share (``INSERT ... ON CONFLICT ... DO UPDATE``, ``excluded``,
``json_extract``, which PostgreSQL gets as a function of the schema).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    """A DB-API connection in autocommit mode, with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    @property
    def in_transaction(self) -> bool: ...
