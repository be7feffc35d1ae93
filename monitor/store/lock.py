"""One writer per state database: an exclusive ``flock`` on ``<database>.lock`` next to it.

Two processes writing one state database (two ``run``, or ``once`` next to ``run``) would each
detect a change and queue it under their own notification id, which no receiver can
de-duplicate. The store's writer therefore takes this lock before it connects and keeps it until
it closes; the operating system drops it when the process dies, even by ``kill -9``, so a stale
lock file never blocks a start. Readers (``status``) take no lock.

The holder removes the file before it unlocks it, and a process whose file is no longer at that
path (removed meanwhile), whether it locked it or was refused, tries again on the file there
now: so two processes never hold locks on two different files, and a process is refused only by
one holding the file at the path. A file left by a killed process is simply locked anew. It holds
the holder's pid, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from monitor.errors import StateLockedError, StoreError


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class StateLock:
    """An exclusive lock on a state database, held until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: Path) -> StateLock:
        """Lock ``database`` for this process, or raise :class:`StateLockedError` at once."""
        path = lock_path(database)
        while True:
            fd = _open(path)
            try:
                locked = _try_lock(fd, path)
                current = same_file(fd, path)
            except BaseException:
                os.close(fd)
                raise
            if current and locked:
                break
            if current:  # held by a process that holds the file at the path now
                holder = _holder(fd)
                os.close(fd)
                by = f" (pid {holder})" if holder is not None else ""
                raise StateLockedError(
                    f"state.path: {database} is in use by another balance-monitor{by}; "
                    "run one `run` or `once` at a time per state database"
                )
            os.close(fd)  # its holder removed it meanwhile: try the file at the path now
        with contextlib.suppress(OSError):  # the pid only serves a refused process's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file, then unlock it (removing it first is what makes this safe)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the lock file: {exc.strerror}") from exc


def _try_lock(fd: int, path: Path) -> bool:
    """Lock ``fd`` without waiting: whether it is ours now."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise StoreError(f"{path}: cannot lock: {exc.strerror}") from exc
    return True


def same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path``, not one that its holder removed between
    our open and our lock (we would hold, or be refused by, a lock nobody else looks at)."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(fd: int) -> int | None:
    """The pid the lock's holder wrote, if it did (it writes it right after locking)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
