"""The Sink protocol every notifier implements, and what the sinks share.

A sink delivers one :class:`~monitor.models.Notification` per ``send`` call. It returns on
success and raises :class:`~monitor.errors.SinkError` otherwise; ``SinkError.retryable`` says
whether the delivery loop should try again (connection errors, timeouts, 5xx, 429) or give up
(other 4xx). Sinks never log or raise their URL or secrets.

No sink module imports another: what several share is here (the HTTP sinks' base,
:class:`HttpSink` and :class:`ChatSink`, and :func:`post`, one POST with a non-2xx answer as a
``SinkError``), in :mod:`monitor.sinks.text` (text about alerts) or in :mod:`monitor.http` (the
translation of aiohttp's exceptions, ``Retry-After``, the User-Agent).

Messages name the sink, never the URL: webhook URLs (and Telegram's bot token, which sits in the
URL path) are secrets, and aiohttp's exception texts can contain the host or the whole URL, so
they are summarised by class name (and errno) and not chained; response bodies quoted in
messages have the URL and secrets cut out.
"""

from __future__ import annotations

import abc
import contextlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlsplit

import aiohttp
from pydantic import SecretStr

from monitor import encoding, http
from monitor.config import resolve_secret
from monitor.errors import SinkError
from monitor.models import Alert, Notification

if TYPE_CHECKING:  # the digest's modules are imported where digests are sent
    from monitor.digest import Digest


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
class DigestSink(Sink, Protocol):
    """A sink that can carry a digest (``[[digests]]``): every sink but the alert APIs."""

    async def send_digest(self, digest: Digest) -> None:
        """Deliver the digest as one message in the sink's own format, or raise ``SinkError``."""
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


@runtime_checkable
class EventResolvingSink(Sink, Protocol):
    """A sink whose receiver keeps open what an event opened until it is told otherwise
    (PagerDuty's incidents), though an event never has a resolved notification.

    The delivery loop queues a resolved notification of each event this sink delivered,
    ``resolve_events_after`` seconds after the trigger was delivered.
    """

    @property
    def resolve_events_after(self) -> float:
        """Seconds after an event's trigger was delivered when it is resolved (0: at once)."""
        ...


@runtime_checkable
class PacedSink(Sink, Protocol):
    """A sink whose receiver accepts at most one message every so often (chat webhooks): the
    delivery loop waits ``min_interval`` seconds between two messages to it, so a storm meets
    no rate limit (and a 429's ``retry_after`` is honoured all the same)."""

    @property
    def min_interval(self) -> float:
        """Seconds between two messages to this sink, from the service's documented limit."""
        ...


# --------------------------------------------------------------------------- HTTP sinks

JSON_HEADERS: Mapping[str, str] = MappingProxyType(
    {"Content-Type": "application/json", "User-Agent": http.USER_AGENT}
)
#: The notification ids a request or an email carries (the webhook's and the email's header).
ID_HEADER = "X-Balance-Monitor-Id"
RETRYABLE_STATUSES = frozenset({408, 429})
#: Path segments and query values this long are taken for tokens and kept out of messages.
TOKEN_CHARS = 12


class HttpSink:
    """What every HTTP sink shares: its name, the caller's session, a secret URL and a timeout.

    Subclasses build a body and hand it to :meth:`_post`. ``repr`` shows the class and name only;
    ``redact`` lists further secrets (beyond the URL) that error messages must never quote.
    """

    def __init__(
        self,
        name: str,
        *,
        session: aiohttp.ClientSession,
        url: SecretStr,
        timeout: float = 10.0,
        redact: Sequence[SecretStr] = (),
    ) -> None:
        self._name = name
        self._session = session
        self._url = url
        self._timeout = timeout
        self._redact = tuple(redact)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    async def _post(self, body: bytes, headers: Mapping[str, str] = JSON_HEADERS) -> None:
        await post(
            self._session,
            self._url.get_secret_value(),
            body,
            headers=headers,
            timeout=self._timeout,
            sink=self._name,
            redact=[secret.get_secret_value() for secret in self._redact],
            retry_after_in_body=self._retry_after_in_body,
        )

    async def _post_json(self, document: Any) -> None:
        """POST ``document`` as compact JSON (money as exact numbers)."""
        await self._post(encoding.dumps(document).encode())

    def _retry_after_in_body(self, body: str) -> float | None:
        """Seconds to wait, read from a retryable answer's body (when it has no Retry-After)."""
        return None


_Sink = TypeVar("_Sink", bound=HttpSink)


def create_url_sink(
    cls: type[_Sink], config: Any, *, index: int, session: aiohttp.ClientSession
) -> _Sink:
    """A sink whose one secret is its URL (Slack, Discord, Teams), from ``sinks[index]``;
    the URL is resolved now (``ConfigError`` names the key)."""
    return cls(
        config.name,
        session=session,
        url=resolve_secret(config.url_ref(index)),
        timeout=config.timeout.total_seconds(),
    )


class ChatSink(HttpSink, abc.ABC):
    """An HTTP sink that posts one JSON :meth:`document` for one or several notifications.

    Each service's documented rate limit for one webhook or chat is its :attr:`MIN_INTERVAL`
    (a :class:`PacedSink`)."""

    #: Seconds between two messages: the service's documented limit per webhook or chat.
    MIN_INTERVAL: ClassVar[float] = 1.0

    @property
    def min_interval(self) -> float:
        return self.MIN_INTERVAL

    async def send(self, notification: Notification) -> None:
        await self.send_batch([notification])

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        if notifications:
            await self._post_json(self.document([n.alert for n in notifications]))

    @abc.abstractmethod
    def document(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        """The JSON document for these alerts (at least one), in the order given."""

    async def send_digest(self, digest: Digest) -> None:
        await self._post_json(self.digest_document(digest))

    def digest_document(self, digest: Digest) -> dict[str, Any]:
        """The JSON document of a digest (:mod:`monitor.digest_render` has each format)."""
        raise SinkError(f"sink '{self.name}' cannot carry a digest", retryable=False)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - it is aiohttp's per-request ClientTimeout
    sink: str,
    redact: Iterable[str] = (),
    retry_after_in_body: Callable[[str], float | None] | None = None,
) -> None:
    """POST ``body``; return on 2xx, raise ``SinkError`` otherwise. Redirects are not followed.

    ``redact``: secrets besides the URL to cut out of quoted response bodies.
    ``retry_after_in_body``: reads the wait from a retryable answer without ``Retry-After``.
    """
    with http.sink_errors(sink, timeout=timeout):
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                # Delivered: drain the body so the connection is reused; a failure here is no
                # reason to deliver twice.
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await response.read()
                return
            text = (await response.read()).decode("utf-8", errors="replace")
            status, retry_header = response.status, response.headers.get("Retry-After")
    error = status_error(
        status, sink=sink, body=_redact(text, url, redact), retry_after=retry_header
    )
    if error.retryable and error.retry_after is None and retry_after_in_body is not None:
        error.retry_after = retry_after_in_body(text)
    raise error


def status_error(
    status: int, *, sink: str, body: str = "", retry_after: str | None = None
) -> SinkError:
    """The ``SinkError`` for a non-2xx answer: 408, 429 and 5xx are retryable, the rest are not."""
    message = f"HTTP {status} from sink '{sink}'"
    if 300 <= status < 400:
        message += " (redirects are not followed)"
    if 400 <= status < 500 and (excerpt := http.excerpt(body)):
        message += f": {excerpt}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        return SinkError(
            message, retryable=True, status=status, retry_after=http.parse_retry_after(retry_after)
        )
    return SinkError(message, retryable=False, status=status)


def seconds_in_json(body: str, *path: str) -> float | None:
    """The non-negative number at ``path`` (keys into nested objects) of a JSON body, as
    seconds: a rate-limit answer's ``retry_after``. ``None`` when the body has none."""
    try:
        value: Any = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
        return None
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        try:
            return float(value)
        except OverflowError:  # an integer no float can hold is no usable wait
            return None
    return None


def _redact(text: str, url: str, secrets: Iterable[str] = ()) -> str:
    """The response body with what receivers may echo cut out: the URL, its path and query, each
    path segment or query value of :data:`TOKEN_CHARS` or more (tokens), all also percent-decoded,
    and ``secrets``. Longer ones go first, so a URL is not cut apart by its path."""
    parts = urlsplit(url)
    pieces = re.split(r"[/?&=]", f"{parts.path}?{parts.query}")
    candidates = {url, f"{parts.path}?{parts.query}", parts.path, parts.query, *secrets}
    candidates.update(piece for piece in pieces if len(piece) >= TOKEN_CHARS)
    candidates.update({unquote(secret) for secret in candidates})
    for secret in sorted(candidates, key=len, reverse=True):
        if len(secret) > 1:
            text = text.replace(secret, "<url>")
    return text
