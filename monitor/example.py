"""The commented example configuration shipped in the package, and ``init`` writing it.

``monitor/data/config.example.toml`` is the repository's ``config.example.toml`` (a link to it in
a checkout, a copy in the sdist and the wheel), so a pip or pipx install has it too.
"""

from __future__ import annotations

import errno
import shlex
from importlib import resources
from pathlib import Path

from monitor.errors import ConfigError

NAME = "config.example.toml"


def example_config() -> bytes:
    """The example configuration, exactly as shipped."""
    return resources.files("monitor").joinpath("data", NAME).read_bytes()


def write_example(path: Path) -> None:
    """Create ``path`` holding the example; ``ConfigError`` if it exists (a link, even a
    dangling one, counts) or cannot be written. Never overwrites anything."""
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: is a directory")
    try:
        with path.open("xb") as out:  # O_CREAT | O_EXCL: no race, no following a link
            out.write(example_config())
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; not overwriting it (remove it first, or give init another "
            "path)"
        ) from None
    except OSError as exc:
        reason = "no such directory" if exc.errno == errno.ENOENT else exc.strerror or str(exc)
        raise ConfigError(f"cannot write {path}: {reason.lower()}") from None


def next_steps(path: Path) -> str:
    """What ``init`` prints after writing ``path``."""
    config = shlex.quote(str(path))
    return (
        f"wrote {path}: the commented example configuration\n"
        "Next:\n"
        f"  1. Edit {path}: [api] (the URL and your credentials), the [[sinks]] to notify\n"
        "     (delete the others) and the [[rules]]. Each key is explained where it stands.\n"
        f"  2. balance-monitor check-config --config {config}\n"
        f"  3. balance-monitor test-sink NAME --config {config}   (once per sink)\n"
        f"  4. balance-monitor run --config {config}   (or `once` from cron)\n"
        "To see it work first, without an account: balance-monitor demo"
    )
