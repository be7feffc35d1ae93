"""The metrics' meaning: what counts as a notification and what as an attempt, which series
exist before anything happened, how many scheduled polls a source missed, and the process
collector. The exposition over HTTP is in ``test_observability.py`` (in-process) and
``test_e2e_service.py`` (a real daemon).

Delivery runs on a real SQLite store with a :class:`~monitor.testing.RecordingSink`; the
schedule uses the real triggers of ``monitor.schedule``.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import notification, queue_notification

from monitor.config import DeliveryConfig, ScheduleConfig
from monitor.delivery import Delivery
from monitor.metrics import ATTEMPT_RESULTS, MISSED_POLLS_LIMIT, NOTIFICATION_RESULTS, Metrics
from monitor.observe import missed_since_success
from monitor.schedule import make_trigger
from monitor.store import Store
from monitor.testing import EPOCH, ManualTime, RecordingSink

ET = ZoneInfo("America/New_York")


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of ``balance_monitor_<name>{labels}``, None if the series does not exist."""
    return metrics.registry.get_sample_value(f"balance_monitor_{name}", labels)


# --------------------------------------------------------------------------- start-up series


def test_declare_sources_creates_ok_and_failed_polls_at_zero() -> None:
    """Every declared source has ``polls_total{result="failed"}`` (and ``ok``) at 0 before its
    first poll, so ``rate(...{result="failed"}[5m])`` exists before the first failure."""
    metrics = Metrics()
    assert sample(metrics, "polls_total", source="fund", result="failed") is None
    metrics.declare_sources(["default", "fund"])
    for source in ("default", "fund"):
        assert sample(metrics, "polls_total", source=source, result="failed") == 0
        assert sample(metrics, "polls_total", source=source, result="ok") == 0


def test_declare_sinks_creates_notification_and_attempt_series_at_zero() -> None:
    """Each declared sink has every notification outcome and every attempt result at 0; a
    notification has no ``retry`` outcome (a retry is an attempt, not an end)."""
    metrics = Metrics()
    metrics.declare_sinks(["hook"])
    for result in NOTIFICATION_RESULTS:
        assert sample(metrics, "notifications_total", sink="hook", result=result) == 0
    for result in ATTEMPT_RESULTS:
        assert sample(metrics, "notification_attempts_total", sink="hook", result=result) == 0
    assert sample(metrics, "notifications_total", sink="hook", result="retry") is None
    assert "retry" not in NOTIFICATION_RESULTS
    assert "expired" not in ATTEMPT_RESULTS


# --------------------------------------------------------------------------- notifications


@pytest.mark.parametrize(
    ("events", "notifications", "attempts"),
    [
        pytest.param(["delivered"], {"delivered": 1}, {"delivered": 1}, id="first-try"),
        pytest.param(
            ["retry", "retry", "delivered"],
            {"delivered": 1},
            {"retry": 2, "delivered": 1},
            id="retried-then-delivered",
        ),
        pytest.param(["retry", "failed"], {"failed": 1}, {"retry": 1, "failed": 1}, id="4xx"),
        pytest.param(["retry", "retry", "expired"], {"expired": 1}, {"retry": 2}, id="expired"),
        pytest.param(["retry"], {}, {"retry": 1}, id="still-pending"),
    ],
)
def test_a_notification_counts_once_at_its_outcome_and_each_attempt_apart(
    events: list[str], notifications: dict[str, int], attempts: dict[str, int]
) -> None:
    """``notifications_total`` counts each notification once, at its end (delivered, failed,
    expired); ``notification_attempts_total`` counts every attempt (delivered, retry, failed).
    An expiry is no attempt; a retry is no end."""
    metrics = Metrics()
    metrics.declare_sinks(["hook"])
    for event in events:
        metrics.notification("hook", event)
    for result in NOTIFICATION_RESULTS:
        got = sample(metrics, "notifications_total", sink="hook", result=result)
        assert got == notifications.get(result, 0), result
    for result in ATTEMPT_RESULTS:
        got = sample(metrics, "notification_attempts_total", sink="hook", result=result)
        assert got == attempts.get(result, 0), result


def test_an_unknown_result_is_refused() -> None:
    """A result that is neither an attempt's nor an outcome is a programming error, not a
    silently dropped count."""
    with pytest.raises(ValueError, match="'lost'"):
        Metrics().notification("hook", "lost")


def delivery(store: Store, sink: RecordingSink, clock: ManualTime, metrics: Metrics) -> Delivery:
    config = DeliveryConfig.model_validate(
        {"max_age": "1h", "initial_backoff": "2s", "max_backoff": "5m"}
    )
    return Delivery(
        store,
        {sink.name: sink},
        config,
        clock=clock,
        rand=lambda: 1.0,
        on_result=metrics.notification,
    )


async def test_a_notification_retried_until_delivered_is_one_notification_and_three_attempts(
    store: Store,
) -> None:
    """Two 503s and then a 2xx: one notification delivered, three attempts (two retried)."""
    clock, metrics, sink = ManualTime(EPOCH), Metrics(), RecordingSink("hook")
    metrics.declare_sinks([sink.name])
    sink.fail_next(2, retryable=True, status=503)
    await queue_notification(store, "default", notification("n1"), ["hook"], EPOCH)
    worker = delivery(store, sink, clock, metrics)
    for _ in range(3):
        await worker.drain(clock() + 1)
        clock.advance(60)

    assert sink.ids == ["n1"]
    assert len(sink.attempts) == 3
    assert sample(metrics, "notifications_total", sink="hook", result="delivered") == 1
    assert sample(metrics, "notification_attempts_total", sink="hook", result="retry") == 2
    assert sample(metrics, "notification_attempts_total", sink="hook", result="delivered") == 1


async def test_an_expired_notification_counts_as_one_notification_and_no_attempt(
    store: Store,
) -> None:
    """A notification retried past ``max_age`` ends ``expired``: one notification, and only
    the attempts that were made."""
    clock, metrics, sink = ManualTime(EPOCH), Metrics(), RecordingSink("hook")
    sink.fail_next(-1, retryable=True, status=503)
    await queue_notification(store, "default", notification("n1"), ["hook"], EPOCH)
    worker = delivery(store, sink, clock, metrics)
    await worker.drain(clock() + 1)
    clock.advance(timedelta(hours=2))
    await worker.drain(clock() + 1)

    assert len(sink.attempts) == 1
    assert sample(metrics, "notifications_total", sink="hook", result="expired") == 1
    assert sample(metrics, "notification_attempts_total", sink="hook", result="retry") == 1
    assert sample(metrics, "notifications_total", sink="hook", result="delivered") is None


# --------------------------------------------------------------------------- missed polls


def et(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Wall time in New York in 2026 (2026-11-20 is a Friday)."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=ET)


MARKET = {"interval": "15s", "off_hours_interval": "10m", "market_hours": "us-equities"}
NIGHTLY_CRON = {"cron": "*/2 4-19 * * mon-fri"}


@pytest.mark.parametrize(
    ("config", "last_success", "now", "expected"),
    [
        pytest.param(MARKET, et(11, 18, 22, 10), et(11, 18, 22, 19, 59), 0, id="off-hours-wait"),
        pytest.param(MARKET, et(11, 18, 22, 10), et(11, 18, 22, 20, 1), 1, id="off-hours-due"),
        pytest.param(MARKET, et(11, 18, 22, 10), et(11, 18, 22, 45), 3, id="off-hours-stall"),
        pytest.param(MARKET, et(11, 18, 12, 0), et(11, 18, 12, 0, 50), 3, id="session-stall"),
        pytest.param(MARKET, et(11, 21, 2, 50), et(11, 21, 2, 59, 59), 0, id="weekend-wait"),
        pytest.param(NIGHTLY_CRON, et(11, 18, 19, 58), et(11, 19, 3, 59), 0, id="cron-night"),
        pytest.param(NIGHTLY_CRON, et(11, 18, 19, 58), et(11, 19, 4, 5), 3, id="cron-morning"),
        pytest.param(
            {"interval": "1s"}, et(11, 1, 0), et(11, 8, 0), MISSED_POLLS_LIMIT, id="capped"
        ),
    ],
)
def test_missed_since_success_counts_scheduled_polls_not_seconds(
    config: dict[str, Any], last_success: datetime, now: datetime, expected: int
) -> None:
    """Off hours a long wait between 10-minute polls, or a cron line's quiet night, misses no
    poll; a stall misses one per scheduled poll, counted up to the limit."""
    trigger = make_trigger(ScheduleConfig.model_validate(config))
    scheduled_at = et(10, 1, 0)
    assert missed_since_success(trigger, last_success, scheduled_at, now) == expected


def test_missed_since_success_counts_from_the_first_schedule_without_a_success() -> None:
    """A source that never polled successfully counts the polls scheduled since it was first
    scheduled (its first poll, at once, is not one of them)."""
    trigger = make_trigger(ScheduleConfig.model_validate({"interval": "1m"}))
    start = et(11, 18, 12, 0)
    assert missed_since_success(trigger, None, start, start + timedelta(seconds=59)) == 0
    assert missed_since_success(trigger, None, start, start + timedelta(minutes=3)) == 3


@settings(max_examples=150, deadline=None)
@given(
    interval=st.sampled_from([1, 15, 60, 300]),
    slower=st.sampled_from([1, 2, 40, 240, 5760]),
    start=st.integers(0, 366 * 86400),
    last=st.integers(0, 4),
    delay=st.floats(0, 0.999),
    later=st.floats(0, 1),
)
def test_missed_polls_of_a_market_hours_source_are_never_overcounted(
    *, interval: int, slower: int, start: int, last: int, delay: float, later: float
) -> None:
    """Whatever the market-hours schedule (off hours as slow or slower than in session), the day
    (weekends, DST changes) and the moment: with the last successful poll started up to a
    second after it was due, the count is the number of polls the scheduler really fired
    since, or one fewer (a poll due within that second); never more, so a healthy source
    waiting for its next poll is never counted late."""
    trigger = make_trigger(
        ScheduleConfig.model_validate(
            {
                "interval": f"{interval}s",
                "off_hours_interval": f"{min(interval * slower, 86400)}s",  # at most 1d
                "market_hours": "us-equities",
                "holidays": ["2026-11-26"],
            }
        )
    )
    fires = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=start)]
    for _ in range(last + 12):
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1]))
    success = fires[last] + timedelta(seconds=min(delay, interval / 2))
    now = success + (fires[-1] - success) * later
    fired = bisect_right(fires, now) - (last + 1)
    missed = missed_since_success(trigger, success, fires[0], now)
    assert fired - 1 <= missed <= fired
    if now < fires[last + 1]:
        assert missed == 0


def test_set_schedule_exports_missed_and_next_polls_and_drops_removed_sources() -> None:
    """Each source's missed polls and next poll time are exported; a source no longer
    configured (after a reload) loses its series instead of keeping a stale value."""
    metrics = Metrics()
    metrics.set_schedule({"default": 0, "fund": 4}, {"default": 1000.0, "fund": 1015.0})
    assert sample(metrics, "missed_polls", source="fund") == 4
    assert sample(metrics, "missed_polls", source="default") == 0
    assert sample(metrics, "next_poll_timestamp_seconds", source="fund") == 1015.0

    metrics.set_schedule({"default": 1}, {"default": 1030.0})
    assert sample(metrics, "missed_polls", source="default") == 1
    assert sample(metrics, "next_poll_timestamp_seconds", source="default") == 1030.0
    assert sample(metrics, "missed_polls", source="fund") is None
    assert sample(metrics, "next_poll_timestamp_seconds", source="fund") is None


# --------------------------------------------------------------------------- process


def test_process_metrics_are_in_our_own_registry() -> None:
    """The process collector (CPU, memory, file descriptors, start time) reports into the
    monitor's registry, and two instances still never collide."""
    first, second = Metrics(), Metrics()
    for metrics in (first, second):
        assert metrics.registry.get_sample_value("process_resident_memory_bytes", {})
        assert metrics.registry.get_sample_value("process_start_time_seconds", {})
        assert metrics.registry.get_sample_value("process_open_fds", {})
