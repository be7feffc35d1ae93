"""The log sink: one structlog event per notification, no network."""

from __future__ import annotations

import pytest
from sinks_helpers import make_notification
from structlog.testing import capture_logs

from monitor.config import LogSinkConfig
from monitor.models import Status
from monitor.sinks import log


@pytest.mark.parametrize(
    ("level", "status", "logged_at"),
    [
        ("warning", Status.FIRING, "warning"),
        ("error", Status.FIRING, "error"),
        ("info", Status.FIRING, "info"),
        ("error", Status.RESOLVED, "info"),
    ],
)
async def test_log_sink(level: str, status: Status, logged_at: str) -> None:
    """One 'notification' event per send, at the configured level while firing."""
    config = LogSinkConfig.model_validate({"type": "log", "name": "journal", "level": level})
    sink = log.create(config, index=0, session=None)  # type: ignore[arg-type]

    with capture_logs() as events:
        await sink.send(make_notification(status=status))
    await sink.aclose()

    assert events == [
        {
            "event": "notification",
            "log_level": logged_at,
            "sink": "journal",
            "id": "n-0001",
            "fingerprint": "fp-0123456789abcdef",
            "status": status.value,
            "rule": "low-cash",
            "type": "threshold",
            "severity": "critical",
            "source": "default",
            "account_number": "12345678",
            "field": "cash_to_withdraw",
            "previous": "1500.00",
            "current": "512.25",
            "summary": "cash_to_withdraw fell to 512.25 (< 1000)",
            "observed_at": "2024-05-01T12:00:00Z",
        }
    ]
