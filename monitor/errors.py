"""The whole exception hierarchy of balance-monitor.

Third-party exceptions (aiohttp, pydantic, sqlite3, tomllib) are translated into these at the
one boundary where they can occur, with ``raise ... from exc`` (aiohttp's in :mod:`monitor.http`,
``from None``: their texts can hold a secret URL)::

    MonitorError
    ├── ConfigError        the configuration file or a secret it names cannot be used
    ├── SourceError        the balances endpoint could not give us a snapshot
    │   ├── FetchError     connection error, timeout, non-2xx status (carries status, retry_after)
    │   │   └── StreamError  the account stream (WebSocket) could not connect or was refused
    │   ├── AuthError      the token endpoint refused to issue an access token
    │   └── ParseError     the body is not JSON, or not a JSON array
    ├── SinkError          a notification could not be delivered (carries retryable, retry_after)
    ├── StoreError         the state database (SQLite or PostgreSQL) failed
    │   ├── StateLockedError  another process has the state database open for writing
    │   ├── SchemaTooNewError the database was written by a newer release
    │   └── LeaseLostError    another replica took the source over: this write is refused
    ├── ControlError       a silence or an acknowledgement asked for cannot be made
    └── BotError           the Telegram Bot API failed a bot call (carries status, retry_after)

No message ever contains a secret: tokens, webhook URLs and HMAC keys stay out of ``str(exc)``.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error balance-monitor raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid; ``problems`` lists one line per offending key."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class SourceError(MonitorError):
    """The balances endpoint could not give us a usable snapshot."""


class FetchError(SourceError):
    """The HTTP request failed: connection error, timeout or a non-2xx status."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class StreamError(FetchError):
    """The account stream's WebSocket could not be opened (``status``: the handshake's answer)."""


class AuthError(SourceError):
    """The OAuth2 token request failed (bad credentials, token endpoint down, bad answer)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ParseError(SourceError):
    """The response body is not JSON, or not a JSON array of accounts."""


class SinkError(MonitorError):
    """A notification could not be delivered.

    ``retryable`` is true for connection errors, timeouts, 5xx and 429; false for other 4xx and
    for problems that a retry cannot fix. ``retry_after`` (seconds) comes from a ``Retry-After``
    header when the receiver sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class StoreError(MonitorError):
    """The state database could not be read or written."""


class StateLockedError(StoreError):
    """Another balance-monitor (``run`` or ``once``) holds the state database's lock: a second
    writer would deliver the same change twice under two ids. The CLI exits 2."""


class ControlError(MonitorError):
    """A silence or an acknowledgement cannot be made as asked (no matcher, an unknown id, an
    alert that is not firing): the CLI exits 2, the HTTP API answers 400 or 404."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


class SchemaTooNewError(StoreError):
    """The state database's schema is newer than this release knows: it is left as it is and
    the CLI exits 2 (a restart of the same release would meet it again)."""


class LeaseLostError(StoreError):
    """A poll's write was refused: this replica no longer holds the source's lease (it was
    paused past it and another replica took the source over). Nothing of the poll is written."""

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source


class BotError(MonitorError):
    """A call of the Telegram bot (``getUpdates``, ``sendMessage``, ``answerCallbackQuery``)
    failed: a connection error, a timeout, or ``{"ok": false}`` with its ``error_code``
    (``status``; 409: another consumer of the bot's updates) and, for 429, ``retry_after``
    seconds. The message never holds the bot token."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
