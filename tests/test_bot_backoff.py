"""The bot's waits after a failed Bot API call (:mod:`monitor.bot_backoff`), pure: one table."""

from __future__ import annotations

import pytest

from monitor.bot_backoff import Failure, after_failure, backoff


@pytest.mark.parametrize(
    ("status", "retry_after", "failures", "jitter", "expected"),
    [
        (None, None, 1, 1.0, (Failure.FAILED, 1.0)),  # a connection error, a timeout
        (502, None, 2, 1.0, (Failure.FAILED, 2.0)),
        (500, None, 3, 0.0, (Failure.FAILED, 2.0)),  # 4 s, times 0.5 to 1
        (500, None, 7, 1.0, (Failure.FAILED, 60.0)),  # 64 s: at most a minute
        (500, None, 1000, 1.0, (Failure.FAILED, 60.0)),
        (409, None, 1, 1.0, (Failure.CONFLICT, 60.0)),
        (409, None, 1, 0.0, (Failure.CONFLICT, 30.0)),
        (401, None, 1, 1.0, (Failure.UNAUTHORIZED, 600.0)),  # a wrong token: no point soon
        (404, None, 9, 0.0, (Failure.UNAUTHORIZED, 300.0)),  # a token cut short, no Bot API
        (429, 7.0, 1, 1.0, (Failure.RATE_LIMITED, 7.0)),
        (429, 86400.0, 1, 1.0, (Failure.RATE_LIMITED, 300.0)),  # hours after a flood: capped
        (429, -3.0, 1, 1.0, (Failure.RATE_LIMITED, 0.0)),
        (429, float("nan"), 1, 1.0, (Failure.RATE_LIMITED, 300.0)),
        (429, float("inf"), 1, 1.0, (Failure.RATE_LIMITED, 300.0)),
        (400, 5.0, 1, 1.0, (Failure.RATE_LIMITED, 5.0)),  # retry_after says it, whatever code
    ],
)
def test_after_failure(
    status: int | None,
    retry_after: float | None,
    failures: int,
    jitter: float,
    expected: tuple[Failure, float],
) -> None:
    assert after_failure(status, retry_after, failures, jitter) == expected


def test_backoff_doubles_from_one_second_to_a_minute() -> None:
    assert [backoff(n, 1.0) for n in range(9)] == [1, 1, 2, 4, 8, 16, 32, 60, 60]
