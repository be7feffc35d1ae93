"""``[state]``: a SQLite ``path`` or a PostgreSQL ``url`` with its password, replica and lease."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pytest
from config_helpers import BASE_DIR, config, problems

from monitor.config import config_from_dict
from monitor.config.service import POSTGRES_EXTRA, public_url

URL = "postgresql://monitor@db.internal:5432/balance_monitor"


def state(**keys: Any) -> dict[str, Any]:
    return config(state=keys)


def test_a_url_makes_a_postgresql_state_with_its_defaults() -> None:
    """``url`` alone: lease 15s, replica hostname:pid, the password from nowhere (libpq)."""
    loaded = config_from_dict(state(url=URL), base_dir=BASE_DIR).state
    assert loaded.postgres
    assert loaded.lease == timedelta(seconds=15)
    assert loaded.replica_name.endswith(f":{__import__('os').getpid()}")
    assert loaded.password_ref() is None
    assert loaded.where() == URL


def test_replica_password_env_and_lease_are_read() -> None:
    loaded = config_from_dict(
        state(url=URL, replica="node-a", password_env="DB_PW", lease="3s"), base_dir=BASE_DIR
    ).state
    assert loaded.replica_name == "node-a"
    assert loaded.lease == timedelta(seconds=3)
    ref = loaded.password_ref()
    assert ref is not None
    assert ref.key == "state.password_env"


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (
            {"url": URL, "path": "x.db"},
            "state: give either path (SQLite) or url (PostgreSQL), not both",
        ),
        ({"url": "mysql://db/x"}, "state.url: must be a postgresql:// URL"),
        ({"password_env": "PW"}, "state: password_env: only with url (PostgreSQL)"),
        ({"replica": "a", "lease": "5s"}, "state: replica, lease: only with url (PostgreSQL)"),
        (
            {"url": URL, "password": "x", "password_env": "PW"},
            "state: give only one of password, password_env, password_file"
            " (got password, password_env)",
        ),
        ({"url": URL, "replica": " "}, "state.replica: must not be empty"),
        ({"url": URL, "lease": "500ms"}, "state.lease: must be at least 1s"),
    ],
)
def test_wrong_state_tables_name_their_cause(keys: dict[str, Any], problem: str) -> None:
    [line] = problems(state(**keys))
    assert line.startswith(problem), line


def test_a_url_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg, a postgresql:// URL is a config error naming the extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails as if absent
    [line] = problems(state(url=URL))
    assert line == f"state.url: a PostgreSQL state needs its driver: {POSTGRES_EXTRA}"
    assert "pip install 'balance-monitor[postgres]'" in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, URL),
        ("postgresql://u:hunter2@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require"),
        ("postgresql://db/x", "postgresql://db/x"),
        (
            "postgresql://u@db/x?password=hunter2&sslmode=require",
            "postgresql://u@db/x?password=***&sslmode=require",
        ),
        (
            "postgresql://u:a@db/x?sslpassword=k3y&application_name=bm",
            "postgresql://u:***@db/x?sslpassword=***&application_name=bm",
        ),
    ],
)
def test_the_url_shown_hides_a_password_it_holds(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_an_inline_password_is_not_in_the_config_s_repr() -> None:
    loaded = config_from_dict(state(url=URL, password="hunter2-sekrit"), base_dir=BASE_DIR)
    assert "hunter2-sekrit" not in repr(loaded)
    assert "hunter2-sekrit" not in str(loaded.state.model_dump())
