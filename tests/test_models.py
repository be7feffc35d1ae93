"""Tests for monitor.models: the notification document and RFC 3339 timestamps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from e2e_helpers import PAYLOAD_FIELDS

from monitor import encoding
from monitor.models import Alert, Notification, Record, Severity, Status, rfc3339

NUMBER = "12345678@vision"
AT = datetime(2024, 5, 1, 13, 30, 0, 250000, tzinfo=UTC)
RECORD: Record = MappingProxyType(
    {
        "account_number": NUMBER,
        "restriction": "none",
        "restriction_reason": None,
        "daytrades_count": 2,
        "cash_to_withdraw": Decimal("512.25"),
        "vendor_extra": {"nested": [Decimal("0.10"), True]},
    }
)


THRESHOLD = Alert(
    status=Status.FIRING,
    fingerprint="0123456789abcdef01234567",
    rule="low-cash",
    type="threshold",
    severity=Severity.WARNING,
    account_number=NUMBER,
    field="cash_to_withdraw",
    previous=Decimal("1500.00"),
    current=Decimal("512.25"),
    summary="12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)",
    observed_at=AT,
    snapshot=RECORD,
)
SOURCE_DOWN = Alert(
    status=Status.RESOLVED,
    fingerprint="fedcba9876543210fedcba98",
    rule="source_down",
    type="source_down",
    severity=Severity.CRITICAL,
    account_number=None,
    field=None,
    previous=None,
    current=4,
    summary="source default is back up after 4 failed polls",
    observed_at=AT,
)
ALERTS = [
    pytest.param(THRESHOLD, id="threshold-firing"),
    pytest.param(replace(THRESHOLD, status=Status.RESOLVED, severity=Severity.INFO), id="resolved"),
    pytest.param(SOURCE_DOWN, id="source-down"),
    pytest.param(
        replace(
            THRESHOLD,
            description="Cash is low.",
            labels={"team": "risk"},
            started_at=AT - timedelta(minutes=5),
        ),
        id="description-labels-started",
    ),
    pytest.param(
        replace(
            THRESHOLD,
            type="change",
            kind="event",
            field="restriction_reason",
            previous=None,
            current="PDT",
        ),
        id="change-from-null",
    ),
    pytest.param(
        replace(THRESHOLD, summary="ünïcödé ✓", observed_at=AT.astimezone(ZoneInfo("Asia/Tokyo"))),
        id="unicode-and-non-utc-time",
    ),
]


def test_payload_has_exactly_the_documented_keys_in_order() -> None:
    """The JSON document receivers get has the documented keys, in the documented order."""
    payload = Notification("n-1", THRESHOLD).payload()
    assert list(payload) == list(PAYLOAD_FIELDS)
    assert payload == {
        "id": "n-1",
        "fingerprint": "0123456789abcdef01234567",
        "status": "firing",
        "rule": "low-cash",
        "type": "threshold",
        "kind": "condition",
        "severity": "warning",
        "source": "default",
        "account_number": NUMBER,
        "field": "cash_to_withdraw",
        "previous": Decimal("1500.00"),
        "current": Decimal("512.25"),
        "summary": "12345678@vision: cash_to_withdraw fell to 512.25 (< 1000)",
        "description": None,
        "labels": {},
        "observed_at": "2024-05-01T13:30:00.250000Z",
        "started_at": None,
        "snapshot": dict(RECORD),
    }


def test_an_acknowledged_episode_s_payload_says_who_and_when_and_reads_back() -> None:
    """``acknowledged_by`` and ``acknowledged_at`` follow the documented keys, only when the
    episode was acknowledged; ``from_payload`` reads them back."""
    acked = replace(THRESHOLD, acknowledged_by="alice", acknowledged_at=AT)
    payload = Notification("n-1", acked).payload()
    assert list(payload) == [*PAYLOAD_FIELDS, "acknowledged_by", "acknowledged_at"]
    assert (payload["acknowledged_by"], payload["acknowledged_at"]) == (
        "alice",
        "2024-05-01T13:30:00.250000Z",
    )
    assert Notification.from_payload(payload) == Notification("n-1", acked)


@pytest.mark.parametrize("alert", ALERTS)
def test_payload_values_are_plain_json(alert: Alert) -> None:
    """Enums become their strings and the snapshot a plain dict, so any JSON encoder copes."""
    payload = Notification("n-1", alert).payload()
    assert list(payload) == list(PAYLOAD_FIELDS)
    assert type(payload["status"]) is str
    assert type(payload["severity"]) is str
    assert payload["snapshot"] is None or type(payload["snapshot"]) is dict


@pytest.mark.parametrize("alert", ALERTS)
def test_from_payload_round_trips(alert: Alert) -> None:
    """from_payload(payload()) gives the same notification back."""
    notification = Notification("n-1", alert)
    assert Notification.from_payload(notification.payload()) == notification


@pytest.mark.parametrize("alert", ALERTS)
def test_round_trip_through_the_outbox_encoding(alert: Alert) -> None:
    """A payload stored as JSON text and read back is the same notification, money exact."""
    notification = Notification("n-1", replace(alert, source="lime"))
    stored = encoding.dumps(notification.payload())
    back = Notification.from_payload(encoding.loads(stored), source="lime")
    assert back == notification
    assert repr(back.alert.current) == repr(alert.current)
    assert encoding.dumps(back.payload()) == stored


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC), "2024-05-01T12:00:00.000001Z"),
        (datetime(2024, 5, 1, 8, 0, tzinfo=ZoneInfo("America/New_York")), "2024-05-01T12:00:00Z"),
        (datetime(2024, 1, 1, 3, 0, tzinfo=ZoneInfo("America/New_York")), "2024-01-01T08:00:00Z"),
        (datetime(2024, 5, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), "2024-04-30T22:30:00Z"),
        (datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(0))), "2024-05-01T12:00:00Z"),
    ],
)
def test_rfc3339(moment: datetime, text: str) -> None:
    """Any aware datetime is written in UTC with a Z suffix."""
    assert rfc3339(moment) == text


def test_rfc3339_rejects_naive_datetimes() -> None:
    """A naive datetime has no place in time: it is a ValueError, not a guess."""
    with pytest.raises(ValueError, match="naive datetime"):
        rfc3339(datetime(2024, 5, 1, 12, 0))  # noqa: DTZ001
