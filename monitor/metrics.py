"""Prometheus metrics of the monitor itself, in a registry of its own (never the global one).

Names follow the Prometheus conventions: ``balance_monitor_`` prefix, base units, ``_total``
for counters, ``_seconds`` for durations and timestamps. The registry also holds the client
library's process collector (``process_*``: CPU, memory, file descriptors, start time).

Delivery is counted twice over: ``notifications_total`` once per notification and sink, at its
end (delivered, failed, expired), and ``notification_attempts_total`` once per attempt to send
it (delivered, retry, failed).
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from monitor import __version__

#: How a notification ended at a sink: ``balance_monitor_notifications_total{result}``.
NOTIFICATION_RESULTS = ("delivered", "failed", "expired")
#: How one attempt to send it ended: ``balance_monitor_notification_attempts_total{result}``.
ATTEMPT_RESULTS = ("delivered", "retry", "failed")
POLL_RESULTS = ("ok", "failed")
#: The ``type`` label of ``balance_monitor_stream_messages_total``: Lime's message types
#: (balances, error, positions, orders, trades); any other counts as ``other``, a message that
#: is not JSON with a type as ``invalid`` (a label's values must stay few).
STREAM_TYPES = ("b", "e", "p", "o", "t", "other", "invalid")
#: Why a lease changed hands: ``balance_monitor_lease_changes_total{reason}``.
LEASE_REASONS = ("new", "takeover", "released", "rebalanced", "handover", "lost")
#: How the Telegram bot handled an update: ``balance_monitor_bot_updates_total{outcome}``
#: (answered; refused: a state change from a non-admin; stale: sent while nothing listened;
#: ignored: no command of this bot; unknown_chat: not an allowed chat; failed: a bug).
BOT_OUTCOMES = ("answered", "refused", "stale", "ignored", "unknown_chat", "failed")
#: ``balance_monitor_missed_polls`` counts up to this many (a stall of days costs no more).
MISSED_POLLS_LIMIT = 100


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
        self.alerts_pending = Gauge(
            "balance_monitor_alerts_pending",
            "Alerts whose condition holds but not yet for the rule's `for`, by rule.",
            ["rule"],
            registry=r,
        )
        self.notifications_held = Gauge(
            "balance_monitor_notifications_held",
            "Notifications held by [[mute]] windows and silences, sent or settled when they end.",
            registry=r,
        )
        self.silences_active = Gauge(
            "balance_monitor_silences_active",
            "Silences in force now (balance-monitor silence add, POST /api/v1/silences).",
            registry=r,
        )
        self.heartbeats = Counter(
            "balance_monitor_heartbeats_total",
            "Heartbeat pings by result: ok, failed, or skipped (the monitor was not healthy).",
            ["result"],
            registry=r,
        )
        self.mute_active = Gauge(
            "balance_monitor_mute_active",
            "1 while a [[mute]] window is open, else 0.",
            ["mute"],
            registry=r,
        )
        self.notifications = Counter(
            "balance_monitor_notifications",
            "Notifications by sink and how they ended (delivered, failed, expired), each once.",
            ["sink", "result"],
            registry=r,
        )
        self.attempts = Counter(
            "balance_monitor_notification_attempts",
            "Attempts to send a notification, by sink and result (delivered, retry, failed).",
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
        self.missed_polls = Gauge(
            "balance_monitor_missed_polls",
            "Scheduled polls of a source since its last successful poll (since it was first "
            f"scheduled if none yet), counted up to {MISSED_POLLS_LIMIT}.",
            ["source"],
            registry=r,
        )
        self.next_poll = Gauge(
            "balance_monitor_next_poll_timestamp_seconds",
            "Unix time of the next scheduled poll of a source.",
            ["source"],
            registry=r,
        )
        self.stream_connected = Gauge(
            "balance_monitor_stream_connected",
            "1 while a source's account stream (WebSocket) is connected, else 0.",
            ["source"],
            registry=r,
        )
        self.stream_messages = Counter(
            "balance_monitor_stream_messages",
            "Messages received on a source's account stream, by type (b balances, e error, "
            "p, o, t, other, invalid).",
            ["source", "type"],
            registry=r,
        )
        self.stream_reconnects = Counter(
            "balance_monitor_stream_reconnects",
            "Times a source's account stream ended or could not connect (each is followed by a "
            "new connection).",
            ["source"],
            registry=r,
        )
        self.sources_owned = Gauge(
            "balance_monitor_sources_owned",
            "Sources this replica holds the lease of and polls (every source on SQLite).",
            registry=r,
        )
        self.lease_changes = Counter(
            "balance_monitor_lease_changes",
            "Leases this replica took or gave up, by reason (new, takeover, released: taken;"
            " rebalanced, handover: given up; lost: another replica holds it now).",
            ["reason"],
            registry=r,
        )
        self.bot_updates = Counter(
            "balance_monitor_bot_updates",
            "Updates the Telegram bot of a sink (commands = true) handled, by outcome"
            " (answered, refused, stale, ignored, unknown_chat, failed).",
            ["sink", "outcome"],
            registry=r,
        )
        self.bot_up = Gauge(
            "balance_monitor_bot_up",
            "1 while the Telegram bot's last getUpdates succeeded, else 0 (absent on a standby"
            " replica: only the one doing the singleton work long-polls).",
            ["sink"],
            registry=r,
        )
        self.replica = Info(
            "balance_monitor_replica",
            "This replica: its name and its state backend (sqlite or postgresql).",
            registry=r,
        )
        ProcessCollector(registry=r)
        self.build = Info("balance_monitor_build", "Version of balance-monitor.", registry=r)
        self.build.info({"version": __version__})
        #: The label sets each labelled gauge has had, so that absent ones are set to 0.
        self._seen: dict[Gauge, set[tuple[str, ...]]] = {}

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
        self._set_counts(self.alerts_firing, Tally(alerts))

    def set_pending(self, rules: Iterable[str]) -> None:
        """Replace the pending gauge with one entry per pending alert's rule."""
        self._set_counts(self.alerts_pending, Tally((rule,) for rule in rules))

    def set_mutes(self, mutes: Iterable[tuple[str, bool]], held: int) -> None:
        """Each configured mute window (name, open now), and the notifications held."""
        self._set_counts(self.mute_active, {(name,): int(is_open) for name, is_open in mutes})
        self.notifications_held.set(held)

    def _set_counts(self, gauge: Gauge, counts: Mapping[tuple[str, ...], int]) -> None:
        """Set a labelled gauge to ``counts``; label sets seen before and absent now are 0."""
        seen = self._seen.setdefault(gauge, set())
        for labels in seen - set(counts):
            gauge.labels(*labels).set(0)
        for labels, n in counts.items():
            gauge.labels(*labels).set(n)
        seen |= set(counts)

    def notification(self, sink: str, result: str) -> None:
        """One delivery event of one notification: an attempt's result (delivered, retry,
        failed) or its expiry. A delivered or failed attempt also ends the notification."""
        if result not in ATTEMPT_RESULTS and result not in NOTIFICATION_RESULTS:
            raise ValueError(f"unknown delivery result {result!r}")
        if result in ATTEMPT_RESULTS:
            self.attempts.labels(sink=sink, result=result).inc()
        if result in NOTIFICATION_RESULTS:
            self.notifications.labels(sink=sink, result=result).inc()

    def declare_sinks(self, sinks: Iterable[str]) -> None:
        """Create every (sink, result) series at 0 so rates work from the first scrape."""
        for sink in sinks:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(sink=sink, result=result)
            for result in ATTEMPT_RESULTS:
                self.attempts.labels(sink=sink, result=result)

    def declare_sources(self, sources: Iterable[str]) -> None:
        """Create every (source, result) poll series at 0: ``rate(...{result="failed"})`` is 0,
        not absent, before the first failure."""
        for source in sources:
            for result in POLL_RESULTS:
                self.polls.labels(source=source, result=result)

    def stream_message(self, source: str, kind: str) -> None:
        """Count one message of ``source``'s account stream (an unknown type as ``other``)."""
        label = kind if kind in STREAM_TYPES else "other"
        self.stream_messages.labels(source=source, type=label).inc()

    def declare_stream(self, source: str) -> None:
        """Create the stream series of ``source`` at 0 (disconnected, nothing received)."""
        self.stream_connected.labels(source=source).set(0)
        self.stream_reconnects.labels(source=source)
        for kind in STREAM_TYPES:
            self.stream_messages.labels(source=source, type=kind)

    def set_stream(self, source: str, *, connected: bool, ended: int = 0) -> None:
        """The stream's connection now, and how many connections ended since the last call."""
        self.stream_connected.labels(source=source).set(int(connected))
        if ended > 0:
            self.stream_reconnects.labels(source=source).inc(ended)

    def forget_stream(self, source: str) -> None:
        """``source`` streams no more (a reload turned it off or removed it)."""
        for metric in (self.stream_connected, self.stream_reconnects):
            with contextlib.suppress(KeyError):
                metric.remove(source)
        for kind in STREAM_TYPES:
            with contextlib.suppress(KeyError):
                self.stream_messages.remove(source, kind)

    def set_schedule(self, missed: Mapping[str, int], next_polls: Mapping[str, float]) -> None:
        """Each source's missed polls and next poll (Unix time); sources absent from a mapping
        lose their series (removed by a reload, or not scheduled)."""
        _replace(self.missed_polls, missed)
        _replace(self.next_poll, next_polls)

    def declare_bot(self, sink: str) -> None:
        """The bot of ``sink``: down until its first ``getUpdates``, every outcome at 0."""
        self.bot_up.labels(sink=sink).set(0)
        for outcome in BOT_OUTCOMES:
            self.bot_updates.labels(sink=sink, outcome=outcome)

    def forget_bot_up(self, sink: str) -> None:
        """The bot of ``sink`` does not long-poll here (a standby replica): no up or down."""
        with contextlib.suppress(KeyError):
            self.bot_up.remove(sink)

    def bot_update(self, sink: str, outcome: str) -> None:
        """Count one update the bot of ``sink`` handled."""
        if outcome not in BOT_OUTCOMES:
            raise ValueError(f"unknown bot outcome {outcome!r}")
        self.bot_updates.labels(sink=sink, outcome=outcome).inc()

    def declare_replica(self, name: str, backend: str) -> None:
        """This replica's info series, and every lease-change reason at 0."""
        self.replica.info({"replica": name, "backend": backend})
        for reason in LEASE_REASONS:
            self.lease_changes.labels(reason=reason)

    def render(self) -> bytes:
        """The Prometheus text format (``/metrics`` negotiates; this is for tests and tools)."""
        return generate_latest(self.registry)


def _replace(gauge: Gauge, values: Mapping[str, float]) -> None:
    """Set a gauge labelled by source to exactly ``values`` (synchronous: no scrape sees it
    half done)."""
    gauge.clear()
    for source, value in values.items():
        gauge.labels(source=source).set(value)
