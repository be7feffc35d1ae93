"""The command line's exit codes: a public contract (cron, systemd's ``RestartPreventExitStatus``).

0 success; 1 a source could not be fetched or parsed, or another runtime failure that a later
attempt may not meet; 2 something a restart cannot fix: the configuration, the command line, a
secret that cannot be read, an ``[http] listen`` address in use, or a state database another
process holds; 3 (``once``) notifications are still undelivered and stay queued.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    SOURCE_FAILED = 1
    CONFIG = 2
    UNDELIVERED = 3
