"""``balance-monitor history ACCOUNT``: the dashboard's series exported, read-only."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from web_helpers import NOW, fill

from monitor import cli
from monitor.encoding import dumps, loads
from monitor.store import open_store


def _config(tmp_path: Path) -> Path:
    """A config whose state database holds :func:`web_helpers.fill`'s history."""
    db = tmp_path / "state.db"

    async def filled() -> None:
        store = await open_store(db)
        try:
            await fill(store)
        finally:
            await store.close()

    asyncio.run(filled())
    path = tmp_path / "config.toml"
    path.write_text(
        '[api]\nurl = "https://api.lime.co/accounts"\ntoken = "t"\n'
        f"[state]\npath = {dumps(str(db))}\n"
        '[[sinks]]\nname = "log"\ntype = "log"\n'
    )
    return path


def _since() -> str:
    return (NOW - timedelta(days=7)).isoformat()


def test_csv_lists_every_change_of_the_fields_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    code = cli.main(
        [
            "history",
            "A-1",
            "--config",
            str(path),
            "--field",
            "cash",
            "--field",
            "restriction",
            "--since",
            _since(),
            "--until",
            NOW.isoformat(),
            "--format",
            "csv",
        ]
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["time", "field", "value"]
    assert ["2024-05-08T09:00:00Z", "cash", "12.34"] in rows
    assert ["2024-05-08T11:00:00Z", "restriction", "restricted"] in rows
    assert {r[1] for r in rows[1:]} == {"cash", "restriction"}


def test_json_is_the_api_s_answer_and_table_is_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    args = [
        "history",
        "A-1",
        "--config",
        str(path),
        "--field",
        "cash",
        "--since",
        _since(),
        "--until",
        NOW.isoformat(),
    ]
    assert cli.main([*args, "--format", "json"]) == 0
    data = loads(capsys.readouterr().out)
    assert data["account_number"] == "A-1"
    assert [str(p[1]) for p in data["series"][0]["points"]][2] == "12.34"
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "A-1 (default)" in table
    assert "2024-05-08T09:00:00Z  cash   12.34" in table


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (["NOPE"], "no account 'NOPE'", 1),
        (["A-1", "--since", "soon"], "neither a duration", 2),
        (["A-1", "--field", "equity"], "invalid choice: 'equity'", 2),
        (["A-1", "--since", "1h", "--until", "2h"], "--since must be before --until", 2),
    ],
)
def test_a_bad_request_is_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str, code: int
) -> None:
    path = _config(tmp_path)
    try:
        got = cli.main(["history", *extra, "--config", str(path)])
    except SystemExit as exc:  # argparse
        got = int(exc.code or 0)
    assert got == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
