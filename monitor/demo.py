"""``balance-monitor demo``: the simulator, five rules of the example configuration, and a console
that tells what happens one line per notification.

The rules are read from the packaged ``config.example.toml`` (:mod:`monitor.example`), so the
demo shows what the example does, less what would hide the story in a 24-second cycle: account,
source and sink filters, ``for`` and ``repeat``. The banner describes the config it runs.

On the console, the log sink's ``notification`` event is one line (time, status, severity,
rule, summary) and the log lines that repeat it (``alert_firing``, ``alert_resolved``,
``notification_delivered``) are left out; every other event is structlog's console line. This is
the demo's own rendering: ``run`` logs the same events, with every field, as before.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from monitor import logs
from monitor.config import (
    ChangeRuleConfig,
    Config,
    ExpressionRuleConfig,
    RestrictionChangeRuleConfig,
    RuleConfig,
    ThresholdRuleConfig,
    config_from_dict,
    format_duration,
)
from monitor.config.root import plural
from monitor.example import example_config
from monitor.simulator import CYCLE, DEMO_TOKEN

#: The example's rules the demo runs, in the order the banner lists them.
RULES: Final = (
    "restriction-changed",
    "low-cash-to-withdraw",
    "pdt-risk",
    "daytrades-high",
    "margin-type-changed",
)
#: Rule keys left out: they would keep the story's alerts from firing within one cycle.
HIDDEN: Final = frozenset({"accounts", "sources", "sinks", "for", "repeat"})
#: Log events that say again what a notification line says.
REPEATS: Final = frozenset({"alert_firing", "alert_resolved", "notification_delivered"})

_RESET: Final = "\x1b[0m"
_COLOURS: Final = {
    ("firing", "critical"): "\x1b[1;31m",
    ("firing", "warning"): "\x1b[33m",
    ("firing", "info"): "\x1b[36m",
}
_RESOLVED: Final = "\x1b[32m"


def demo_rules() -> list[dict[str, Any]]:
    """The :data:`RULES` of the packaged example configuration, without the :data:`HIDDEN`
    keys."""
    rules = {rule["name"]: rule for rule in tomllib.loads(example_config().decode())["rules"]}
    return [{k: v for k, v in rules[name].items() if k not in HIDDEN} for name in RULES]


#: With the stream, the demo polls this often, to reconcile (the pushes tell the story).
STREAM_POLLS: Final = "1m"


def demo_config(
    url: str,
    state_dir: Path,
    interval: str,
    *,
    stream: bool = False,
    listen: str | None = None,
    digest_at: datetime | None = None,
) -> Config:
    """The simulator at ``url``, the example's rules, a console sink, state in ``state_dir``;
    the dashboard on ``listen`` (``127.0.0.1:port``) when given; a digest ``demo`` to the
    console at ``digest_at`` (UTC) when given.

    ``stream``: the account stream is on and the simulator's account changes every
    ``interval`` by itself; polls come every :data:`STREAM_POLLS` only, to reconcile."""
    api: dict[str, Any] = {"url": url, "token": DEMO_TOKEN, "timeout": "5s", "down_after": 3}
    if stream:
        api["stream"] = True
    data: dict[str, Any] = {
        "api": api,
        "schedule": {"interval": STREAM_POLLS if stream else interval},
        "state": {"path": str(state_dir / "demo.db")},
        "log": {"level": "info", "format": "console"},
        "sinks": [{"name": "console", "type": "log", "level": "warning"}],
        "rules": demo_rules(),
    }
    if listen is not None:
        data["http"] = {"listen": listen}
    if digest_at is not None:
        at = digest_at.astimezone(UTC).strftime("%H:%M:%S")
        data["digests"] = [{"name": "demo", "at": at, "timezone": "UTC", "sinks": ["console"]}]
    return config_from_dict(data, base_dir=state_dir, origin="demo")


def banner(config: Config, url: str, step: timedelta | None = None) -> str:
    """What the demo runs: the API, the schedule and each rule of ``config``; ``step`` is how
    often the simulated account changes when it streams (else once per poll)."""
    polled = config.schedule.interval
    every = step if step is not None else polled
    width = max((len(rule.name) for rule in config.rules), default=0)
    sinks = ", ".join(sink.name for sink in config.sinks)
    if config.all_sources()[0].config.stream:
        how = (
            f"streaming: the account changes every {format_duration(every)} and each change "
            f"is pushed and seen at once (polled every {format_duration(polled)} to reconcile)."
        )
    else:
        how = f"polled every {format_duration(polled)}."
    return "\n".join(
        [
            f"balance-monitor demo: a simulated balances API at {url}, {how}",
            f"{plural(len(config.rules), 'rule')} of config.example.toml, notifying {sinks}:",
            *(
                f"  {rule.name:<{width}}  {rule.severity.value:<8}  {_condition(rule)}"
                for rule in config.rules
            ),
            f"Account 12345678@vision trips them in a story of {CYCLE} steps "
            f"({format_duration(CYCLE * every)}), then starts again; the README tells it.",
            *(
                [f"Dashboard: http://{config.http.listen}/"]
                if config.http.listen is not None
                else []
            ),
            *([f"A digest of the accounts and alerts at {d.at} UTC." for d in config.digests]),
            "One line per notification below. Press Ctrl-C to stop.",
        ]
    )


def _condition(rule: RuleConfig) -> str:
    """What a rule watches, in a few words."""
    if isinstance(rule, ThresholdRuleConfig):
        clear = f" (resolves at {rule.clear})" if rule.clear is not None else ""
        return f"{rule.field} {rule.op} {rule.value}{clear}"
    if isinstance(rule, ExpressionRuleConfig):
        return rule.when
    if isinstance(rule, ChangeRuleConfig):
        return f"{rule.field} changes"
    if isinstance(rule, RestrictionChangeRuleConfig):
        return "restriction changes, either way"
    return rule.type


class StoryRenderer:
    """The demo's console: a notification as one line, any other event as structlog's console
    line; both with the local time of day instead of the full UTC timestamp."""

    def __init__(self, *, colors: bool, width: int = 0) -> None:
        from monitor.sinks.log import EVENT  # a sink module loads when a sink is used (registry)

        self._event = EVENT
        self._colors = colors
        self._width = width
        self._console = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        event_dict["timestamp"] = _time_of_day(event_dict.get("timestamp"))
        if event_dict.get("event") == "digest" and isinstance(event_dict.get("text"), str):
            return self.digest(event_dict)
        if event_dict.get("event") != self._event:
            rendered: str = self._console(logger, name, event_dict)
            return rendered
        return self.notification(event_dict)

    def digest(self, event: Mapping[str, Any]) -> str:
        """The log sink's digest: its text, each line indented under the time of day."""
        lines = [_one_line(line) for line in str(event["text"]).splitlines()]
        first = f"{event['timestamp']} DIGEST   {lines[0] if lines else ''}"
        return "\n".join([first, *(f"  {line}" for line in lines[1:])])

    def notification(self, event: Mapping[str, Any]) -> str:
        status, severity = str(event.get("status")), str(event.get("severity"))
        word = f"{status.upper():<8}"
        if self._colors:
            colour = _RESOLVED if status == "resolved" else _COLOURS.get((status, severity), "")
            word = f"{colour}{word}{_RESET}"
        rule = f"{_one_line(str(event.get('rule'))):<{self._width}}"
        summary = _one_line(str(event.get("summary")))
        return f"{event['timestamp']} {word} {_one_line(severity):<8} {rule}  {summary}"


def _one_line(text: str) -> str:
    """``text`` with what would break the line or the terminal (line breaks, control
    characters) written as escapes: a summary with a newline stays one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _time_of_day(stamp: object) -> object:
    """``2026-11-23T21:09:17.517723Z`` as ``22:09:17`` on a machine in Paris."""
    if not isinstance(stamp, str):
        return stamp
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return stamp


def _drop_repeats(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    if event_dict.get("event") in REPEATS:
        raise structlog.DropEvent
    return event_dict


def configure_logging(stream: TextIO | None = None, *, width: int = 0) -> None:
    """Info and above to ``stream`` (standard error) through :class:`StoryRenderer`, the rule
    column ``width`` characters wide; the events that repeat a notification left out."""
    out = stream if stream is not None else sys.stderr
    logs.configure(
        "info", "console", out, console=StoryRenderer(colors=logs.colours(out), width=width)
    )
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[_drop_repeats, *processors])
