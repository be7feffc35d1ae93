"""What the OS says a process has cost so far: CPU, memory, bytes written. Linux ``/proc`` only.

CPU is the sum of ``/proc/<pid>/task/*/schedstat`` (nanoseconds on the CPU, user and system
together, for every live thread), because ``utime``/``stime`` in ``/proc/<pid>/stat`` tick at
10 ms, too coarse for an idle poll. Both are read; ``cpu_ticks`` is the cross-check (it also
counts threads that have exited). ``write_bytes`` from ``/proc/<pid>/io`` counts the bytes the
process caused to be written to storage (page-cache pages dirtied, so 4 KiB granular); it stays
0 on tmpfs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_TICK = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Probe:
    """One reading of a process's counters; subtract two of them to get a cost."""

    at: float  # time.time() of the reading
    cpu: float  # seconds on a CPU, all live threads (schedstat), user + system
    cpu_ticks: float  # seconds, utime + stime from /proc/<pid>/stat (10 ms granular)
    rss: int  # bytes, VmRSS
    hwm: int  # bytes, VmHWM: the peak RSS since the process started
    write_bytes: int  # bytes sent to storage, /proc/<pid>/io
    files: int  # total size in bytes of the files asked about (missing ones count 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe:
        return cls(**data)


def probe(pid: int, files: Iterable[Path] = ()) -> Probe:
    """Read ``pid``'s counters now; ``OSError`` when the process is gone."""
    proc = Path(f"/proc/{pid}")
    return Probe(
        at=time.time(),
        cpu=_schedstat_seconds(proc),
        cpu_ticks=_stat_seconds(proc),
        rss=_status_kib(proc, "VmRSS") * 1024,
        hwm=_status_kib(proc, "VmHWM") * 1024,
        write_bytes=_io_field(proc, "write_bytes"),
        files=sum(_size(f) for f in files),
    )


def _schedstat_seconds(proc: Path) -> float:
    total = 0
    for task in (proc / "task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between listing and reading
    return total / 1e9


def _stat_seconds(proc: Path) -> float:
    text = (proc / "stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) * _TICK


def _status_kib(proc: Path, key: str) -> int:
    for line in (proc / "status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _io_field(proc: Path, key: str) -> int:
    try:
        text = (proc / "io").read_text()
    except PermissionError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value)
    return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` lives on (``ext4``, ``tmpfs``...), from mounts."""
    target = str(path.resolve())
    best, kind = "", "unknown"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, parts[2]
    return kind
