"""Prometheus metrics of the monitor itself, in a registry of its own (never the global one).

Names follow the Prometheus conventions: ``balance_monitor_`` prefix, base units, ``_total``
for counters, ``_seconds`` for durations and timestamps.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
NOTIFICATION_RESULTS = ("delivered", "retry", "failed", "expired")


class Metrics:
    """Every metric the daemon exports; one instance per process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter(
            "balance_monitor_polls",
            "Polls of a balances source, by result (ok or failed).",
            ["source", "result"],
            registry=r,
        )
        self.poll_duration = Histogram(
            "balance_monitor_poll_duration_seconds",
            "Time one poll takes: fetch, parse, diff, rules and the state commit.",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.accounts = Gauge(
            "balance_monitor_accounts",
            "Accounts in the last successful poll of a source.",
            ["source"],
            registry=r,
        )
        self.alerts_firing = Gauge(
            "balance_monitor_alerts_firing",
            "Alerts firing now, by rule and severity.",
            ["rule", "severity"],
            registry=r,
        )
        self.notifications = Counter(
            "balance_monitor_notifications",
            "Delivery attempts by sink and result (delivered, retry, failed, expired).",
            ["sink", "result"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "balance_monitor_outbox_pending",
            "Notifications queued in the outbox and not yet delivered.",
            registry=r,
        )
        self.last_success = Gauge(
            "balance_monitor_last_success_timestamp_seconds",
            "Unix time of the last successful poll of a source.",
            ["source"],
            registry=r,
        )
        self.build = Info("balance_monitor_build", "Version of balance-monitor.", registry=r)
        self.build.info({"version": __version__})
        self._firing_labels: set[tuple[str, str]] = set()

    def observe_poll(
        self, source: str, *, ok: bool, duration: float, accounts: int | None, at: float
    ) -> None:
        """Count one poll; ``at`` is the source's last success (0: never), failed or not.

        A failed poll sets it too: after a restart with the source down, the last success
        known to the state database is exported (an absent series never trips an alert).
        """
        self.polls.labels(source=source, result="ok" if ok else "failed").inc()
        self.poll_duration.labels(source=source).observe(duration)
        self.last_success.labels(source=source).set(at)
        if ok and accounts is not None:
            self.accounts.labels(source=source).set(accounts)

    def set_firing(self, alerts: Iterable[tuple[str, str]]) -> None:
        """Replace the firing gauge with (rule, severity) pairs; absent pairs drop to 0."""
        counts = Tally(alerts)
        for labels in self._firing_labels - set(counts):
            self.alerts_firing.labels(*labels).set(0)
        for (rule, severity), n in counts.items():
            self.alerts_firing.labels(rule=rule, severity=severity).set(n)
        self._firing_labels |= set(counts)

    def notification(self, sink: str, result: str) -> None:
        self.notifications.labels(sink=sink, result=result).inc()

    def declare_sinks(self, sinks: Iterable[str]) -> None:
        """Create every (sink, result) series at 0 so rates work from the first scrape."""
        for sink in sinks:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(sink=sink, result=result)

    def render(self) -> bytes:
        return generate_latest(self.registry)
