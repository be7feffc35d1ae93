"""Test fakes that satisfy balance-monitor's protocols, so tests need no patching.

In the spirit of ``structlog.testing`` and httpx's ``MockTransport``:

* :class:`RecordingSink` is a :class:`~monitor.sinks.base.Sink` that records what it is sent and
  can be told to fail the next sends (``SinkError`` retryable or not, or any exception);
* :class:`RecordingBatchSink` is also a :class:`~monitor.sinks.base.BatchSink` (``batches``
  holds each ``send_batch`` call); :class:`RestoringSink` records what ``restore`` handed it;
* :class:`FakeFetcher` is a :class:`~monitor.pipeline.Fetcher` that answers from a queue of
  bodies and errors;
* :class:`ManualClock` (``datetime``) and :class:`ManualTime` (``time.time()`` floats) are clocks
  that move only when told to.

Nothing here does network or disk I/O, and nothing reads the real clock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from monitor import encoding
from monitor.errors import SinkError
from monitor.models import Notification

if TYPE_CHECKING:
    from monitor.digest import Digest

__all__ = [
    "EPOCH",
    "Answer",
    "FakeFetcher",
    "ManualClock",
    "ManualTime",
    "RecordingBatchSink",
    "RecordingSink",
    "RestoringSink",
]

#: 2024-05-01T12:00:00Z, where the manual clocks start unless told otherwise.
EPOCH = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --------------------------------------------------------------------------- sinks


class RecordingSink:
    """A sink that records every notification it is sent.

    ``attempts`` holds every ``send`` call in order, ``sent`` only the successful ones.
    :meth:`fail_next` makes the next sends raise; :meth:`block` makes sends wait until
    :meth:`unblock` (to have a delivery in flight).
    """

    def __init__(self, name: str = "recording") -> None:
        self._name = name
        self.attempts: list[Notification] = []
        self.sent: list[Notification] = []
        #: The digests delivered, in order.
        self.digests: list[Digest] = []
        self.closed = False
        self._failures: deque[BaseException] = deque()
        self._always: BaseException | None = None
        self._gate = asyncio.Event()
        self._gate.set()
        self._changed = asyncio.Condition()

    def __repr__(self) -> str:
        return f"RecordingSink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    def fail_next(
        self,
        count: int = 1,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Make the next ``count`` sends raise ``error``, or a ``SinkError`` built from the rest.

        ``count=-1`` fails every send from now on (until :meth:`succeed`).
        """
        exc = error or SinkError(
            f"sink '{self._name}' told to fail",
            retryable=retryable,
            status=status,
            retry_after=retry_after,
        )
        if count == -1:
            self._always = exc
        else:
            self._failures.extend([exc] * count)

    def succeed(self) -> None:
        """Forget every queued failure: sends succeed again."""
        self._failures.clear()
        self._always = None

    def block(self) -> None:
        """Make sends wait (after being recorded as attempts) until :meth:`unblock`."""
        self._gate.clear()

    def unblock(self) -> None:
        self._gate.set()

    async def send(self, notification: Notification) -> None:
        await self._attempt([notification])

    async def send_digest(self, digest: Digest) -> None:
        """A digest is tried like a notification (:meth:`block` and :meth:`fail_next`
        apply) and recorded in ``digests``."""
        await self._gate.wait()
        if self._failures:
            raise self._failures.popleft()
        if self._always is not None:
            raise self._always
        self.digests.append(digest)
        await self._notify()

    async def _attempt(self, notifications: Sequence[Notification]) -> None:
        """One attempt at ``notifications``: recorded, held by :meth:`block`, failed as queued
        by :meth:`fail_next`, else sent."""
        self.attempts.extend(notifications)
        await self._notify()
        await self._gate.wait()
        if self._failures:
            raise self._failures.popleft()
        if self._always is not None:
            raise self._always
        self.sent.extend(notifications)
        await self._notify()

    async def aclose(self) -> None:
        self.closed = True

    async def wait_for(self, *, attempts: int = 0, sent: int = 0, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a test helper's bound
        """Wait until at least ``attempts`` sends were tried and ``sent`` succeeded."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(
                lambda: len(self.attempts) >= attempts and len(self.sent) >= sent
            )

    @property
    def ids(self) -> list[str]:
        """The ids of the notifications delivered, in order."""
        return [n.id for n in self.sent]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class RecordingBatchSink(RecordingSink):
    """A :class:`RecordingSink` that also groups: each ``send_batch`` call is one entry of
    ``batches`` (and its notifications count in ``attempts`` and ``sent`` as one attempt).

    The failures of :meth:`fail_next` apply to a whole batch, as one attempt.
    """

    def __init__(self, name: str = "recording") -> None:
        super().__init__(name)
        #: Every ``send_batch`` call's notifications, in order (failed ones too).
        self.batches: list[list[Notification]] = []

    def __repr__(self) -> str:
        return f"RecordingBatchSink(name={self.name!r})"

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        self.batches.append(list(notifications))
        await self._attempt(notifications)


class RestoringSink(RecordingSink):
    """A :class:`RecordingSink` that is told at start-up what it delivered that still fires
    (like the Alertmanager sink): each ``restore`` call is one entry of ``restored``."""

    def __init__(self, name: str = "recording") -> None:
        super().__init__(name)
        self.restored: list[list[Notification]] = []

    def __repr__(self) -> str:
        return f"RestoringSink(name={self.name!r})"

    async def restore(self, firing: Sequence[Notification]) -> None:
        self.restored.append(list(firing))


# --------------------------------------------------------------------------- fetchers

#: What a :class:`FakeFetcher` answers: a body (bytes, text, or a JSON value to encode) or an
#: exception to raise (usually a ``FetchError`` or ``ParseError``).
Answer: TypeAlias = bytes | str | list[Any] | dict[str, Any] | BaseException


class FakeFetcher:
    """A fetcher answering from a queue; when the queue is empty the last answer repeats.

    JSON values are encoded with :func:`monitor.encoding.dumps`, so ``Decimal`` money stays exact.
    ``calls`` counts the fetches.
    """

    def __init__(self, *answers: Answer) -> None:
        self._queue: deque[Answer] = deque(answers)
        self._last: Answer | None = None
        self.calls = 0

    def push(self, *answers: Answer) -> None:
        """Queue more answers, after those already queued."""
        self._queue.extend(answers)

    async def fetch(self) -> bytes:
        self.calls += 1
        if self._queue:
            self._last = self._queue.popleft()
        answer = self._last
        if answer is None:
            raise LookupError("FakeFetcher: no answer queued")
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, bytes):
            return answer
        if isinstance(answer, str):
            return answer.encode()
        return encoding.dumps(answer).encode()


# --------------------------------------------------------------------------- clocks


class ManualClock:
    """A ``() -> datetime`` clock (timezone-aware, UTC) that moves only when told to."""

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware datetime")
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance(self, by: float | timedelta = 1.0) -> datetime:
        """Move forward by ``by`` (seconds or a ``timedelta``); returns the new time."""
        self._now += timedelta(seconds=_seconds(by))
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware datetime")
        self._now = moment


class ManualTime:
    """A ``() -> float`` clock in ``time.time()`` seconds that moves only when told to."""

    def __init__(self, start: float | datetime = EPOCH) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, by: float | timedelta = 1.0) -> float:
        """Move forward by ``by`` (seconds or a ``timedelta``); returns the new time."""
        self._now += _seconds(by)
        return self._now

    def set(self, moment: float | datetime) -> None:
        self._now = moment.timestamp() if isinstance(moment, datetime) else float(moment)

    def as_datetime(self) -> datetime:
        """The same instant as a timezone-aware UTC ``datetime``."""
        return datetime.fromtimestamp(self._now, tz=UTC)
