"""What ships: the sdist and the wheel ``python -m build`` makes from a copy of the checkout.

One build per module (a few seconds): the sdist must be complete enough that its own tests
collect against the installed package, and both must carry the licence; the wheel must carry the
example configuration that ``balance-monitor init`` writes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
#: What a checkout holds that is no part of the source: never copied into the build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "build",
    "dist",
    "*.egg-info",
    ".coverage",
    ".coverage.*",
    "htmlcov",
    "*.db",
    "*.db-*",
    "config.toml",
)
#: Folders of the checkout whose every file the sdist carries.
SDIST_FOLDERS = ("tests", "deploy", "docs", "bench")
SDIST_FILES = ("LICENSE", "README.md", "CHANGELOG.md", "config.example.toml", "Makefile")


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    #: The sdist unpacked: its top folder (``balance_monitor-0.1.0/``).
    unpacked: Path

    def sdist_names(self) -> set[str]:
        """The sdist's files, relative to its top folder."""
        return {
            str(path.relative_to(self.unpacked))
            for path in self.unpacked.rglob("*")
            if path.is_file()
        }

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.read(name).decode("utf-8")

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return set(wheel.namelist())

    def metadata(self) -> Message:
        info = next(n for n in self.wheel_names() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(self.wheel_text(info))


def _source_files(folder: str) -> set[str]:
    """The files of a folder of the checkout that are source (no caches), relative to it."""
    return {
        str(path.relative_to(REPO))
        for path in (REPO / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build`` (sdist, then the wheel from the sdist) on a copy of the checkout,
    so nothing is written into it; the sdist unpacked next to them."""
    root = tmp_path_factory.mktemp("build")
    source, out = root / "source", root / "dist"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    with tarfile.open(sdist) as archive:
        archive.extractall(root / "unpacked", filter="data")
    (unpacked,) = (root / "unpacked").iterdir()
    return Built(sdist, wheel, unpacked)


def test_the_licence_is_mit_for_balance_monitor() -> None:
    """LICENSE is the MIT licence with the project as its holder, as pyproject declares."""
    text = EXAMPLE.with_name("LICENSE").read_text(encoding="utf-8")

    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 balance-monitor\n" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_licence_ships_in_the_sdist_and_the_wheel(built: Built) -> None:
    """The sdist carries LICENSE at its top, the wheel in its dist-info; the metadata names it."""
    licence = EXAMPLE.with_name("LICENSE").read_text(encoding="utf-8")
    info = next(n for n in built.wheel_names() if n.endswith(".dist-info/licenses/LICENSE"))

    assert (built.unpacked / "LICENSE").read_text(encoding="utf-8") == licence
    assert built.wheel_text(info) == licence
    metadata = built.metadata()
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_the_sdist_is_the_whole_project(built: Built) -> None:
    """Every test with its helpers and conftest, the deployment files, the docs, the benchmark,
    the example configuration, README, CHANGELOG, LICENSE and the Makefile."""
    names = built.sdist_names()
    expected = {name for folder in SDIST_FOLDERS for name in _source_files(folder)}

    assert {"tests/conftest.py", "tests/e2e_helpers.py", "deploy/Dockerfile"} <= expected
    assert sorted(expected - names) == []
    assert sorted(set(SDIST_FILES) - names) == []
    assert "monitor/data/config.example.toml" in names


def test_the_sdist_tests_collect_against_the_installed_package(built: Built) -> None:
    """pytest --collect-only in the unpacked sdist finds every test module without an error
    (``-P``: ``monitor`` is the installed package, not the sdist's copy)."""
    result = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=built.unpacked,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower().splitlines()[-1], result.stdout
    modules = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    assert modules == {n for n in _source_files("tests") if Path(n).name.startswith("test_")}


def test_the_wheel_ships_the_example_configuration(built: Built) -> None:
    """monitor/data/config.example.toml in the wheel is the checkout's config.example.toml,
    byte for byte (it is one file: the package's copy is a link to it)."""
    shipped = built.wheel_text("monitor/data/config.example.toml")

    assert shipped == EXAMPLE.read_text(encoding="utf-8")


def test_the_installed_package_has_the_example_configuration() -> None:
    """The package data read through importlib.resources is the example in the checkout."""
    packaged = resources.files("monitor").joinpath("data", "config.example.toml")

    assert packaged.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")


def test_the_metadata_links_the_project_and_classifies_it(built: Built) -> None:
    """Project URLs (home, documentation, changelog, issues) and trove classifiers, and no
    licence classifier (the SPDX expression replaces it)."""
    metadata = built.metadata()
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    classifiers = metadata.get_all("Classifier") or []

    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Environment :: No Input/Output (Daemon)" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]
