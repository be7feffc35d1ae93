"""One writer per state database: opening it takes an exclusive lock on a file next to it."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import StateLockedError, StoreError
from monitor.store import SqliteStore
from monitor.store.lock import StateLock, lock_path, same_file


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


async def test_a_second_writer_is_refused_until_the_first_closes(path: Path) -> None:
    """While one store has the database open, opening it again raises StateLockedError naming
    the database and the process holding it; after close it opens again."""
    first = await SqliteStore.open(path)
    try:
        with pytest.raises(StateLockedError) as refused:
            await SqliteStore.open(path)
    finally:
        await first.close()
    assert str(refused.value) == (
        f"state.path: {path} is in use by another balance-monitor (pid {os.getpid()}); "
        "run one `run` or `once` at a time per state database"
    )
    again = await SqliteStore.open(path)
    await again.close()


async def test_a_reader_needs_no_lock(path: Path) -> None:
    """``status`` (read-only) opens the database next to the writer, and takes no lock."""
    writer = await SqliteStore.open(path)
    try:
        reader = await SqliteStore.open(path, readonly=True)
        await reader.close()
        with pytest.raises(StateLockedError):
            await SqliteStore.open(path)
    finally:
        await writer.close()


async def test_the_lock_file_sits_next_to_the_database_while_it_is_open(path: Path) -> None:
    """The lock is ``<database>.lock``, holding the writer's pid, and removed on close."""
    lock = path.with_name("state.db.lock")
    store = await SqliteStore.open(path)
    try:
        assert lock.read_text(encoding="utf-8") == f"{os.getpid()}\n"
    finally:
        await store.close()
    assert not lock.exists()


async def test_a_lock_file_left_by_a_killed_process_is_taken_over(path: Path) -> None:
    """A lock file nobody holds (its process was killed) does not stop an open."""
    lock = path.with_name("state.db.lock")
    lock.write_text("999999999\n", encoding="utf-8")
    store = await SqliteStore.open(path)
    try:
        assert lock.read_text(encoding="utf-8") == f"{os.getpid()}\n"
    finally:
        await store.close()


async def test_a_lock_file_removed_under_a_waiting_process_is_not_shared(path: Path) -> None:
    """The race removal could open: B opened the lock file, then A removed it and unlocked it,
    then B locked the removed file. B must not think it holds the database while C holds the
    new file: StateLock checks that what it locked is still the file at the path."""
    lock_file = lock_path(path)
    first = StateLock.acquire(path)
    stale = os.open(lock_file, os.O_RDWR)  # B's open, before A lets go
    try:
        first.release()
        third = StateLock.acquire(path)  # C, on a new file at the same path
        try:
            fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # B's lock, on the old file
            assert not same_file(stale, lock_file)
            with pytest.raises(StateLockedError):
                StateLock.acquire(path)
        finally:
            third.release()
    finally:
        os.close(stale)


async def test_a_refused_database_releases_its_lock(tmp_path: Path) -> None:
    """A file that is not a database is refused as such, each time: the failed open released
    the lock it took."""
    path = tmp_path / "not.db"
    path.write_text("not a database\n" * 100, encoding="utf-8")
    for _ in range(2):
        with pytest.raises(StoreError, match="cannot open the state database"):
            await SqliteStore.open(path)


async def test_an_unusable_lock_file_is_a_store_error(path: Path) -> None:
    """A lock file that cannot be opened is a StoreError naming it, not an OSError, and the
    database is left alone."""
    lock_path(path).mkdir()
    with pytest.raises(StoreError, match=r"state\.db\.lock: cannot open the lock file: Is a dir"):
        await SqliteStore.open(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.db.lock"]


# --------------------------------------------------------------------------- properties


class Processes:
    """Processes sharing one state database, each with its own descriptors (as flock sees
    separate processes). ``holders`` believe they hold its lock; ``locking`` have locked a file
    and not yet checked that it is the one at the path."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = lock_path(database)
        self.holders: set[str] = set()
        self.locking: dict[str, int] = {}

    def refused(self, name: str) -> None:
        """A refusal is right only while another process has locked the file at the path."""
        others = self.holders | {n for n, fd in self.locking.items() if same_file(fd, self.path)}
        assert others - {name}, f"{name} refused while nobody holds the lock"

    def simple(self, name: str) -> Iterator[None]:
        """A process that acquires (one step) and later releases the lock."""
        try:
            lock = StateLock.acquire(self.database)
        except StateLockedError:
            self.refused(name)
            return
        self.holders.add(name)
        yield
        self.holders.discard(name)
        lock.release()

    def slow(self, name: str) -> Iterator[None]:
        """StateLock.acquire, one step at a time: paused between opening the lock file and
        locking it, where a holder's removal of the file and another's new lock slip in."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            yield from self.simple(name)
            return
        yield
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            locked = False
        else:
            locked = True
            self.locking[name] = fd
        yield
        self.locking.pop(name, None)
        if not same_file(fd, self.path):
            os.close(fd)
            yield from self.simple(name)
            return
        if not locked:
            os.close(fd)
            self.refused(name)
            return
        self.holders.add(name)
        yield
        self.holders.discard(name)
        StateLock(self.path, fd).release()


@settings(max_examples=100, deadline=None)
@given(order=st.permutations(["a", "a", "b", "b", "b", "b", "b", "c", "c", "d", "d"]))
def test_at_most_one_process_holds_the_state_database(order: list[str]) -> None:
    """In any interleaving of four processes, two of them slow (paused between opening and
    locking, where a holder's removal of the file can slip in), at no step do two processes
    hold the lock, and a process is refused only while another holds the file at the path."""
    folder = Path(tempfile.mkdtemp(prefix="lock-"))
    try:
        world = Processes(folder / "state.db")
        steps = {
            "a": world.simple("a"),
            "b": world.slow("b"),
            "c": world.simple("c"),
            "d": world.slow("d"),
        }
        for name in order:
            next(steps[name], None)
            assert len(world.holders) <= 1, world.holders
        for steps_left in steps.values():
            for _ in steps_left:
                assert len(world.holders) <= 1, world.holders
    finally:
        shutil.rmtree(folder, ignore_errors=True)
