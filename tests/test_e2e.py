"""End to end: the real CLI (``python -m monitor``) as a subprocess, against the simulator and a
webhook receiver served by the test on 127.0.0.1.

Scenarios are driven through the simulator's ``/_sim/`` control API (exact records, queued
failures, raw bodies), never through the timed demo scenario, except by ``demo`` itself. Waits are
bounded polls on what the receiver got, what the simulator saw and what the CLI logged.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    COR,
    LOW_CASH_RULE,
    PAYLOAD_KEYS,
    RESTRICTION_RULE,
    TOKEN_ENV,
    VISION,
    Cli,
    Hook,
    MakeConfig,
    Result,
    SimControl,
    account,
    config_toml,
    eventually,
    healthy,
    low_cash,
)

from monitor.encoding import dumps
from monitor.simulator import PDT_REASON

pytestmark = pytest.mark.e2e

TOKEN = "e2e-sekrit-token-123"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DEMO_DURATION = 12


# --------------------------------------------------------------------------- fixtures


def assert_clean(result: Result | str) -> None:
    """No Python traceback reached the user, neither as text nor in a JSON log line."""
    text = result if isinstance(result, str) else result.output
    assert "Traceback" not in text, text
    assert '"exception":' not in text, text


# --------------------------------------------------------------------------- alerts


async def test_restriction_change_is_one_documented_notification(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """The baseline poll alerts on nothing; a restriction flip is one webhook POST whose body
    has exactly the documented keys, the reason in its summary, exact money in its snapshot."""
    daemon = await cli.start("run", "--config", make_config(rules=RESTRICTION_RULE))
    await daemon.wait_event("baseline_recorded")
    await sim.wait_requests(await sim.requests() + 2)  # two more polls of the same accounts
    assert hook.posts == []
    assert daemon.events("alert_firing") == []

    restricted = account(
        VISION,
        restriction="restricted",
        restriction_reason=PDT_REASON,
        cash=Decimal("512.25"),
        day_trading_buying_power=Decimal("0.00"),
    )
    before = datetime.now(tz=UTC) - timedelta(seconds=1)  # a poll may start just before
    await sim.set_accounts([restricted, healthy()[1]])
    await eventually(lambda: hook.posts, what="the restriction notification")
    after = datetime.now(tz=UTC)
    await sim.wait_requests(await sim.requests() + 2)  # still restricted: nothing new

    assert len(hook.posts) == 1
    post = hook.posts[0]
    body = post.payload
    assert set(body) == PAYLOAD_KEYS
    assert {k: body[k] for k in ("status", "rule", "type", "severity")} == {
        "status": "firing",
        "rule": "restriction-changed",
        "type": "restriction_change",
        "severity": "critical",
    }
    assert (body["account_number"], body["field"]) == (VISION, "restriction")
    assert (body["previous"], body["current"]) == ("none", "restricted")
    assert PDT_REASON in body["summary"]
    assert VISION in body["summary"]
    assert body["snapshot"] == restricted  # every field, money compared as Decimal
    assert isinstance(body["snapshot"]["cash"], Decimal)  # a JSON number, not a string
    assert str(body["snapshot"]["cash_to_withdraw"]) == "2524.50"  # the API's own digits
    assert isinstance(body["id"], str)
    assert body["id"]
    assert isinstance(body["fingerprint"], str)
    assert body["fingerprint"]
    assert post.id_header == body["id"]
    assert RFC3339_UTC.match(body["observed_at"]), body["observed_at"]
    assert before <= datetime.fromisoformat(body["observed_at"]) <= after
    assert daemon.running


async def test_threshold_fires_and_resolves(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A threshold fires when it starts to hold (also at the very first poll) and resolves when
    it stops; firing and resolved share the fingerprint, never the id."""
    cor_low = account(COR, cash_to_withdraw=Decimal("300.00"))
    await sim.set_accounts([account(VISION), cor_low])
    daemon = await cli.start("run", "--config", make_config(rules=LOW_CASH_RULE))
    await eventually(lambda: hook.matching(account_number=COR), what="COR firing at baseline")

    await sim.set_accounts([account(VISION, cash_to_withdraw=Decimal("512.25")), cor_low])
    await eventually(lambda: hook.matching(account_number=VISION), what="VISION firing")
    await sim.set_accounts(healthy())
    await eventually(lambda: len(hook.matching(status="resolved")) == 2, what="both resolved")
    await sim.wait_requests(await sim.requests() + 2)

    bodies = hook.delivered()
    assert [(b["account_number"], b["status"]) for b in bodies] == [
        (COR, "firing"),
        (VISION, "firing"),
        (COR, "resolved"),
        (VISION, "resolved"),
    ]
    cor_fire, vision_fire, cor_resolve, vision_resolve = bodies
    assert cor_fire["summary"] == "11111111@cor: cash_to_withdraw is 300.00 (< 1000)"
    assert vision_fire["summary"] == "12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)"
    assert (vision_fire["previous"], vision_fire["current"]) == (
        Decimal("2524.50"),
        Decimal("512.25"),
    )
    assert vision_resolve["summary"] == (
        "12345678@vision: cash_to_withdraw back to 2524.50 (no longer < 1000)"
    )
    for fire, resolve in ((cor_fire, cor_resolve), (vision_fire, vision_resolve)):
        assert fire["rule"] == resolve["rule"] == "low-cash-to-withdraw"
        assert fire["fingerprint"] == resolve["fingerprint"]
        assert fire["id"] != resolve["id"]
    assert cor_fire["fingerprint"] != vision_fire["fingerprint"]
    assert all(p.ok for p in hook.posts)
    assert daemon.running


async def test_no_duplicates_while_a_condition_holds(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A threshold that holds and a restriction that stays changed for about six polls are one
    notification each."""
    await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", make_config(rules=LOW_CASH_RULE + RESTRICTION_RULE))
    await daemon.wait_event("baseline_recorded")
    await sim.set_accounts(
        [
            account(VISION, cash_to_withdraw=Decimal("512.25"), restriction="restricted"),
            healthy()[1],
        ]
    )
    await daemon.wait_event("alert_firing", rule="restriction-changed")
    await sim.wait_requests(await sim.requests() + 6)

    assert [(b["rule"], b["status"]) for b in hook.delivered()] == [
        ("low-cash-to-withdraw", "firing"),
        ("restriction-changed", "firing"),
    ]
    assert len(hook.posts) == 2
    assert len(daemon.events("alert_firing")) == 2


async def test_restart_neither_refires_nor_misses_a_change(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """After SIGTERM and a restart on the same state a firing alert is not sent again, and a
    change that happened while the daemon was down is alerted against the last snapshot."""
    config = make_config(rules=LOW_CASH_RULE + RESTRICTION_RULE)
    await sim.set_accounts(low_cash())
    first = await cli.start("run", "--config", config)
    await eventually(hook.delivered, what="the low-cash notification")
    await first.wait_event("notification_delivered")
    first.send(signal.SIGTERM)
    assert await first.wait() == 0

    restricted = account(
        VISION,
        cash_to_withdraw=Decimal("512.25"),
        restriction="restricted",
        restriction_reason=PDT_REASON,
    )
    await sim.set_accounts([restricted, healthy()[1]])
    second = await cli.start("run", "--config", config)
    await eventually(
        lambda: hook.matching(rule="restriction-changed"), what="the restriction notification"
    )
    await sim.wait_requests(await sim.requests() + 2)

    assert [(b["rule"], b["status"]) for b in hook.delivered()] == [
        ("low-cash-to-withdraw", "firing"),
        ("restriction-changed", "firing"),
    ]
    change = hook.matching(rule="restriction-changed")[0]
    assert (change["previous"], change["current"]) == ("none", "restricted")
    assert second.events("baseline_recorded") == []
    assert second.running


async def test_sigkill_with_sink_down_delivers_same_id_after_restart(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A notification that failed with 503 when the daemon was killed with SIGKILL is delivered
    by the next daemon, under the id of the failed attempts (receivers dedupe by id)."""
    config = make_config(rules=LOW_CASH_RULE)
    hook.status = 503
    await sim.set_accounts(low_cash())
    first = await cli.start("run", "--config", config)
    await eventually(lambda: len(hook.posts) >= 3, what="a first attempt and retries")
    await first.wait_event("delivery_retry", count=2)
    first.send(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    failed = list(hook.posts)

    hook.status = 200
    second = await cli.start("run", "--config", config)
    await eventually(hook.delivered, what="the delivery after the restart")
    await sim.wait_requests(await sim.requests() + 2)

    assert all(p.answered == 503 for p in failed)
    assert [p.ok for p in hook.posts] == [False] * len(failed) + [True]
    ids = {p.payload["id"] for p in hook.posts} | {p.id_header for p in hook.posts}
    assert len(ids) == 1
    (delivered,) = hook.delivered()
    assert (delivered["rule"], delivered["status"]) == ("low-cash-to-withdraw", "firing")
    assert second.events("notification_delivered", id=delivered["id"])
    assert second.events("alert_firing") == []


@pytest.mark.parametrize(
    ("sig", "busy"),
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGTERM-poll-and-delivery-in-flight", "SIGINT-idle"],
)
async def test_stop_signal_exits_0_within_10s(
    *,
    sig: signal.Signals,
    busy: bool,
    sim: SimControl,
    hook: Hook,
    cli: Cli,
    make_config: MakeConfig,
) -> None:
    """SIGTERM and SIGINT stop the daemon with exit code 0 within 10 s, even while a poll and a
    delivery hang."""
    if busy:
        hook.hang = True
        await sim.set_accounts(low_cash())
    daemon = await cli.start("run", "--config", make_config(rules=LOW_CASH_RULE))
    await daemon.wait_event("baseline_recorded")
    if busy:
        await eventually(lambda: hook.posts, what="a delivery in flight")
        await sim.fail(status=200, delay=30, count=1)  # the next poll hangs
        await sim.wait_requests(await sim.requests() + 1)

    started = time.monotonic()
    daemon.send(sig)
    code = await daemon.wait(timeout=20)
    elapsed = time.monotonic() - started

    assert code == 0, daemon.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"
    assert daemon.events("stop_requested", signal=sig.name)
    assert daemon.events("stopped")
    # A poll still in flight after the grace period must not be reported with a traceback
    # (whose frame locals hold the Authorization header): see the report of this suite.
    leaks = [e["event"] for e in daemon.events() if TOKEN in dumps(e, default=str)]
    assert leaks == [], f"the API token leaked into the log in {leaks}"
    assert TOKEN not in daemon.stderr, "the API token leaked into the log"
    errors = [e["event"] for e in daemon.events(level="error")]
    assert errors == [], f"a clean stop logged errors: {errors}"
    assert_clean(daemon.stderr)


async def test_source_down_fires_once_and_resolves(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """With ``down_after = 2`` a failing source is one critical ``source_down`` notification
    (no account), resolved under the same fingerprint when the source answers again."""
    daemon = await cli.start("run", "--config", make_config(api="down_after = 2"))
    await daemon.wait_event("baseline_recorded")
    await sim.fail(status=500, count=-1)
    await eventually(hook.delivered, what="source_down firing")
    await sim.wait_requests(await sim.requests() + 3)  # still failing: nothing new
    assert len(hook.posts) == 1

    await sim.clear_failures()
    await eventually(lambda: len(hook.delivered()) == 2, what="source_down resolved")
    firing, resolved = hook.delivered()
    for body in (firing, resolved):
        assert set(body) == PAYLOAD_KEYS
        assert (body["rule"], body["type"]) == ("source_down", "source_down")
        assert body["account_number"] is None
        assert body["severity"] == "critical"
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert "HTTP 500" in firing["summary"]
    assert firing["fingerprint"] == resolved["fingerprint"]
    assert firing["id"] != resolved["id"]
    assert len(daemon.events("poll_failed")) >= 4


async def test_bad_record_is_skipped_and_the_rest_alerts(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A record with ``cash = "abc"`` is skipped with a warning naming the account and the
    field; the good account still alerts and the daemon keeps polling."""
    bad_number = "99999999@bad"
    bad = account(bad_number, cash="abc", cash_to_withdraw=Decimal("1.00"))
    good = account(VISION, cash_to_withdraw=Decimal("512.25"))
    await sim.set_accounts([bad, good])
    daemon = await cli.start("run", "--config", make_config(rules=LOW_CASH_RULE))
    await eventually(hook.delivered, what="the good account's alert")
    await sim.wait_requests(await sim.requests() + 3)

    assert [b["account_number"] for b in hook.delivered()] == [VISION]
    (skipped,) = daemon.events("record_skipped")  # once, not every poll
    assert (skipped["account"], skipped["field"]) == (bad_number, "cash")
    assert "cash: expected a number, got string" in skipped["problem"]
    assert daemon.running

    await sim.set_accounts([account(bad_number, cash_to_withdraw=Decimal("1.00")), good])
    await eventually(
        lambda: hook.matching(account_number=bad_number), what="the repaired account's alert"
    )
    assert daemon.running


async def test_retry_after_429_delays_the_next_poll(
    sim: SimControl, cli: Cli, make_config: MakeConfig
) -> None:
    """A 429 with ``Retry-After: 3`` makes the daemon skip its 1 s ticks for 3 s."""
    daemon = await cli.start("run", "--config", make_config())
    await daemon.wait_event("baseline_recorded")
    await sim.fail(status=429, retry_after=3)
    base = await sim.requests()
    await sim.wait_requests(base + 1, timeout=5)
    limited = time.monotonic()
    await sim.wait_requests(base + 2, timeout=10)
    gap = time.monotonic() - limited

    assert gap >= 2.8, f"polled again {gap:.2f}s after the 429"
    assert gap < 5.5, f"polled again only {gap:.2f}s after the 429"
    failed = daemon.events("poll_failed")
    assert len(failed) == 1
    assert failed[0]["retry_after"] == 3
    assert "HTTP 429" in failed[0]["error"]
    assert daemon.events("poll_deferred")


# --------------------------------------------------------------------------- check-config

GOOD = config_toml(
    api_url="https://api.example.com/accounts",
    hook_url="https://hooks.example.com/hook/e2e-path-secret?key=qs-secret",
    state=Path("state.db"),
    token=TOKEN,
    rules=RESTRICTION_RULE + LOW_CASH_RULE,  # rules[0] restriction, rules[1] threshold
)
SECRETS = (TOKEN, "e2e-path-secret", "qs-secret")


def _edit(*pairs: tuple[str, str]) -> str:
    text = GOOD
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


SYNTAX_ERROR = _edit(('interval = "1s"', 'interval = "1s'))
BAD_CONFIGS = [
    pytest.param(None, "config.toml: no such file", id="missing-file"),
    pytest.param(
        SYNTAX_ERROR,
        f"TOML syntax error: Illegal character '\\n' (at line {_line_of(SYNTAX_ERROR, 'interval')}",
        id="toml-syntax",
    ),
    pytest.param(
        _edit(('type = "restriction_change"', 'type = "restriction_change"\nfeild = "cash"')),
        "rules[0] (restriction-changed).feild: unknown key",
        id="unknown-rule-key",
    ),
    pytest.param(
        _edit(('timeout = "5s"', 'timeout = "5s"\nextra = 1')),
        "api.extra: unknown key",
        id="unknown-api-key",
    ),
    pytest.param(
        _edit(('type = "restriction_change"', 'type = "restriction_chnage"')),
        "rules[0] (restriction-changed).type: unknown rule type 'restriction_chnage'",
        id="rule-type-typo",
    ),
    pytest.param(
        _edit(('op = "<"', 'op = "=<"')),
        "rules[1] (low-cash-to-withdraw).op: must be one of <, <=, >, >=, ==, !=",
        id="bad-op",
    ),
    pytest.param(
        _edit(('type = "restriction_change"', 'type = "restriction_change"\nsinks = ["pager"]')),
        "rules[0] (restriction-changed).sinks: unknown sink 'pager'",
        id="undefined-sink",
    ),
    pytest.param(
        _edit(('name = "low-cash-to-withdraw"', 'name = "restriction-changed"')),
        "rules[1] (restriction-changed).name: duplicate rule name 'restriction-changed'",
        id="duplicate-rule",
    ),
    pytest.param(
        GOOD + '\n[[sinks]]\nname = "hook"\ntype = "log"\n',
        "sinks[1] (hook).name: duplicate sink name 'hook'",
        id="duplicate-sink",
    ),
    pytest.param(
        _edit(('field = "cash_to_withdraw"', 'field = "margin_type"')),
        "rules[1] (low-cash-to-withdraw).field: 'margin_type' is not a numeric field",
        id="threshold-on-text",
    ),
    pytest.param(
        _edit(('type = "webhook"', 'type = "webhook"\nheaders = { "X-Team" = "a\\nb" }')),
        "sinks[0] (hook).headers",
        id="header-with-newline",
    ),
    pytest.param(
        _edit((f'token = "{TOKEN}"', f'token = "{TOKEN}"\ntoken_env = "{TOKEN_ENV}"')),
        "api: give only one of token, token_env, token_file (got token, token_env)",
        id="token-and-token-env",
    ),
]


async def test_check_config_accepts_a_good_file(tmp_path: Path, cli: Cli) -> None:
    """``check-config`` on a valid file exits 0 with a one-line summary and no secret."""
    path = tmp_path / "config.toml"
    path.write_text(GOOD, encoding="utf-8")
    result = await cli.run("check-config", "--config", path)

    assert result.code == 0, result.output
    assert result.stdout == (
        f"OK {path}: source https://api.example.com/accounts (token from inline), "
        "every 1s, 2 rules, 1 sink\n"
    )
    assert result.stderr == ""
    assert not any(secret in result.output for secret in SECRETS)


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
async def test_check_config_rejects_a_bad_file(
    tmp_path: Path, cli: Cli, text: str | None, message: str
) -> None:
    """A missing or bad file exits 2 with one message naming the file and the key (and no
    spurious others), never a traceback or a secret."""
    path = tmp_path / "config.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    result = await cli.run("check-config", "--config", path)

    assert result.code == 2, result.output
    assert result.stderr.startswith(f"error: {path}: "), result.stderr
    assert message in result.stderr
    assert len(result.stderr.splitlines()) <= 2, result.stderr  # "N problems" + this one
    assert result.stdout == ""
    assert_clean(result)
    assert not any(secret in result.output for secret in SECRETS)


async def test_secrets_never_printed(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """The inline API token and the webhook URL (path and query) appear in no output of
    ``check-config``, ``once`` or ``run``, even when the sink fails and echoes its URL."""
    config = make_config(
        token=TOKEN,
        hook_url=hook.url + "?key=qs-secret",
        rules=LOW_CASH_RULE,
        delivery='once_deadline = "1s"',
    )
    hook.status = 503
    hook.text = f"cannot route {hook.path}?key=qs-secret"
    await sim.set_accounts(low_cash())
    checked = await cli.run("check-config", "--config", config)
    once = await cli.run("once", "--config", config)
    daemon = await cli.start("run", "--config", config)
    await daemon.wait_event("delivery_retry", count=2)
    hook.status = 404
    await daemon.wait_event("delivery_failed")
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0

    assert checked.code == 0
    assert once.code == 3
    assert "HTTP 503 from sink 'hook'" in once.stderr
    assert "HTTP 404 from sink 'hook': cannot route <url>" in daemon.stderr
    for output in (checked.output, once.output, daemon.stdout + daemon.stderr):
        for secret in SECRETS:
            assert secret not in output


async def test_a_crashing_sink_logs_no_secret(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A sink failing in an unforeseen way (aiohttp refuses a header value holding a newline)
    is logged without the webhook URL or the token, and nothing is sent."""
    config = make_config(
        token=TOKEN,
        hook_url=hook.url + "?key=qs-secret",
        rules=LOW_CASH_RULE,
        delivery='once_deadline = "1s"',
        sink='headers = { "X-Team" = "a\\nb" }',
    )
    await sim.set_accounts(low_cash())
    result = await cli.run("once", "--config", config)

    assert result.code in {2, 3}, result.output  # refused as config, or left undelivered
    assert hook.posts == []
    leaked = [secret for secret in SECRETS if secret in result.output]
    assert leaked == [], f"secrets in the output of once: {leaked}"


# --------------------------------------------------------------------------- once


async def test_once_against_fake_api_delivers_and_exits_0(
    tmp_path: Path, hook: Hook, cli: Cli, unused_tcp_port: int
) -> None:
    """``once`` against ``fake-api`` (its own process) polls, delivers and exits 0."""
    fake = await cli.start(
        "fake-api", "--port", str(unused_tcp_port), "--token", TOKEN, "--scenario", "static"
    )
    url = f"http://127.0.0.1:{unused_tcp_port}/accounts"
    await eventually(lambda: url in fake.stdout, what="fake-api to listen")
    rule = LOW_CASH_RULE.replace("value = 1000", "value = 2000")
    config = tmp_path / "config.toml"
    config.write_text(
        config_toml(api_url=url, hook_url=hook.url, state=tmp_path / "s.db", rules=rule),
        encoding="utf-8",
    )
    result = await cli.run("once", "--config", config)

    assert result.code == 0, result.output
    assert result.stdout == "polled 2 accounts: 2 changed, 1 notifications\n"
    (body,) = hook.delivered()
    assert (body["account_number"], body["current"]) == (COR, Decimal("1500.00"))
    assert len(hook.posts) == 1
    fake.send(signal.SIGTERM)
    assert await fake.wait() == 0


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        pytest.param(
            {"fail": {"status": 500}},
            "error: poll failed: HTTP 500 (api_error: internal server error)\n",
            id="http-500",
        ),
        pytest.param(
            {"raw": {"body": "<html>oops</html>", "content_type": "text/html"}},
            "error: poll failed: response is not JSON: Expecting value at line 1 column 1"
            " (char 0), near '<html>oops</html>'\n",
            id="not-json",
        ),
        pytest.param(
            {"raw": {"body": '{"accounts": []}'}},
            "error: poll failed: response is not a JSON array of accounts (got object)\n",
            id="not-an-array",
        ),
    ],
)
async def test_once_exits_1_when_the_source_fails(
    *,
    failure: dict[str, dict[str, Any]],
    message: str,
    sim: SimControl,
    hook: Hook,
    cli: Cli,
    make_config: MakeConfig,
) -> None:
    """``once`` exits 1 with one precise line when the source errs or answers garbage."""
    if "fail" in failure:
        await sim.fail(**failure["fail"])
    else:
        await sim.raw(**failure["raw"])
    result = await cli.run("once", "--config", make_config(rules=LOW_CASH_RULE))

    assert result.code == 1, result.output
    assert result.stdout == ""
    assert [line for line in result.stderr.splitlines() if not line.startswith("{")] == [
        message.rstrip("\n")
    ]
    assert_clean(result)
    assert hook.posts == []


async def test_once_exits_3_and_keeps_undelivered_notification(
    sim: SimControl, hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``once`` exits 3 when its notification cannot be delivered before ``once_deadline``;
    the next ``once`` delivers it under the same id and exits 0."""
    config = make_config(rules=LOW_CASH_RULE, delivery='once_deadline = "2s"')
    hook.status = 503
    await sim.set_accounts(low_cash())
    started = time.monotonic()
    first = await cli.run("once", "--config", config)
    elapsed = time.monotonic() - started

    assert first.code == 3, first.output
    assert (
        "error: 1 notification(s) still undelivered; they stay queued for the next run"
        in first.stderr
    )
    assert elapsed < 10
    assert hook.posts
    assert not hook.delivered()
    failed_id = hook.posts[0].payload["id"]

    hook.status = 200
    second = await cli.run("once", "--config", config)

    assert second.code == 0, second.output
    assert second.stdout == "polled 2 accounts: 0 changed, 0 notifications\n"
    (delivered,) = hook.delivered()
    assert delivered["id"] == failed_id
    assert {p.payload["id"] for p in hook.posts} == {failed_id}


# --------------------------------------------------------------------------- test-sink


async def test_test_sink_sends_a_labelled_notification(
    hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """``test-sink hook`` sends one notification that says TEST and reports success."""
    result = await cli.run("test-sink", "--config", make_config(), "hook")

    assert result.code == 0, result.output
    assert result.stdout == "sent a test notification through sink 'hook' (webhook)\n"
    (body,) = hook.delivered()
    assert set(body) == PAYLOAD_KEYS
    assert "TEST" in body["summary"]
    assert len(hook.posts) == 1


async def test_test_sink_reports_a_404_without_the_url(
    hook: Hook, cli: Cli, make_config: MakeConfig
) -> None:
    """A 404 from the sink is a non-zero exit and one error line without the URL."""
    hook.status = 404
    hook.text = f"no hook at {hook.url}"
    result = await cli.run("test-sink", "--config", make_config(), "hook")

    assert result.code == 1, result.output
    assert result.stdout == ""
    assert (
        result.stderr
        == "error: sink 'hook' (webhook): HTTP 404 from sink 'hook': no hook at <url>\n"
    )
    assert hook.path not in result.output
    assert_clean(result)


async def test_test_sink_unknown_name(cli: Cli, make_config: MakeConfig) -> None:
    """``test-sink`` with a name that is not configured exits 2 listing the configured ones."""
    result = await cli.run("test-sink", "--config", make_config(), "pager")

    assert result.code == 2
    assert result.stderr == "error: no sink named 'pager' (configured: hook)\n"
    assert_clean(result)


# --------------------------------------------------------------------------- demo


async def test_demo(cli: Cli) -> None:
    """``demo --interval 1s --duration 12`` names its five rules, shows the low-cash and
    restriction alerts firing and an alert resolving, one line each, then exits 0 by itself.

    At 1 s polls the demo account reaches its resolve (scenario step 8) after about 8 s; the
    default 2 s polls would need 16 s to show the same.
    """
    result = await cli.run(
        "demo", "--interval", "1s", "--duration", str(DEMO_DURATION), timeout=DEMO_DURATION + 20
    )
    lines = result.output.splitlines()

    assert result.code == 0, result.output
    assert "5 rules of config.example.toml" in result.output
    assert any(" FIRING " in line and " low-cash-to-withdraw " in line for line in lines)
    assert any(" FIRING " in line and " restriction-changed " in line for line in lines)
    assert any(" RESOLVED " in line for line in lines)
    assert not any("alert_firing" in line or "notification_delivered" in line for line in lines)
    assert_clean(result)
