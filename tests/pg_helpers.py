"""A throwaway PostgreSQL 15 for the tests: one cluster per test run, one schema per test.

The first pytest process (or xdist worker) that needs it runs ``initdb`` and ``pg_ctl start``
in a directory of its own under the system's temporary folder, named after the run (xdist's
``PYTEST_XDIST_TESTRUNUID``, or the process id without xdist), on 127.0.0.1 and a free port,
with password (SCRAM) authentication over TCP. The other workers find it through that
directory, under a file lock; each counts itself in and out, and the last one out stops the
server and removes the directory. As root the server runs as the ``postgres`` user
(``runuser``), as it refuses to run as root.

Each test that needs a database gets a schema of its own (``search_path`` in the URL's
``options``): creating one costs about a millisecond, a database a tenth of a second.

Without PostgreSQL 15 the tests that need it are skipped with the reason, unless
:data:`REQUIRE_ENV` is set (``.ci/run`` sets it, after installing ``postgresql-15``): then
they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

REQUIRE_ENV = "BALANCE_MONITOR_REQUIRE_POSTGRES"
BIN = Path(os.environ.get("BALANCE_MONITOR_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running PostgreSQL: where it listens and the superuser's password."""

    port: int
    password: str

    def url(self, schema: str | None = None, *, with_password: bool = False) -> str:
        auth = f"{USER}:{quote(self.password)}" if with_password else USER
        url = f"postgresql://{auth}@127.0.0.1:{self.port}/postgres"
        if schema is not None:
            url += f"?options=-csearch_path%3D{schema}"
        return url

    def new_schema(self) -> str:
        """A new empty schema; its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.sql(f"CREATE SCHEMA {name}")
        return name

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url(), password=self.password, autocommit=True) as conn:
            cur = conn.execute(statement.encode())
            return list(cur.fetchall()) if cur.description is not None else []


class UnavailableError(Exception):
    """No PostgreSQL 15 server could be started here."""


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_dir() -> Path:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"p{os.getpid()}"
    return Path(tempfile.gettempdir()) / f"balance-monitor-pg-{run}"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(directory: Path) -> Cluster:
    initdb = BIN / "initdb"
    if not initdb.exists():
        raise UnavailableError(f"{initdb} not found (apt-get install postgresql-15)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise UnavailableError("running as root without runuser")
    password = secrets.token_urlsafe(16)
    data = directory / "data"
    pwfile = directory / "pw"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(directory, USER)
        shutil.chown(pwfile, USER)
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(initdb),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=64MB"
        )
        pg_ctl = [str(BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o", options]
        subprocess.run(
            _as_postgres([*pg_ctl, "-l", str(directory / "log"), "start"]),
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        text = f"cannot start PostgreSQL: {exc} {detail.decode(errors='replace')}"
        raise UnavailableError(text) from exc
    (directory / "port").write_text(str(port))
    return Cluster(port, password)


def _stop(directory: Path) -> None:
    subprocess.run(
        _as_postgres(
            [str(BIN / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "stop"]
        ),
        check=False,
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(directory, ignore_errors=True)


def acquire() -> Cluster:
    """The run's cluster (started by the first caller of the run); counts this process in."""
    directory = _run_dir()
    directory.mkdir(mode=0o755, exist_ok=True)
    with _locked(directory):
        users = directory / "users"
        count = int(users.read_text()) if users.exists() else 0
        if (directory / "port").exists():
            cluster = Cluster(int((directory / "port").read_text()), (directory / "pw").read_text())
        else:
            failed = directory / "failed"
            if failed.exists():
                raise UnavailableError(failed.read_text())
            try:
                cluster = _start(directory)
            except UnavailableError as exc:
                failed.write_text(str(exc))
                raise
        users.write_text(str(count + 1))
    _wait_ready(cluster)
    return cluster


def release() -> None:
    """Count this process out; the last one out stops the cluster."""
    directory = _run_dir()
    if not directory.exists():
        return
    with _locked(directory):
        users = directory / "users"
        count = int(users.read_text()) - 1 if users.exists() else 0
        users.write_text(str(count))
        if count > 0 or not (directory / "port").exists():
            return
        _stop(directory)


def _wait_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", cluster.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"PostgreSQL on port {cluster.port} does not answer"
                ) from None
            time.sleep(0.1)


_CLUSTER: Cluster | None = None
_FAILED: str | None = None


def cluster() -> Cluster:
    """This process's handle on the run's cluster (started or joined on first use; left by
    ``pytest_sessionfinish`` in conftest). Skips the test when none can be started, or fails it
    when :data:`REQUIRE_ENV` or ``CI=true`` says there must be one."""
    global _CLUSTER, _FAILED  # noqa: PLW0603 - one cluster per process
    import pytest

    if _CLUSTER is None and _FAILED is None:
        try:
            _CLUSTER = acquire()
        except UnavailableError as exc:
            _FAILED = str(exc)
    if _CLUSTER is not None:
        return _CLUSTER
    message = f"PostgreSQL 15 unavailable, tests of the PostgreSQL backend NOT RUN: {_FAILED}"
    if os.environ.get(REQUIRE_ENV) or os.environ.get("CI") == "true":
        pytest.fail(f"{message} ({REQUIRE_ENV} or CI is set, so it must be: see .ci/run)")
    pytest.skip(message)
    raise AssertionError  # pytest.skip raises


def leave() -> None:
    """Count this process out of the cluster, if it joined it."""
    global _CLUSTER  # noqa: PLW0603
    if _CLUSTER is not None:
        _CLUSTER = None
        release()
