"""What ships: the sdist and the wheel ``python -m build`` makes from a copy of the checkout,
and the container image ``deploy/Dockerfile`` describes.

One build per module (a few seconds): the sdist must be complete enough that its own tests
collect against the installed package, and both must carry the licence; the wheel must carry the
example configuration that ``balance-monitor init`` writes. There is no container engine here:
the Dockerfile is parsed and held to what its health check and layers need, its requirements
script is run, and the listen address it sets is exercised on the real CLI.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import dockerfile
import pytest
from e2e_helpers import Cli, MakeConfig

from monitor.config import config_from_dict, parse_listen
from monitor.errors import ConfigError

TOKEN = "packaging-t0ken"  # what the simulator accepts (conftest's `sim` and `cli`)
REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "deploy" / "Dockerfile"
REQUIREMENTS = REPO / "deploy" / "requirements.py"
LISTEN_ENV = "BALANCE_MONITOR_LISTEN"
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
SDIST_FILES = (
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "config.example.toml",
    "Makefile",
    ".dockerignore",
)


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
    tests = {n for n in _source_files("tests") if Path(n).name.startswith("test_")}
    # Every module collects (a property module is skipped, not broken, without hypothesis).
    assert modules <= tests
    assert {"tests/test_e2e.py", "tests/test_packaging.py", "tests/test_init.py"} <= modules


def test_the_wheel_ships_the_example_configuration(built: Built) -> None:
    """monitor/data/config.example.toml in the wheel is the checkout's config.example.toml,
    byte for byte (it is one file: the package's copy is a link to it)."""
    shipped = built.wheel_text("monitor/data/config.example.toml")

    assert shipped == EXAMPLE.read_text(encoding="utf-8")


def test_the_wheel_ships_the_dashboard(built: Built) -> None:
    """The pages' templates and static files are in the wheel: ``pip install .`` gives a
    working dashboard with no build step."""
    names = built.wheel_names()
    web = REPO / "monitor" / "web"
    for folder in ("templates", "static"):
        files = {f"monitor/web/{folder}/{p.name}" for p in (web / folder).iterdir()}
        assert files
        assert files <= names


def test_the_installed_package_has_the_example_configuration() -> None:
    """The package data read through importlib.resources is the example in the checkout."""
    packaged = resources.files("monitor").joinpath("data", "config.example.toml")

    assert packaged.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")


def test_the_metadata_classifies_the_project(built: Built) -> None:
    """Trove classifiers, and no licence classifier (the SPDX expression replaces it). Project
    URLs wait for the project's public home: none is invented."""
    metadata = built.metadata()
    classifiers = metadata.get_all("Classifier") or []

    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Environment :: No Input/Output (Daemon)" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]


# --------------------------------------------------------------------------- the container image


Steps = tuple[dockerfile.Command, ...]


@pytest.fixture(scope="module")
def steps() -> Steps:
    """The Dockerfile's instructions, as BuildKit's own parser reads them."""
    parsed: Steps = dockerfile.parse_file(str(DOCKERFILE))
    return parsed


def text(step: dockerfile.Command) -> str:
    return f"{step.cmd} {' '.join(step.value)}"


def index(steps: Steps, predicate: Callable[[str], bool]) -> int:
    """The position of the first instruction whose text satisfies ``predicate``."""
    return next(i for i, step in enumerate(steps) if predicate(text(step)))


def test_hadolint_finds_nothing() -> None:
    """hadolint (the linter, shipped in a wheel) accepts the Dockerfile without a warning."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("hadolint")), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_health_check_probes_the_default_listen_address(steps: Steps) -> None:
    """The image sets $BALANCE_MONITOR_LISTEN on every interface, and its HEALTHCHECK asks
    /healthz on that port from inside the container; EXPOSE names the same port."""
    env = dict(
        pair
        for step in steps
        if step.cmd == "ENV"
        for pair in zip(step.value[::2], step.value[1::2], strict=True)
    )
    host, port = parse_listen(env[LISTEN_ENV])
    (check,) = [step for step in steps if step.cmd == "HEALTHCHECK"]
    (url,) = re.findall(r"http://[^'\"]+", " ".join(check.value))

    assert check.value[0] == "CMD"
    assert host == "0.0.0.0"  # noqa: S104 - in a container: reachable through the published port
    assert urlsplit(url).hostname == "127.0.0.1"
    assert urlsplit(url).port == port
    assert urlsplit(url).path == "/healthz"
    assert any(flag.startswith("--timeout=") for flag in check.flags)
    assert [step.value for step in steps if step.cmd == "EXPOSE"] == [(str(port),)]


def test_dependencies_install_in_a_layer_of_their_own(steps: Steps) -> None:
    """pyproject.toml is copied and the dependencies installed before the source is copied, so
    a change to the code rebuilds only the last layers; the package goes in without deps."""
    copy_pyproject = index(steps, lambda s: s.startswith("COPY pyproject.toml"))
    install_deps = index(steps, lambda s: "pip install -r " in s)
    copy_source = index(steps, lambda s: s.startswith("COPY monitor"))
    install_package = index(steps, lambda s: "pip install --no-deps ." in s)

    assert copy_pyproject < install_deps < copy_source < install_package
    assert "monitor" not in text(steps[copy_pyproject])
    assert "pip check" in text(steps[install_package])


def test_extras_come_from_a_build_argument(steps: Steps) -> None:
    """``ARG EXTRAS=""`` (e.g. --build-arg EXTRAS=apprise) reaches the dependency install."""
    arg = index(steps, lambda s: s == 'ARG EXTRAS=""')
    install_deps = index(steps, lambda s: "pip install -r " in s)

    assert arg < install_deps
    assert '"$EXTRAS"' in text(steps[install_deps])


def requirements(*extras: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REQUIREMENTS), str(REPO / "pyproject.toml"), *extras],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    return data


@pytest.mark.parametrize("extras", ["", "apprise", " apprise , apprise "])
def test_the_requirements_are_the_projects(extras: str) -> None:
    """deploy/requirements.py prints the dependencies, and those of each named extra
    (comma-separated, blanks ignored), one per line, as pyproject.toml lists them."""
    result = requirements(extras)
    data = project()
    dependencies = list(data["dependencies"])  # type: ignore[call-overload]
    optional: dict[str, list[str]] = data["optional-dependencies"]  # type: ignore[assignment]
    expected = dependencies + (optional["apprise"] if "apprise" in extras else [])

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


def test_an_unknown_extra_fails_the_build() -> None:
    """A misspelt extra is an error naming it and the known ones, not a silent no-op."""
    result = requirements("aprise")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("requirements.py: unknown extra 'aprise' (known: apprise,")


# --------------------------------------------------------------------------- BALANCE_MONITOR_LISTEN

BASE = {
    "api": {"url": "https://api.lime.co/accounts", "token": "t"},
    "sinks": [{"name": "console", "type": "log"}],
}


@pytest.mark.parametrize(
    ("environment", "http", "expected"),
    [
        pytest.param(None, {}, None, id="neither"),
        pytest.param("0.0.0.0:9464", {}, "0.0.0.0:9464", id="environment-default"),
        pytest.param(
            "0.0.0.0:9464", {"listen": "127.0.0.1:9000"}, "127.0.0.1:9000", id="file-wins"
        ),
        pytest.param("", {}, None, id="empty-is-unset"),
    ],
)
def test_the_environment_supplies_listen_when_the_file_has_none(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    environment: str | None,
    http: dict[str, str],
    expected: str | None,
) -> None:
    """$BALANCE_MONITOR_LISTEN is [http] listen when the file sets none; never over it."""
    if environment is None:
        monkeypatch.delenv(LISTEN_ENV, raising=False)
    else:
        monkeypatch.setenv(LISTEN_ENV, environment)

    config = config_from_dict(BASE | {"http": http}, base_dir=tmp_path)

    assert config.http.listen == expected


def test_a_bad_listen_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A value that is not HOST:PORT is a configuration error naming the variable."""
    monkeypatch.setenv(LISTEN_ENV, "everywhere")

    with pytest.raises(ConfigError) as caught:
        config_from_dict(BASE, base_dir=tmp_path)

    assert caught.value.problems == [f"{LISTEN_ENV}: must be HOST:PORT, e.g. '0.0.0.0:9464'"]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.e2e
async def test_run_serves_health_on_the_environment_address_across_a_reload(
    cli: Cli, make_config: MakeConfig, session: aiohttp.ClientSession
) -> None:
    """``run`` with a config without [http] and $BALANCE_MONITOR_LISTEN set answers /healthz
    there, as the image's HEALTHCHECK expects, and still does after a SIGHUP reload."""
    port = unused_port()
    cli.env[LISTEN_ENV] = f"127.0.0.1:{port}"
    daemon = await cli.start("run", "--config", make_config())
    url = f"http://127.0.0.1:{port}/healthz"

    async def healthy() -> bool:
        try:
            async with session.get(url) as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    started = await daemon.wait_event("started")
    assert started["http"] == f"http://127.0.0.1:{port}"
    assert await healthy()

    daemon.send(signal.SIGHUP)
    await daemon.wait_event("reloaded")
    assert await healthy()
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0
