"""``balance-monitor demo``: its rules are the example configuration's, its story is the one the
README tells, and each notification is one readable line.

The story is driven through the pure poll step, one simulator answer per poll, so it takes no
time; ``tests/test_e2e.py::test_demo`` runs the real command.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sinks_helpers import make_digest, make_notification

from monitor import demo, logs
from monitor.config import Config, config_from_dict
from monitor.cycle import PollState, step
from monitor.models import Severity, Status
from monitor.parse import parse_body
from monitor.simulator import CYCLE, Simulator
from monitor.sinks.log import LogSink

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
T0 = datetime(2026, 11, 23, 21, 9, 0, tzinfo=UTC)
EVERY = timedelta(seconds=2)
URL = "http://127.0.0.1:9/accounts"

#: The README's table: (seconds after the first poll, rule, status, summary).
STORY = [
    (8, "low-cash-to-withdraw", "firing", "12345678@vision: only 512.25 to withdraw"),
    (8, "daytrades-high", "firing", "12345678@vision: daytrades_count rose to 3 (>= 3)"),
    (
        12,
        "restriction-changed",
        "firing",
        "12345678@vision: restriction changed from none to restricted "
        "(reason: Pattern day trader: equity below $25,000)",
    ),
    (
        12,
        "pdt-risk",
        "firing",
        "12345678@vision: 4 day trades with 24,500.00 equity, under the 25,000 minimum "
        "of a pattern day trader",
    ),
    (16, "low-cash-to-withdraw", "resolved", "12345678@vision: back to 2,524.54 to withdraw"),
    (
        20,
        "restriction-changed",
        "firing",
        "12345678@vision: restriction changed from restricted to none",
    ),
    (
        20,
        "pdt-risk",
        "resolved",
        "12345678@vision: no longer at pattern day trader risk (4 day trades, 40,410.28 equity)",
    ),
    (
        24,
        "daytrades-high",
        "resolved",
        "12345678@vision: daytrades_count back to 0 (no longer >= 3)",
    ),
]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return demo.demo_config(URL, tmp_path, "2s")


def play(config: Config, polls: int = CYCLE + 1) -> list[tuple[int, str, str, str]]:
    """``(seconds, rule, status, summary)`` of every notification of ``polls`` demo polls."""
    sim, state = Simulator(), PollState()
    told = []
    for n in range(polls):
        now = T0 + n * EVERY
        seen = parse_body(sim.serve().encode(), state.accounts)
        done = step(
            state, seen, source="default", config=config, rules=config.rules, down_after=3, now=now
        )
        assert done.problems == ()
        state = done.state
        for delivery in done.write.queued:
            alert = delivery.notification.alert
            assert delivery.sinks == ("console",)
            told.append((n * 2, alert.rule, alert.status.value, alert.summary))
    return told


def test_the_demo_tells_the_readme_story(config: Config) -> None:
    """One cycle of the simulator is the README's table, line for line, in words."""
    assert play(config) == STORY


def wording(summary: str) -> str:
    """A summary without its numbers: what it says, whatever the amounts."""
    return re.sub(r"[0-9][0-9,.]*", "N", summary)


def test_every_alert_reads_differently_once_resolved(config: Config) -> None:
    """No resolved notification says what its firing one said (numbers aside), and no summary
    is a raw CEL expression (two cycles: every alert of the story fires and resolves)."""
    told = play(config, 2 * CYCLE + 1)
    firing = {(rule, wording(text)) for _, rule, status, text in told if status == "firing"}
    resolved = {(rule, wording(text)) for _, rule, status, text in told if status == "resolved"}

    assert {rule for rule, _ in resolved} == {"low-cash-to-withdraw", "pdt-risk", "daytrades-high"}
    assert firing & resolved == set()
    assert [text for _, _, _, text in told if "&&" in text or "!=" in text] == []


def test_the_demo_rules_are_the_examples(config: Config, tmp_path: Path) -> None:
    """Each demo rule is the example configuration's rule of that name, without what would
    hide the story: account, source and sink filters, `for` and `repeat`."""
    examples = {rule["name"]: rule for rule in tomllib.loads(EXAMPLE.read_text("utf-8"))["rules"]}
    hidden = {"accounts", "sources", "sinks", "for", "repeat"}
    rules = [{k: v for k, v in examples[name].items() if k not in hidden} for name in demo.RULES]
    expected = config_from_dict(
        {"api": {"url": URL, "token": "t"}, "sinks": [{"name": "console", "type": "log"}]}
        | {"rules": rules},
        base_dir=tmp_path,
    )

    assert [r.name for r in config.rules] == list(demo.RULES)
    assert config.rules == expected.rules


def test_the_banner_counts_and_names_the_configured_rules(config: Config) -> None:
    """The banner says how many rules run and names each one, from the config itself."""
    text = demo.banner(config, URL)

    assert f"{len(config.rules)} rules" in text
    assert "5 rules" in text
    for rule in config.rules:
        assert re.search(rf"^  {re.escape(rule.name)} ", text, re.MULTILINE), text
    assert "cash_to_withdraw < 1000" in text
    assert "polled every 2s" in text
    assert "24s" in text  # one cycle of the story


# --------------------------------------------------------------------------- the console


@contextmanager
def restored_logging() -> Iterator[None]:
    """The process's logging set-up (structlog's and the root logger's) as it was, afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:], root.level = handlers, level


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """The demo's logging into a buffer."""
    stream = io.StringIO()
    with restored_logging():
        demo.configure_logging(stream, width=len("low-cash"))
        yield stream


LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<rest>.*)$")


async def test_each_notification_is_one_line(console: io.StringIO) -> None:
    """The alert's own log line, the log sink's event and its delivery line become one line:
    time, status, severity, rule and summary."""
    notification = make_notification(severity=Severity.WARNING)
    alert = notification.alert
    log = structlog.get_logger("monitor.pipeline")
    log.info("alert_firing", rule=alert.rule, account=alert.account_number, summary=alert.summary)
    await LogSink("console").send(notification)
    structlog.get_logger("monitor.delivery").info("notification_delivered", id=notification.id)
    resolved = make_notification(status=Status.RESOLVED, summary="cash back to 1,500.00")
    await LogSink("console").send(resolved)

    lines = console.getvalue().splitlines()

    assert [LINE.match(line).group("rest") for line in lines] == [  # type: ignore[union-attr]
        "FIRING   warning  low-cash  cash_to_withdraw fell to 512.25 (< 1000)",
        "RESOLVED critical low-cash  cash back to 1,500.00",
    ]


def test_a_summary_with_a_line_break_stays_one_line() -> None:
    """A line break or control character in a summary (a template's, or a value from the API)
    is written as an escape: it neither starts a line nor reaches the terminal."""
    line = demo.StoryRenderer(colors=False, width=4).notification(
        {
            "timestamp": "12:00:00",
            "status": "firing",
            "severity": "info",
            "rule": "cash",
            "summary": "low\nFIRING forged\x1b[2J",
        }
    )

    assert line == "12:00:00 FIRING   info     cash  low\\nFIRING forged\\x1b[2J"


def test_other_events_stay_console_lines(console: io.StringIO) -> None:
    """Everything else is structlog's console line, with the time of day only."""
    structlog.get_logger("monitor.pipeline").info("poll_ok", accounts=2, source="default")

    (line,) = console.getvalue().splitlines()

    assert LINE.match(line), line
    assert "poll_ok" in line
    assert "accounts=2" in line


async def test_run_keeps_the_json_contract() -> None:
    """The log sink under `run`'s JSON logging still writes every field of the notification."""
    stream = io.StringIO()
    with restored_logging():
        logs.configure("info", "json", stream)
        await LogSink("console").send(make_notification())

    event: dict[str, Any] = json.loads(stream.getvalue())
    assert event["event"] == "notification"
    assert event["summary"] == "cash_to_withdraw fell to 512.25 (< 1000)"
    assert {"id", "fingerprint", "status", "rule", "severity", "account_number"} <= set(event)


def test_the_streaming_demo_says_it_streams_and_polls_to_reconcile(tmp_path: Path) -> None:
    """``make demo`` streams: the account changes every --interval, pushed and seen at once;
    polls only reconcile."""
    config = demo.demo_config(URL, tmp_path, "2s", stream=True)
    assert config.all_sources()[0].config.stream
    assert config.schedule.interval == timedelta(minutes=1)
    text = demo.banner(config, URL, timedelta(seconds=2))
    assert "streaming: the account changes every 2s" in text
    assert "polled every 1m to reconcile" in text
    assert "24s" in text


async def test_the_demo_digest_is_its_text_under_the_time(
    console: io.StringIO, tmp_path: Path
) -> None:
    """The demo's digest (a minute after it starts) shows as its text, one indented line each."""
    at = datetime(2026, 12, 1, 21, 15, tzinfo=UTC)
    config = demo.demo_config(URL, tmp_path, "2s", digest_at=at)
    [digest] = config.digests
    assert (digest.at, digest.sinks) == ("21:15:00", ("console",))
    assert "A digest of the accounts and alerts at 21:15:00 UTC." in demo.banner(config, URL)
    await LogSink("console").send_digest(make_digest())
    lines = console.getvalue().splitlines()
    first = LINE.match(lines[0])
    assert first is not None
    assert first.group("rest") == "DIGEST   Digest close: 2026-12-01"
    assert lines[1] == "  Since 2026-11-30 16:15 EST"
