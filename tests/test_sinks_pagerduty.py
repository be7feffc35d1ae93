"""The PagerDuty sink against a fake Events API v2 (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError
from sinks_helpers import OBSERVED_AT, Receiver, Reply, make_notification, serving
from store_helpers import queue_notification

from monitor import __version__
from monitor.config import DeliveryConfig, PagerDutySinkConfig
from monitor.delivery import Delivery
from monitor.errors import ConfigError, SinkError
from monitor.models import Notification, Severity, Status
from monitor.sinks import pagerduty
from monitor.sinks.registry import build_sink
from monitor.store import open_store
from monitor.testing import ManualTime

ROUTING_KEY = "R0UT1NGkeyPagerDuty0123456789abc"
ACCEPTED = Reply(
    status=202,
    body='{"status":"success","message":"Event processed","dedup_key":"fp-0123456789abcdef"}',
)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A fake Events API that accepts every event (202) until told otherwise."""
    async with serving("/v2/enqueue", reply=ACCEPTED) as receiver:
        yield receiver


def make_sink(url: str, session: aiohttp.ClientSession, **settings: Any) -> pagerduty.PagerDutySink:
    config = PagerDutySinkConfig.model_validate(
        {"type": "pagerduty", "name": "pd", "routing_key": ROUTING_KEY, "url": url, **settings}
    )
    return pagerduty.create(config, index=0, session=session)


async def post(
    receiver: Receiver, session: aiohttp.ClientSession, notification: Notification
) -> dict[str, Any]:
    await make_sink(receiver.url, session).send(notification)
    [request] = receiver.requests
    document: dict[str, Any] = json.loads(request.body)
    return document


async def send_failing(sink: pagerduty.PagerDutySink) -> SinkError:
    with pytest.raises(SinkError) as info:
        await sink.send(make_notification())
    return info.value


async def test_trigger_event(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A firing notification is a trigger event deduplicated by the fingerprint, with the
    details PagerDuty shows and money as exact strings."""
    notification = make_notification(labels={"team": "treasury"}, description="Top up the account.")

    document = await post(receiver, session, notification)

    assert document == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "fp-0123456789abcdef",
        "payload": {
            "summary": "cash_to_withdraw fell to 512.25 (< 1000)",
            "severity": "critical",
            "source": "balance-monitor/default/12345678",
            "timestamp": "2024-05-01T12:00:00Z",
            "component": "12345678",
            "group": "default",
            "class": "threshold",
            "custom_details": {
                "rule": "low-cash",
                "field": "cash_to_withdraw",
                "previous": "1500.00",
                "current": "512.25",
                "labels": {"team": "treasury"},
                "description": "Top up the account.",
                "id": "n-0001",
                "snapshot": {"account_number": "12345678", "cash_to_withdraw": "512.25"},
            },
        },
        "client": "balance-monitor",
    }


async def test_resolve_event(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A resolved notification is a bare resolve event with the same dedup key."""
    document = await post(receiver, session, make_notification(status=Status.RESOLVED))

    assert document == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "fp-0123456789abcdef",
    }


async def test_acknowledge_event(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A firing notification said to be acknowledged (what ``balance-monitor ack`` queues) is
    a bare acknowledge event with the alert's dedup key."""
    from dataclasses import replace
    from datetime import UTC, datetime

    fired = make_notification()
    acked = replace(
        fired,
        alert=replace(
            fired.alert,
            acknowledged_by="alice",
            acknowledged_at=datetime(2024, 5, 1, 12, 5, tzinfo=UTC),
        ),
    )
    document = await post(receiver, session, acked)

    assert document == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": "fp-0123456789abcdef",
    }


async def test_request_headers(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """JSON with our User-Agent, POSTed to the configured URL."""
    await make_sink(receiver.url, session).send(make_notification())

    [request] = receiver.requests
    assert request.path == "/v2/enqueue"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"balance-monitor/{__version__}"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(Severity.CRITICAL, "critical"), (Severity.WARNING, "warning"), (Severity.INFO, "info")],
)
def test_severity_mapping(severity: Severity, expected: str) -> None:
    """Each of our severities has its PagerDuty namesake."""
    event = pagerduty.event(make_notification(severity=severity), routing_key="k")

    assert event["payload"]["severity"] == expected


def test_source_alert_without_account() -> None:
    """A source's own alert (source_down) names just the source and has no component."""
    notification = make_notification(
        account_number=None,
        field=None,
        previous=None,
        current=None,
        snapshot=None,
        source="vision",
        type="source_down",
        rule="source_down",
    )

    payload = pagerduty.event(notification, routing_key="k")["payload"]

    assert payload["source"] == "balance-monitor/vision"
    assert "component" not in payload
    assert payload["group"] == "vision"
    assert payload["class"] == "source_down"
    details = payload["custom_details"]
    assert (details["field"], details["previous"], details["snapshot"]) == (None, None, None)


def test_summary_is_clipped_to_1024_characters() -> None:
    """PagerDuty refuses longer summaries: they end in an ellipsis at 1024 characters."""
    summary = pagerduty.event(make_notification(summary="x" * 2000), routing_key="k")["payload"][
        "summary"
    ]

    assert len(summary) == 1024
    assert summary.endswith("x…")


def test_records_keep_exact_money_at_any_depth() -> None:
    """A whole record (account added/removed) keeps its money as strings of exact digits."""
    record = {"cash": Decimal("1E+3"), "nested": [Decimal("0.10"), 3, True]}
    notification = make_notification(previous=None, current=record, field=None)

    details = pagerduty.event(notification, routing_key="k")["payload"]["custom_details"]

    assert details["current"] == {"cash": "1000", "nested": ["0.10", 3, True]}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (500, True), (502, True), (503, True), (400, False), (403, False)],
)
async def test_status_errors(
    receiver: Receiver, session: aiohttp.ClientSession, *, status: int, retryable: bool
) -> None:
    """429 and 5xx are retried; 400 (an invalid event) and other 4xx are not."""
    receiver.reply = Reply(status=status, body="")

    error = await send_failing(make_sink(receiver.url, session))

    assert (error.status, error.retryable) == (status, retryable)
    assert str(error).startswith(f"HTTP {status} from sink 'pd'")


async def test_invalid_event_names_pagerdutys_error(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A 400 carries PagerDuty's own explanation, and never the routing key it may quote."""
    receiver.reply = Reply(
        status=400,
        body=json.dumps(
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": [f"'{ROUTING_KEY}' is not a valid routing key"],
            }
        ),
    )

    error = await send_failing(make_sink(receiver.url, session))

    assert not error.retryable
    assert "Event object is invalid" in str(error)
    assert "is not a valid routing key" in str(error)
    assert ROUTING_KEY not in str(error)
    assert "<routing_key>" in str(error)
    assert error.__suppress_context__


async def test_connection_refused_hides_the_key(session: aiohttp.ClientSession) -> None:
    """A connection error is retryable and says nothing of the key."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    error = await send_failing(make_sink(f"http://127.0.0.1:{port}/v2/enqueue", session))

    assert error.retryable
    assert ROUTING_KEY not in str(error)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("spelling", ["routing_key", "routing_key_env", "routing_key_file"])
async def test_routing_key_spellings(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    spelling: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The key inline, from the environment or from a file, built through the registry."""
    monkeypatch.setenv("TEST_PD_KEY", ROUTING_KEY)
    (tmp_path / "key").write_text(f"{ROUTING_KEY}\n", encoding="utf-8")
    given = {
        "routing_key": ROUTING_KEY,
        "routing_key_env": "TEST_PD_KEY",
        "routing_key_file": str(tmp_path / "key"),
    }
    config = PagerDutySinkConfig.model_validate(
        {"type": "pagerduty", "name": "pd", "url": receiver.url, spelling: given[spelling]}
    )

    await build_sink(config, index=3, session=session).send(make_notification())

    assert json.loads(receiver.requests[0].body)["routing_key"] == ROUTING_KEY


def test_missing_routing_key_names_the_key(session: aiohttp.ClientSession) -> None:
    """An unset environment variable is a ConfigError naming the key, not a value."""
    config = PagerDutySinkConfig.model_validate(
        {"type": "pagerduty", "name": "pd", "routing_key_env": "TEST_PD_UNSET_KEY"}
    )

    with pytest.raises(
        ConfigError, match=r"^sinks\[2\] \(pd\)\.routing_key_env: .*TEST_PD_UNSET_KEY"
    ):
        pagerduty.create(config, index=2, session=session)


def test_defaults_and_repr(session: aiohttp.ClientSession) -> None:
    """The public Events API is the default URL; the repr names the sink and not the key."""
    config = PagerDutySinkConfig.model_validate(
        {"type": "pagerduty", "name": "pd", "routing_key": ROUTING_KEY}
    )
    sink = pagerduty.create(config, index=0, session=session)

    assert config.url == pagerduty.DEFAULT_URL == "https://events.pagerduty.com/v2/enqueue"
    assert repr(sink) == "PagerDutySink(name='pd')"
    assert ROUTING_KEY not in repr(sink)
    assert sink.name == "pd"


async def test_aclose_is_harmless(session: aiohttp.ClientSession) -> None:
    """Closing holds nothing to release and leaves the shared session open."""
    sink = pagerduty.PagerDutySink("pd", session=session, routing_key=SecretStr(ROUTING_KEY))

    await sink.aclose()

    assert not session.closed


def test_timestamp_is_observed_at() -> None:
    """The event's timestamp is when the poll saw the condition, not when it began."""
    notification = make_notification()
    started = replace(notification.alert, started_at=OBSERVED_AT.replace(hour=9))

    payload = pagerduty.event(replace(notification, alert=started), routing_key="k")["payload"]

    assert payload["timestamp"] == "2024-05-01T12:00:00Z"


# --------------------------------------------------------------------------- events resolve


def event_notification(nid: str = "n-event", fingerprint: str = "fp-event-1") -> Notification:
    """A firing event (a restriction change): nothing will ever resolve it."""
    return replace(
        make_notification(
            fingerprint=fingerprint,
            rule="restricted",
            type="restriction_change",
            kind="event",
            field="restriction",
            previous="none",
            current="restricted",
            summary="12345678: restriction none -> restricted",
        ),
        id=nid,
    )


def documents(receiver: Receiver) -> list[tuple[str, str]]:
    """``(event_action, dedup_key)`` of every event the fake Events API got, in order."""
    sent = [json.loads(request.body) for request in receiver.requests]
    return [(document["event_action"], document["dedup_key"]) for document in sent]


@dataclass
class Outbox:
    """A real state database, the PagerDuty sink on the receiver, and a manual clock: a
    Delivery on them can be started, stopped and made anew, as the daemon does."""

    path: Path
    receiver: Receiver
    session: aiohttp.ClientSession
    clock: ManualTime

    async def drain(self, **settings: Any) -> None:
        """Open the store and the sink as a (re)started daemon would, deliver what is due."""
        store = await open_store(self.path)
        try:
            sink = make_sink(self.receiver.url, self.session, **settings)
            delivery = Delivery(store, {"pd": sink}, DeliveryConfig(), clock=self.clock)
            await delivery.drain(self.clock() + 1)  # the clock stands still: no waiting
        finally:
            await store.close()

    async def queue(self, notification: Notification) -> None:
        store = await open_store(self.path)
        try:
            await queue_notification(
                store, "default", notification, ["pd"], self.clock.as_datetime()
            )
        finally:
            await store.close()


@pytest.fixture
def outbox(tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> Outbox:
    return Outbox(tmp_path / "state.db", receiver, session, ManualTime(OBSERVED_AT))


async def test_an_event_is_resolved_after_resolve_events_after_even_across_a_restart(
    outbox: Outbox, receiver: Receiver
) -> None:
    """An event's incident is resolved (same dedup_key) once resolve_events_after has passed
    since its trigger was delivered, by whichever process runs then: the delivered trigger in
    the state database is what says a resolve is owed, so a restart cannot lose it."""
    await outbox.queue(event_notification())
    await outbox.drain(resolve_events_after="1h")
    assert documents(receiver) == [("trigger", "fp-event-1")]

    outbox.clock.advance(timedelta(minutes=59))
    await outbox.drain(resolve_events_after="1h")  # a restarted daemon, too early
    assert documents(receiver) == [("trigger", "fp-event-1")]

    outbox.clock.advance(timedelta(minutes=1))
    await outbox.drain(resolve_events_after="1h")  # restarted again, at the hour
    assert documents(receiver) == [("trigger", "fp-event-1"), ("resolve", "fp-event-1")]

    outbox.clock.advance(timedelta(hours=5))
    await outbox.drain(resolve_events_after="1h")
    assert len(receiver.requests) == 2  # resolved once


async def test_the_default_resolves_events_after_an_hour(
    outbox: Outbox, receiver: Receiver
) -> None:
    """Without resolve_events_after an event's incident is resolved an hour after its trigger;
    a condition's incident waits for its own resolved notification."""
    await outbox.queue(event_notification())
    await outbox.queue(make_notification(fingerprint="fp-condition"))
    await outbox.drain()

    outbox.clock.advance(timedelta(hours=2))
    await outbox.drain()

    assert documents(receiver) == [
        ("trigger", "fp-event-1"),
        ("trigger", "fp-condition"),
        ("resolve", "fp-event-1"),
    ]


async def test_an_event_whose_trigger_failed_is_not_resolved(
    outbox: Outbox, receiver: Receiver
) -> None:
    """A trigger PagerDuty refused (400) opened no incident: nothing to resolve."""
    receiver.reply = Reply(status=400, body='{"status":"invalid event"}')
    await outbox.queue(event_notification())
    await outbox.drain(resolve_events_after="0s")
    receiver.reply = ACCEPTED

    outbox.clock.advance(timedelta(hours=2))
    await outbox.drain(resolve_events_after="0s")

    assert documents(receiver) == [("trigger", "fp-event-1")]


async def test_a_failed_resolve_is_retried_like_any_notification(
    outbox: Outbox, receiver: Receiver
) -> None:
    """The resolve goes through the outbox: a 503 is retried after the backoff."""
    await outbox.queue(event_notification())
    await outbox.drain(resolve_events_after="0s")  # trigger and resolve at once
    assert documents(receiver) == [("trigger", "fp-event-1"), ("resolve", "fp-event-1")]

    receiver.reply = Reply(status=503, body="")
    await outbox.queue(event_notification("n-event-2", "fp-event-2"))
    await outbox.drain(resolve_events_after="0s")
    receiver.reply = ACCEPTED
    outbox.clock.advance(timedelta(minutes=10))
    await outbox.drain(resolve_events_after="0s")

    assert documents(receiver)[2:] == [
        ("trigger", "fp-event-2"),
        ("trigger", "fp-event-2"),
        ("resolve", "fp-event-2"),
    ]


async def test_a_running_daemon_resolves_events_at_once_with_0s(
    tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """In daemon mode the worker queues the resolve as soon as it is due: with 0s, right after
    the trigger is delivered."""
    store = await open_store(tmp_path / "state.db")
    clock = ManualTime(OBSERVED_AT)
    sink = make_sink(receiver.url, session, resolve_events_after="0s")
    delivery = Delivery(store, {"pd": sink}, DeliveryConfig(), clock=clock)
    try:
        await queue_notification(store, "default", event_notification(), ["pd"], OBSERVED_AT)
        await delivery.start()
        for _ in range(500):  # up to 5 s
            if len(receiver.requests) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await delivery.stop(grace=1)
        await store.close()

    assert documents(receiver) == [("trigger", "fp-event-1"), ("resolve", "fp-event-1")]


def test_resolve_events_after_is_a_duration_of_at_most_a_day() -> None:
    """The default is 1h; 0s resolves at once; more than 24h is refused (a delivered trigger is
    kept 7 days, and an event a day old is history)."""
    base = {"type": "pagerduty", "name": "pd", "routing_key": ROUTING_KEY}

    assert PagerDutySinkConfig.model_validate(base).resolve_events_after == timedelta(hours=1)
    zero = PagerDutySinkConfig.model_validate(base | {"resolve_events_after": "0s"})
    assert zero.resolve_events_after == timedelta(0)
    with pytest.raises(ValidationError, match="at most 24h"):
        PagerDutySinkConfig.model_validate(base | {"resolve_events_after": "25h"})
