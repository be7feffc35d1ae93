"""``[[sinks]]``: where notifications go; one model per ``type``, a discriminated union of them.

Adding a sink type: its model here (``type: Literal["<type>"]``, added to :data:`SinkConfig`),
its module ``monitor/sinks/<type>.py`` with a ``create`` function (the registry finds it by the
type's name), its tests, and its table in ``config.example.toml`` and the README.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config.secrets import Secret, SecretRef, WithSecrets
from monitor.config.types import (
    HttpUrlText,
    Name,
    Timeout,
    check_http_url,
    check_url_secret,
    config_path,
    item_key,
    models_by_type,
    within,
)
from monitor.errors import ConfigError
from monitor.models import Severity

#: Severities from the least to the most severe.
SEVERITY_RANK: Mapping[Severity, int] = {s: i for i, s in enumerate(Severity)}


class _SinkBase(WithSecrets):
    name: Name
    timeout: Timeout = timedelta(seconds=10)
    #: Notifications of rules below this severity are not sent to this sink.
    min_severity: Severity = Severity.INFO
    #: How many notifications may be in flight to this sink at once (those of one account are
    #: always sent one after another, in order). Not used by grouped messages.
    max_concurrency: int = Field(default=4, ge=1, le=64)

    #: Whether the sink tracks alert state (Alertmanager, PagerDuty): it gets resolved
    #: notifications even from rules with ``send_resolved = false``.
    TRACKS_STATE: ClassVar[bool] = False
    #: Whether the sink can carry a ``[[digests]]`` message (not the alert APIs: PagerDuty,
    #: Alertmanager).
    CARRIES_DIGESTS: ClassVar[bool] = True

    def key(self, index: int) -> str:
        """How messages name this sink, ``sinks[index]`` of the file: ``sinks[1] (slack)``."""
        return item_key("sinks", index, self.name)

    def problems(self, index: int) -> list[str]:
        """What would stop ``sinks[index]`` from being built here, found without a connection
        and without reading a secret (those are :meth:`Config.missing_secrets`' job): for
        ``check-config``, and checked again by the sink's ``create``. Nothing, by default."""
        del index
        return []

    def ref(self, index: int, secret: str) -> SecretRef | None:
        """Where ``sinks[index].<secret>`` comes from (``None`` when an optional one is unset)."""
        return self.secret_named(secret).ref(self, self.key(index))

    def required_ref(self, index: int, secret: str) -> SecretRef:
        """:meth:`ref` of a secret the model validator makes present."""
        return self.secret_named(secret).required_ref(self, self.key(index))

    def secret_refs(self, index: int) -> list[SecretRef]:
        return [r for s in self.SECRETS if (r := s.ref(self, self.key(index))) is not None]

    def accepts(self, severity: Severity) -> bool:
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]


class _GroupingSink(_SinkBase):
    """A chat sink: notifications queued within ``group_window`` go out as one message."""

    group_window: Annotated[timedelta, within("0s", "10m", note="notifications wait that long")] = (
        timedelta(0)
    )


#: A sink's URL when it is a secret (a webhook's authorises whoever holds it to post).
_URL = Secret("url", check_value=check_http_url)


class _UrlSecret(_SinkBase):
    """A webhook URL that is a secret; a sink with it lists :data:`_URL` in its ``SECRETS``."""

    url: SecretStr | None = None
    url_env: str | None = None
    url_file: Path | None = None

    _url_check = field_validator("url")(classmethod(lambda cls, v: check_url_secret(v)))

    def url_ref(self, index: int) -> SecretRef:
        """Where ``sinks[index].url`` comes from (its model makes it required)."""
        return _URL.required_ref(self, self.key(index))


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def _check_headers(value: dict[str, SecretStr]) -> dict[str, SecretStr]:
    for name, header in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"'{name}' is not a valid HTTP header name")
        if any(c in header.get_secret_value() for c in "\r\n\0"):
            raise ValueError(f"the value of header '{name}' contains a line break or NUL")
    return value


#: Header values are secrets too: an ``Authorization`` header must never be printed.
Headers: TypeAlias = Annotated[dict[str, SecretStr], AfterValidator(_check_headers)]


class WebhookSinkConfig(_UrlSecret):
    type: Literal["webhook"]
    secret: SecretStr | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    headers: Headers = Field(default_factory=dict)

    SECRETS: ClassVar[tuple[Secret, ...]] = (_URL, Secret("secret", required=False))

    def secret_ref(self, index: int) -> SecretRef | None:
        return self.ref(index, "secret")


class SlackSinkConfig(_GroupingSink, _UrlSecret):
    type: Literal["slack"]

    SECRETS: ClassVar[tuple[Secret, ...]] = (_URL,)


class DiscordSinkConfig(_GroupingSink, _UrlSecret):
    """A Discord channel webhook: one embed per notification, coloured by severity."""

    type: Literal["discord"]

    SECRETS: ClassVar[tuple[Secret, ...]] = (_URL,)


class MsTeamsSinkConfig(_GroupingSink, _UrlSecret):
    """A Microsoft Teams Workflows webhook ("Post to a channel when a webhook request is
    received"): an Adaptive Card per message."""

    type: Literal["msteams"]

    SECRETS: ClassVar[tuple[Secret, ...]] = (_URL,)


class TelegramSinkConfig(_GroupingSink):
    """A Telegram bot posting to one chat (``sendMessage``)."""

    type: Literal["telegram"]
    bot_token: SecretStr | None = None
    bot_token_env: str | None = None
    bot_token_file: Path | None = None
    #: A numeric chat id (``-1001234567890``) or a public ``@channelusername``.
    chat_id: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]
    #: The Bot API's address (a self-hosted Bot API server, or a test server).
    api_url: HttpUrlText = "https://api.telegram.org"
    #: Answer commands (``/balance``, ``/status``, ``/silence``, ...) by long-polling the Bot
    #: API's ``getUpdates`` (:mod:`monitor.telegram_bot`); alert messages get inline buttons.
    commands: bool = False
    #: The chats (a private chat's id is its user's id) that may change state: ``/silence``,
    #: ``/ack`` and the buttons. In a group, a sender whose user id is listed counts too.
    admin_chat_ids: tuple[
        Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)], ...
    ] = ()

    SECRETS: ClassVar[tuple[Secret, ...]] = (Secret("bot_token"),)

    @field_validator("chat_id")
    @classmethod
    def _chat(cls, value: str) -> str:
        if not re.fullmatch(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}", value):
            raise ValueError("must be a numeric chat id or an @channelusername")
        return value

    @field_validator("admin_chat_ids")
    @classmethod
    def _admins(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if value and not info.data.get("commands"):
            raise ValueError("has no effect without commands = true")
        for item in value:
            if not re.fullmatch(r"-?\d{1,20}", item):
                raise ValueError(f'{item!r} is not a numeric chat or user id (e.g. "123456789")')
        if len(set(value)) != len(value):
            raise ValueError("lists an id twice")
        return value


class PagerDutySinkConfig(_SinkBase):
    """PagerDuty Events API v2: trigger on firing, resolve on resolved, deduplicated."""

    type: Literal["pagerduty"]
    TRACKS_STATE: ClassVar[bool] = True
    CARRIES_DIGESTS: ClassVar[bool] = False
    routing_key: SecretStr | None = None
    routing_key_env: str | None = None
    routing_key_file: Path | None = None
    url: HttpUrlText = "https://events.pagerduty.com/v2/enqueue"
    #: An event (``change``, ``restriction_change``, ...) never resolves by itself: its
    #: incident is resolved this long after the trigger was delivered (``0s``: at once). At
    #: most a day: the resolve is derived from the delivered trigger, which is kept 7 days.
    resolve_events_after: Annotated[timedelta, within("0s", "24h")] = timedelta(hours=1)

    SECRETS: ClassVar[tuple[Secret, ...]] = (Secret("routing_key"),)


class AlertmanagerSinkConfig(_SinkBase):
    """A Prometheus Alertmanager (``POST /api/v2/alerts``)."""

    type: Literal["alertmanager"]
    TRACKS_STATE: ClassVar[bool] = True
    CARRIES_DIGESTS: ClassVar[bool] = False
    #: The Alertmanager's base URL, e.g. ``http://127.0.0.1:9093``.
    url: HttpUrlText
    #: Firing alerts are sent again this often; Alertmanager resolves alerts it stops hearing
    #: about (its ``resolve_timeout``, 5m by default), so keep this well below that.
    resend_interval: Annotated[timedelta, within("1s", "1h")] = timedelta(minutes=1)
    #: The ``generatorURL`` of each alert (a link back to whatever shows this monitor).
    generator_url: HttpUrlText | None = None
    headers: Headers = Field(default_factory=dict)

    def problems(self, index: int) -> list[str]:
        """``url`` with credentials and an ``Authorization`` header: aiohttp refuses both."""
        if urlsplit(self.url).username is not None and any(
            key.lower() == "authorization" for key in self.headers
        ):
            return [
                f"{self.key(index)}.headers: an Authorization header cannot be combined with "
                "credentials in url"
            ]
        return []


class EmailSinkConfig(_GroupingSink):
    """SMTP with STARTTLS (or implicit TLS) and optional authentication."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["email"]
    host: Annotated[str, Field(min_length=1)]
    port: int = Field(default=587, ge=1, le=65535)
    #: ``starttls`` (port 587), ``tls`` (implicit TLS, port 465), or ``none`` (a local relay).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: SecretStr | None = None
    username_env: str | None = None
    username_file: Path | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    sender: str = Field(alias="from", min_length=3)
    to: tuple[Annotated[str, Field(min_length=3)], ...] = Field(min_length=1)
    #: A CA bundle to verify the server with, instead of the system's.
    ca_file: Path | None = None
    subject_prefix: str = "[balance-monitor]"

    SECRETS: ClassVar[tuple[Secret, ...]] = (
        Secret("username", required=False),
        Secret("password", required=False),
    )

    def _paths_under(self, base_dir: Path) -> dict[str, Any]:
        return {**super()._paths_under(base_dir), "ca_file": config_path(self.ca_file, base_dir)}

    def problems(self, index: int) -> list[str]:
        """The CA bundle (``ca_file``) must load; the credentials are not read here."""
        try:
            self.tls_context(index)
        except ConfigError as exc:
            return [str(exc)]
        return []

    def tls_context(self, index: int) -> ssl.SSLContext | None:
        """The client TLS context (``None`` with ``security = "none"``): the server is verified
        against ``ca_file`` or the system's CAs; ``ConfigError`` when ``ca_file`` is unusable."""
        if self.security == "none":
            return None
        try:
            return ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "unusable"
            raise ConfigError(
                f"{self.key(index)}.ca_file: cannot load {self.ca_file}: {reason}"
            ) from None

    @model_validator(mode="after")
    def _auth(self) -> EmailSinkConfig:
        has_user = self.ref(0, "username") is not None
        if has_user != (self.ref(0, "password") is not None):
            raise ValueError("give both username and password, or neither")
        return self

    @field_validator("sender", "to")
    @classmethod
    def _addresses(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for address in (value,) if isinstance(value, str) else value:
            if "@" not in address or any(c in address for c in "\r\n"):
                raise ValueError(f"'{address}' is not an email address")
        return value


class AppriseSinkConfig(_SinkBase):
    """Any service Apprise knows (needs the ``apprise`` extra): ``url`` is an Apprise URL."""

    type: Literal["apprise"]
    url: SecretStr | None = None
    url_env: str | None = None
    url_file: Path | None = None

    #: An Apprise URL (``json://``, ``mailto://``, ...), not an HTTP one: Apprise checks it.
    SECRETS: ClassVar[tuple[Secret, ...]] = (Secret("url"),)

    def problems(self, index: int) -> list[str]:
        """The sink cannot be built without the ``apprise`` extra (imported to find out: only
        a configuration with an apprise sink pays for it)."""
        try:
            import apprise  # noqa: F401
        except ImportError:
            return [
                f"{self.key(index)}.type: the apprise sink needs the 'apprise' extra: "
                "pip install 'balance-monitor[apprise]'"
            ]
        return []


class LogSinkConfig(_SinkBase):
    type: Literal["log"]
    level: Literal["info", "warning", "error"] = "warning"


SinkConfig: TypeAlias = Annotated[
    WebhookSinkConfig
    | SlackSinkConfig
    | DiscordSinkConfig
    | MsTeamsSinkConfig
    | TelegramSinkConfig
    | EmailSinkConfig
    | PagerDutySinkConfig
    | AlertmanagerSinkConfig
    | AppriseSinkConfig
    | LogSinkConfig,
    Field(discriminator="type"),
]

#: The sink models by their TOML ``type``; the registry's factories have the same keys.
SINK_CONFIG_TYPES: dict[str, type[BaseModel]] = models_by_type(SinkConfig)


def check_sinks(configs: Sequence[SinkConfig]) -> list[str]:
    """What would stop any of ``configs`` (``sinks[0]``, ``sinks[1]``, ...) from being built
    here: each one's :meth:`problems`, in order. For ``check-config``: no sink module is
    imported, no connection opened, no secret read (those are
    :meth:`monitor.config.Config.missing_secrets`' job)."""
    return [problem for i, config in enumerate(configs) for problem in config.problems(i)]
