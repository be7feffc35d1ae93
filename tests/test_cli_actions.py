"""``silence``, ``ack`` and ``notifications`` through :func:`monitor.cli.main` in this process,
on a real SQLite state database (the same commands next to a running daemon are in
``test_e2e_actions.py``): what they print, their exit codes, their messages."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from rules_helpers import account
from sinks_helpers import make_notification
from store_helpers import commit_poll

from monitor.cli import main
from monitor.config import load_config
from monitor.cycle import PollRecord
from monitor.models import ActiveAlert
from monitor.rules import SourceHealth
from monitor.store import SqliteStore

NOW = datetime.now(tz=UTC)
NUMBER = "12345678@vision"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        '[api]\nurl = "http://127.0.0.1:9/accounts"\ntoken = "t"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
        '[[sinks]]\nname = "ops"\ntype = "log"\n'
        '[[sinks]]\nname = "pd"\ntype = "pagerduty"\n'
        'routing_key = "R0UTINGKEY0000000000000000000000"\n'
        '[[rules]]\nname = "low-cash"\ntype = "threshold"\nfield = "cash"\nop = "<"\nvalue = 1\n',
        encoding="utf-8",
    )
    return path


def firing(path: Path) -> None:
    """The state of a poll that fired low-cash on NUMBER (``n1`` to both sinks), delivered to
    ``ops`` after a failed attempt."""

    async def write() -> None:
        store = await SqliteStore.open(path)
        try:
            started = NOW - timedelta(minutes=5)
            alert = ActiveAlert("low-cash", NUMBER, "fp-1", started)
            note = replace(make_notification(fingerprint="fp-1"), id="n1")
            note = replace(note, alert=replace(note.alert, account_number=NUMBER))
            await commit_poll(
                store,
                "default",
                poll=PollRecord(started, ok=True, account_count=1),
                health=SourceHealth(),
                upserts=[account(NUMBER, cash=Decimal("0.50"))],
                active={("low-cash", NUMBER): alert},
                outbox=[(note, ["ops", "pd"])],
            )
            row = await store.next_pending("ops")
            assert row is not None
            at = NOW.timestamp()
            await store.mark(row.seq, "pending", now=at, error="HTTP 503", next_attempt_at=at)
            await store.mark(row.seq, "delivered", now=at + 1)
        finally:
            await store.close()

    asyncio.run(write())


def test_silence_add_list_and_expire(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--config", str(config)]
    assert main(["silence", "add", "--rule", "low-cash", "--label", "team=risk", "--for", "1h",
                 "--comment", "wire", "--author", "al", *args]) == 0  # fmt: skip
    ident = capsys.readouterr().out.strip()
    assert main(["silence", "list", *args]) == 0
    listed = capsys.readouterr().out
    assert ident in listed
    assert "rule=low-cash, label team=risk by al: wire" in listed
    assert main(["silence", "expire", ident, *args]) == 0
    assert f"silence {ident} ended at" in capsys.readouterr().out
    assert main(["silence", "list", *args]) == 0
    assert capsys.readouterr().out.strip() == "no silences"
    assert main(["silence", "list", "--all", "--json", *args]) == 0
    [silence] = json.loads(capsys.readouterr().out)
    assert (silence["id"], silence["labels"], silence["active"]) == (ident, {"team": "risk"}, False)


def test_silence_add_reads_an_account_number_as_the_polled_account(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--account 12345678`` is ``12345678@vision`` when that is the one polled account with
    that number (as the bot's /silence and /balance read it): a silence of the bare number
    would hold nothing. One that matches no polled account is made, with a warning."""
    firing(load_config(config).state.path)
    args = ["--config", str(config)]
    assert main(["silence", "add", "--account", "12345678", "--for", "1h", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert main(["silence", "add", "--account", "87654321", "--for", "1h", *args]) == 0
    warned = capsys.readouterr()
    assert "no polled account matches '87654321'" in warned.err
    assert main(["silence", "list", "--json", *args]) == 0
    accounts = [s["account"] for s in json.loads(capsys.readouterr().out)]
    assert sorted(accounts) == ["12345678@vision", "87654321"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["silence", "add", "--for", "1h"], "a silence needs at least one matcher"),
        (["silence", "add", "--rule", "nope", "--for", "1h"], "unknown rule 'nope'"),
        (["silence", "add", "--source", "fund", "--for", "1h"], "unknown source 'fund'"),
        (["silence", "add", "--rule", "low-cash", "--until", "soon"], "--until: 'soon' is not"),
        (["silence", "expire", "abc"], "no silence with id 'abc'"),
        (["ack", "abc"], "no notification or alert with id or fingerprint 'abc'"),
        (["ack", "--rule", "low-cash"], "give a notification id or fingerprint, or both"),
        (["ack", "n1", "--rule", "low-cash"], "give either an id or --rule with --account"),
        (["ack", "--rule", "low-cash", "--account", "X"], "no firing alert of rule 'low-cash'"),
    ],
)
def test_what_cannot_be_done_is_one_message_and_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    firing(config.parent / "state.db")
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err


def test_a_bad_label_or_duration_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["silence", "add", "--rule", "low-cash", "--label", "team", "--for", "1h"],
        ["silence", "add", "--rule", "low-cash", "--for", "a while"],
        ["silence", "add", "--rule", "low-cash"],  # neither --for nor --until
    ):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--config", str(config)])
        assert info.value.code == 2
    assert "a label is KEY=VALUE" in capsys.readouterr().err


def test_ack_by_notification_id_queues_pagerduty_s_acknowledge(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    firing(config.parent / "state.db")
    args = ["--config", str(config)]
    assert main(["ack", "n1", "--author", "bob", "--comment", "on it", *args]) == 0
    assert (
        capsys.readouterr().out.strip() == f"acknowledged low-cash on {NUMBER} (fingerprint fp-1)"
    )
    assert main(["ack", "fp-1", *args]) == 0
    assert "was already acknowledged" in capsys.readouterr().out

    assert main(["notifications", "--json", "--sink", "pd", *args]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["status"], r["state"]) for r in records] == [("firing", "pending")] * 2
    assert {r["acknowledged_by"] for r in records} == {"bob"}
    assert main(["status", "--json", *args]) == 0
    [alert] = json.loads(capsys.readouterr().out)["alerts_firing"]
    assert (alert["acknowledged_by"], alert["ack_comment"]) == ("bob", "on it")


def test_notifications_lists_attempts_and_filters(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(config)]
    assert main(["notifications", *args]) == 0  # no state database yet
    assert capsys.readouterr().out.strip() == "no notifications"
    firing(config.parent / "state.db")
    assert main(["notifications", "--sink", "ops", *args]) == 0
    text = capsys.readouterr().out
    assert "delivered ops" in text
    assert "2 attempts" in text
    assert "retry: HTTP 503" in text
    assert main(["notifications", "--account", "*@cor", *args]) == 0
    assert capsys.readouterr().out.strip() == "no notifications"
    assert main(["notifications", "--status", "pending", "--json", *args]) == 0
    assert [r["sink"] for r in json.loads(capsys.readouterr().out)] == ["pd"]


def test_notifications_names_a_digest_in_place_of_rule_and_account(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A digest is no alert: ``digest close``, not ``digest:close`` and an empty account."""
    from sinks_helpers import make_digest

    async def write() -> None:
        store = await SqliteStore.open(config.parent / "state.db")
        try:
            digest = make_digest()
            await store.queue_digest(
                digest.payload(), ["ops"], summary="Digest close: 2026-12-01", now=NOW.timestamp()
            )
        finally:
            await store.close()

    asyncio.run(write())
    assert main(["notifications", "--config", str(config)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "digest   digest close  0 attempts  id d-1" in first
    assert "  , " not in first
