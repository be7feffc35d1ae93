"""Properties of the demo's console (hypothesis; skipped where it is not installed)."""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.demo import StoryRenderer


@settings(max_examples=300, deadline=None)
@given(
    summary=st.text(),
    rule=st.text(),
    status=st.sampled_from(["firing", "resolved"]),
    severity=st.sampled_from(["info", "warning", "critical"]),
    colors=st.booleans(),
)
def test_a_notification_is_always_one_line(
    summary: str, rule: str, status: str, severity: str, colors: bool
) -> None:
    """Whatever a summary or a rule name holds (a template's line break, a control character
    from the API), the notification is one console line: nothing it prints starts another."""
    line = StoryRenderer(colors=colors, width=20).notification(
        {
            "timestamp": "12:00:00",
            "status": status,
            "severity": severity,
            "rule": rule,
            "summary": summary,
        }
    )

    assert len(line.splitlines()) == 1
    assert line.startswith("12:00:00 ")
