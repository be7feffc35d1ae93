"""``[[digests]]``: each mistake is one problem naming its key."""

from __future__ import annotations

from datetime import time

import pytest
from config_helpers import BASE_DIR, alertmanager, config, pagerduty, problems, webhook

from monitor.config import config_from_dict


def digest(**fields: object) -> dict[str, object]:
    return {"name": "close", "at": "16:15", "sinks": ["ops"], **fields}


def test_a_digest_has_defaults_an_operator_expects() -> None:
    """Every day, no holiday skipping, every account of every source, the schedule's zone."""
    loaded = config_from_dict(config(digests=[digest()]), base_dir=BASE_DIR)
    [d] = loaded.digests
    assert (d.days, d.market_days, d.accounts, d.sources) == (
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        False,
        ("*",),
        None,
    )
    assert loaded.digest_timezone(d) == "America/New_York"
    assert d.clock == time(16, 15)
    assert loaded.digest("close") is d
    assert loaded.digest("other") is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"at": "4pm"}, "digests[0] (close).at: must be a time like '16:15' (24-hour HH:MM)"),
        ({"at": "24:00"}, "digests[0] (close).at: must be a time like '16:15' (24-hour HH:MM)"),
        (
            {"timezone": "Mars/Olympus"},
            "digests[0] (close).timezone: unknown time zone 'Mars/Olympus'",
        ),
        ({"days": ["mon", "xyz"]}, "digests[0] (close).days[1]"),
        ({"days": []}, "digests[0] (close).days: must not be empty"),
        ({"sinks": []}, "digests[0] (close).sinks"),
        ({"sinks": ["nope"]}, "digests[0] (close).sinks: unknown sink 'nope'"),
        ({"sources": ["nope"]}, "digests[0] (close).sources: unknown source 'nope'"),
        ({"colour": "red"}, "digests[0] (close).colour"),
    ],
)
def test_a_bad_digest_key_is_named(fields: dict[str, object], problem: str) -> None:
    found = problems(config(digests=[digest(**fields)]))
    assert len(found) == 1, found
    assert found[0].startswith(problem), found


def test_digest_names_are_unique() -> None:
    found = problems(config(digests=[digest(), digest(at="09:00")]))
    assert found == ["digests[1] (close).name: duplicate digest name 'close'"]


@pytest.mark.parametrize("sink", [alertmanager(), pagerduty()])
def test_an_alert_api_cannot_carry_a_digest(sink: dict[str, object]) -> None:
    """PagerDuty and Alertmanager open incidents and alerts, not messages: a config error."""
    data = config(sinks=[webhook(), sink], digests=[digest(sinks=["ops", sink["name"]])])
    [problem] = problems(data)
    assert problem == (
        f"digests[0] (close).sinks: sink '{sink['name']}' ({sink['type']}) is an alert API"
        " and cannot carry a digest"
    )
