"""Print the dependencies pyproject.toml declares, and those of the named extras, one per line.

The container build installs them in a layer of their own, before the source is copied:

    python requirements.py pyproject.toml "$EXTRAS" > requirements.txt

EXTRAS is comma-separated ("apprise"); an unknown extra is an error (exit 2), not ignored.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    wanted = dict.fromkeys(name.strip() for name in extras.split(",") if name.strip())
    unknown = [name for name in wanted if name not in optional]
    if unknown:
        known = ", ".join(sorted(optional))
        raise ValueError(f"unknown extra {unknown[0]!r} (known: {known})")
    found: list[str] = list(project.get("dependencies", []))
    for name in wanted:
        found += [r for r in optional[name] if r not in found]
    return found


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        sys.stderr.write("usage: requirements.py PYPROJECT [EXTRA,...]\n")
        return 2
    try:
        lines = requirements(Path(argv[0]), argv[1] if len(argv) == 2 else "")
    except ValueError as exc:
        sys.stderr.write(f"requirements.py: {exc}\n")
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
