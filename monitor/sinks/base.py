"""The Sink protocol every notifier implements, and the helpers they share.

A sink delivers one :class:`~monitor.models.Notification` per ``send`` call. It returns on
success and raises :class:`~monitor.errors.SinkError` otherwise; ``SinkError.retryable`` says
whether the delivery loop should try again (connection errors, timeouts, 5xx, 429) or give up
(other 4xx). Sinks never log or raise their URL or secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from monitor.models import Notification


@runtime_checkable
class Sink(Protocol):
    """Something that can deliver notifications."""

    @property
    def name(self) -> str:
        """The sink's name from the config (``[[sinks]] name``)."""
        ...

    async def send(self, notification: Notification) -> None:
        """Deliver one notification or raise ``SinkError``."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds (the shared HTTP session is not the sink's to close)."""
        ...


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that can put several notifications in one message (chat and email sinks).

    With ``group_window`` set, the delivery loop waits that long after the oldest pending
    notification of the sink and hands over everything queued by then in one call.
    """

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        """Deliver these notifications (in order, at least one) as one message, or raise
        ``SinkError``; on an error none of them counts as delivered."""
        ...
