"""The TOML configuration: pydantic models, loading, and error messages that name the key.

Every model is frozen and forbids unknown keys, so a typo at any depth is an error. Secrets are
``SecretStr`` and come in three spellings (``token``, ``token_env``, ``token_file``); they are
resolved only when a command needs them (:func:`resolve_secret`), so ``check-config`` works on a
machine that does not hold them. Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeAlias, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.errors import ConfigError
from monitor.models import DEFAULT_SOURCE, KNOWN_FIELDS, NUMERIC_FIELDS, AlertKind, Severity

ENV_CONFIG = "BALANCE_MONITOR_CONFIG"
DEFAULT_CONFIG = Path("config.toml")
SOURCE_DOWN_RULE = "source_down"

# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HELP = "must be a duration like '30s', '5m', '1h', '1h30m' or a number of seconds"


def parse_duration(value: Any) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a number of seconds -> ``timedelta``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    raise ValueError(_DURATION_HELP) from None
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(_DURATION_HELP) from None
    else:
        raise ValueError(_DURATION_HELP)
    if not math.isfinite(seconds):  # "inf", "nan", TOML inf/nan
        raise ValueError(_DURATION_HELP)
    if seconds < 0:
        raise ValueError("must not be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # beyond timedelta's ~2.7 million years
        raise ValueError("is too long") from None


Duration: TypeAlias = Annotated[timedelta, BeforeValidator(parse_duration)]
Name: TypeAlias = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- secrets


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_secret_spellings(model: BaseModel, name: str, *, required: bool) -> None:
    given = [
        key for key in (name, f"{name}_env", f"{name}_file") if getattr(model, key) is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"give only one of {name}, {name}_env, {name}_file (got {', '.join(given)})"
        )
    if required and not given:
        raise ValueError(f"one of {name}, {name}_env, {name}_file is required")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from, for messages: never the secret itself."""

    key: str  # e.g. "api.token_env"
    value: SecretStr | None
    env: str | None
    file: Path | None

    def describe(self) -> str:
        if self.env is not None:
            return f"env {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return "inline"


def resolve_secret(ref: SecretRef) -> SecretStr:
    """Read a secret where the config says it is; a ``ConfigError`` names the key, not the value."""
    if ref.value is not None:
        return ref.value
    if ref.env is not None:
        text = os.environ.get(ref.env)
        if not text:
            raise ConfigError(f"{ref.key}: environment variable {ref.env} is not set")
        return SecretStr(text)
    if ref.file is not None:
        try:
            text = _expand_credentials(ref.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{ref.key}: cannot read {ref.file}: {exc.strerror}") from exc
        text = text.rstrip("\r\n")
        if not text:
            raise ConfigError(f"{ref.key}: {ref.file} is empty")
        return SecretStr(text)
    raise ConfigError(f"{ref.key}: no secret given")


def _expand_credentials(path: Path) -> Path:
    """``$CREDENTIALS_DIRECTORY/token`` works as systemd's ``LoadCredential=`` intends."""
    return Path(os.path.expandvars(str(path)))


def check_secret(ref: SecretRef) -> str | None:
    """A note when a secret cannot be resolved here (``check-config`` reports it, not fatal)."""
    try:
        resolve_secret(ref)
    except ConfigError as exc:
        return str(exc)
    return None


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


def _check_url_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        try:
            _http_url(value.get_secret_value())
        except ValueError:
            raise ValueError("must be an http:// or https:// URL") from None
    return value


#: An ``http://`` or ``https://`` URL kept as text (not a secret: balances and token endpoints).
HttpUrlText: TypeAlias = Annotated[
    str, BeforeValidator(lambda v: _http_url(v) if isinstance(v, str) else v)
]


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


# --------------------------------------------------------------------------- sections


class OAuthConfig(_Model):
    """``[api.oauth]``: the OAuth2 password grant that issues (and renews) access tokens."""

    token_url: HttpUrlText
    client_id: SecretStr | None = None
    client_id_env: str | None = None
    client_id_file: Path | None = None
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    username: SecretStr | None = None
    username_env: str | None = None
    username_file: Path | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    #: Renew this long before the token would expire (by ``expires_in`` or at 03:00 ET).
    renew_before: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _secrets(self) -> OAuthConfig:
        for name in OAUTH_SECRETS:
            _check_secret_spellings(self, name, required=True)
        return self

    def refs(self, prefix: str) -> dict[str, SecretRef]:
        return {
            name: _ref(
                prefix,
                name,
                getattr(self, name),
                getattr(self, f"{name}_env"),
                getattr(self, f"{name}_file"),
            )
            for name in OAUTH_SECRETS
        }


OAUTH_SECRETS = ("client_id", "client_secret", "username", "password")


class SourceBase(_Model):
    """What every source has: where to fetch, how to authenticate, when it is down."""

    url: HttpUrlText
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: Path | None = None
    oauth: OAuthConfig | None = None
    timeout: Duration = timedelta(seconds=10)
    down_after: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_token(self) -> SourceBase:
        if self.oauth is not None:
            given = [k for k in ("token", "token_env", "token_file") if getattr(self, k)]
            if given:
                raise ValueError(f"give either oauth or {', '.join(given)}, not both")
        else:
            _check_secret_spellings(self, "token", required=True)
        return self

    def token_ref_at(self, prefix: str) -> SecretRef | None:
        if self.oauth is not None:
            return None
        return _ref(prefix, "token", self.token, self.token_env, self.token_file)

    def secret_refs_at(self, prefix: str) -> list[SecretRef]:
        if self.oauth is not None:
            return list(self.oauth.refs(f"{prefix}.oauth").values())
        ref = self.token_ref_at(prefix)
        return [ref] if ref is not None else []

    def credentials(self) -> str:
        """Where the token comes from, for summaries (never the token)."""
        if self.oauth is not None:
            return f"OAuth2 password grant at {public_url(self.oauth.token_url)}"
        ref = self.token_ref_at("")
        return f"token from {ref.describe()}" if ref is not None else "no token"


class ApiConfig(SourceBase):
    """``[api]``: the single source named ``default``."""

    @property
    def token_ref(self) -> SecretRef:
        ref = self.token_ref_at("api")
        if ref is None:
            raise ConfigError("api: the token comes from [api.oauth]")
        return ref


class SourceConfig(SourceBase):
    """``[[sources]]``: one login of several, polled on its own schedule."""

    name: Name
    #: Overrides ``[schedule] interval`` for this source (with ``market_hours``: the interval in
    #: session; ``off_hours_interval`` stays). Not allowed with ``[schedule] cron``.
    interval: Duration | None = None

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value


MARKET_PRESETS = ("us-equities",)


class ScheduleConfig(_Model):
    """``[schedule]``: a fixed interval, a market-hours preset, or a cron expression."""

    interval: Duration = timedelta(seconds=30)
    jitter: Duration = timedelta(0)
    #: With ``market_hours``: the interval outside the market's hours and on weekends/holidays.
    off_hours_interval: Duration | None = None
    market_hours: Literal["us-equities"] | None = None
    #: Dates (``YYYY-MM-DD``, in the market's time zone) with no session.
    holidays: tuple[date, ...] = ()
    #: A crontab line (``"*/1 4-19 * * mon-fri"``), instead of ``interval``.
    cron: str | None = None
    timezone: str = "America/New_York"

    @field_validator("interval", "off_hours_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleConfig:
        if self.cron is not None:
            if self.market_hours is not None:
                raise ValueError("give either cron or market_hours, not both")
            check_cron(self.cron, self.timezone)
        if self.off_hours_interval is not None and self.market_hours is None:
            raise ValueError("off_hours_interval needs market_hours")
        if self.holidays and self.market_hours is None:
            raise ValueError("holidays needs market_hours")
        return self


def check_cron(expression: str, timezone: str) -> None:
    """Raise ``ValueError`` naming what is wrong with a crontab line."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"schedule.cron: {exc}") from None


class StateConfig(_Model):
    path: Path = Path("balance-monitor.db")


class DeliveryConfig(_Model):
    max_age: Duration = timedelta(hours=24)
    initial_backoff: Duration = timedelta(seconds=2)
    max_backoff: Duration = timedelta(minutes=5)
    once_deadline: Duration = timedelta(seconds=30)


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"`` or ``":9464"`` (all interfaces) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("must be HOST:PORT, e.g. '127.0.0.1:9464'")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ":PORT" asks for every interface


class HttpConfig(_Model):
    """``[http]``: the metrics and health endpoints; off unless ``listen`` is set."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] | None = None


# --------------------------------------------------------------------------- sinks


class _SinkBase(_Model):
    name: Name
    timeout: Duration = timedelta(seconds=10)
    #: Notifications of rules below this severity are not sent to this sink.
    min_severity: Severity = Severity.INFO

    #: The sink's secrets (each spelled ``x``, ``x_env`` or ``x_file``) and whether required.
    SECRETS: ClassVar[Mapping[str, bool]] = {}
    #: Whether the sink tracks alert state (Alertmanager, PagerDuty): it gets resolved
    #: notifications even from rules with ``send_resolved = false``.
    TRACKS_STATE: ClassVar[bool] = False

    @model_validator(mode="after")
    def _secret_spellings(self) -> Self:
        for secret, required in self.SECRETS.items():
            _check_secret_spellings(self, secret, required=required)
        return self

    def ref(self, index: int, secret: str) -> SecretRef | None:
        """Where ``sinks[index].<secret>`` comes from (``None`` when an optional one is unset)."""
        value, env, file = (getattr(self, f"{secret}{s}") for s in ("", "_env", "_file"))
        if value is None and env is None and file is None:
            return None
        return _ref(f"sinks[{index}]", secret, value, env, file)

    def required_ref(self, index: int, secret: str) -> SecretRef:
        """:meth:`ref` of a secret the model validator makes present."""
        return _required(self.ref(index, secret))

    def secret_refs(self, index: int) -> list[SecretRef]:
        return [r for name in self.SECRETS if (r := self.ref(index, name)) is not None]

    def accepts(self, severity: Severity) -> bool:
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]


SEVERITY_RANK: Mapping[Severity, int] = {s: i for i, s in enumerate(Severity)}


class _GroupingSink(_SinkBase):
    """A chat sink: notifications queued within ``group_window`` go out as one message."""

    group_window: Duration = timedelta(0)

    @field_validator("group_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value > timedelta(minutes=10):
            raise ValueError("must be at most 10m (notifications wait that long)")
        return value


class _UrlSecret(_Model):
    """A webhook URL that is a secret (it authorises whoever holds it to post)."""

    url: SecretStr | None = None
    url_env: str | None = None
    url_file: Path | None = None

    _url_check = field_validator("url")(classmethod(lambda cls, v: _check_url_secret(v)))

    def url_ref(self, index: int) -> SecretRef:
        """Where ``sinks[index].url`` comes from (its model makes it required)."""
        return _ref(f"sinks[{index}]", "url", self.url, self.url_env, self.url_file)


def _check_headers(value: dict[str, SecretStr]) -> dict[str, SecretStr]:
    for name, header in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"'{name}' is not a valid HTTP header name")
        if any(c in header.get_secret_value() for c in "\r\n\0"):
            raise ValueError(f"the value of header '{name}' contains a line break or NUL")
    return value


#: Header values are secrets too: an ``Authorization`` header must never be printed.
Headers: TypeAlias = Annotated[dict[str, SecretStr], AfterValidator(_check_headers)]


class WebhookSinkConfig(_SinkBase, _UrlSecret):
    type: Literal["webhook"]
    secret: SecretStr | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    headers: Headers = Field(default_factory=dict)

    SECRETS: ClassVar[Mapping[str, bool]] = {"url": True, "secret": False}

    def secret_ref(self, index: int) -> SecretRef | None:
        return self.ref(index, "secret")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


class SlackSinkConfig(_GroupingSink, _UrlSecret):
    type: Literal["slack"]

    SECRETS: ClassVar[Mapping[str, bool]] = {"url": True}


class DiscordSinkConfig(_GroupingSink, _UrlSecret):
    """A Discord channel webhook: one embed per notification, coloured by severity."""

    type: Literal["discord"]

    SECRETS: ClassVar[Mapping[str, bool]] = {"url": True}


class MsTeamsSinkConfig(_GroupingSink, _UrlSecret):
    """A Microsoft Teams Workflows webhook ("Post to a channel when a webhook request is
    received"): an Adaptive Card per message."""

    type: Literal["msteams"]

    SECRETS: ClassVar[Mapping[str, bool]] = {"url": True}


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

    SECRETS: ClassVar[Mapping[str, bool]] = {"bot_token": True}

    @field_validator("chat_id")
    @classmethod
    def _chat(cls, value: str) -> str:
        if not re.fullmatch(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}", value):
            raise ValueError("must be a numeric chat id or an @channelusername")
        return value


class PagerDutySinkConfig(_SinkBase):
    """PagerDuty Events API v2: trigger on firing, resolve on resolved, deduplicated."""

    type: Literal["pagerduty"]
    TRACKS_STATE: ClassVar[bool] = True
    routing_key: SecretStr | None = None
    routing_key_env: str | None = None
    routing_key_file: Path | None = None
    url: HttpUrlText = "https://events.pagerduty.com/v2/enqueue"

    SECRETS: ClassVar[Mapping[str, bool]] = {"routing_key": True}


class AlertmanagerSinkConfig(_SinkBase):
    """A Prometheus Alertmanager (``POST /api/v2/alerts``)."""

    type: Literal["alertmanager"]
    TRACKS_STATE: ClassVar[bool] = True
    #: The Alertmanager's base URL, e.g. ``http://127.0.0.1:9093``.
    url: HttpUrlText
    #: Firing alerts are sent again this often; Alertmanager resolves alerts it stops hearing
    #: about (its ``resolve_timeout``, 5m by default), so keep this well below that.
    resend_interval: Duration = timedelta(minutes=1)
    #: The ``generatorURL`` of each alert (a link back to whatever shows this monitor).
    generator_url: HttpUrlText | None = None
    headers: Headers = Field(default_factory=dict)

    @field_validator("resend_interval")
    @classmethod
    def _resend(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value


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

    SECRETS: ClassVar[Mapping[str, bool]] = {"username": False, "password": False}

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

    SECRETS: ClassVar[Mapping[str, bool]] = {"url": True}


class LogSinkConfig(_SinkBase):
    type: Literal["log"]
    level: Literal["info", "warning", "error"] = "warning"


def _required(ref: SecretRef | None) -> SecretRef:
    if ref is None:  # the model validator makes required secrets present
        raise ConfigError("a required secret is missing")
    return ref


def _ref(
    prefix: str, name: str, value: SecretStr | None, env: str | None, file: Path | None
) -> SecretRef:
    suffix = "_env" if env is not None else "_file" if file is not None else ""
    return SecretRef(f"{prefix}.{name}{suffix}", value, env, file)


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

# --------------------------------------------------------------------------- rules

Op: TypeAlias = Literal["<", "<=", ">", ">=", "==", "!="]

#: Labels every notification carries already (Alertmanager's and our own): a rule can't set them.
RESERVED_LABELS = frozenset({"alertname", "severity", "source", "account_number"})
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


#: A Jinja2 message template (checked, with the rule's labels, by the rule's own validator).
Template: TypeAlias = Annotated[str, Field(min_length=1)]


class _RuleBase(_Model):
    name: Name
    severity: Severity = Severity.WARNING
    # None (the key left out) means every sink / every account; an empty list is a mistake.
    sinks: tuple[Name, ...] | None = Field(default=None, min_length=1)
    accounts: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(
        default=None, min_length=1
    )
    #: Only these sources (``[[sources]] name``; ``[api]`` is ``default``); all when left out.
    sources: tuple[Name, ...] | None = Field(default=None, min_length=1)
    #: Carried into every notification of the rule (payload ``labels``, Alertmanager labels).
    labels: dict[str, Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=dict
    )
    #: Jinja2 templates for the notification's ``summary`` and ``description``.
    summary: Template | None = None
    description: Template | None = None
    #: Notifications held by a ``[[mute]]`` that fired and resolved inside the window:
    #: ``summary`` sends one resolved notification saying so, ``drop`` sends nothing.
    mute_resolved: Literal["summary", "drop"] = "summary"

    def applies_to(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    @property
    def kind(self) -> AlertKind:
        """``event``: each alert fires once and never resolves; ``condition``: an alert lasts
        while its condition holds, then resolves. The one place this is decided: the pipeline,
        the store and every sink read it (carried on each alert as ``Alert.kind``)."""
        return "event"

    @property
    def notifies_resolved(self) -> bool:
        """Whether sinks that do not track alert state get this rule's resolved notifications."""
        return self.kind == "condition"

    @model_validator(mode="after")
    def _templates(self) -> Self:
        for key in ("summary", "description"):
            text = getattr(self, key)
            if text is not None:
                # Imported here: Jinja2 costs start-up time and memory only where it is used.
                from monitor.templates import TemplateError, compile_template

                try:
                    compile_template(text, labels=self.labels)
                except TemplateError as exc:
                    raise ValueError(f"{key}: bad template: {exc}") from None
        return self

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.fullmatch(key):
                raise ValueError(f"'{key}' is not a label name (letters, digits and _)")
            if key in RESERVED_LABELS:
                raise ValueError(f"'{key}' is set by balance-monitor itself")
        return value


class _ConditionRule(_RuleBase):
    """A rule whose condition holds for a while: it fires, may repeat, and resolves."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: The condition must hold this long (over consecutive polls) before the alert fires.
    for_: Duration = Field(default=timedelta(0), alias="for")
    #: Notify again this often while the alert keeps firing (off when left out).
    repeat: Duration | None = None
    #: Whether the alert's end is notified.
    send_resolved: bool = True

    @property
    def kind(self) -> AlertKind:
        return "condition"

    @property
    def notifies_resolved(self) -> bool:
        return self.kind == "condition" and self.send_resolved

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value


def _numeric_field(value: str) -> str:
    if value not in NUMERIC_FIELDS:
        raise ValueError(
            f"'{value}' is not a numeric field; use one of {', '.join(NUMERIC_FIELDS)}"
        )
    return value


def _number(value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    # TOML floats arrive as float: go through str so 0.1 stays 0.1.
    return Decimal(str(value)) if isinstance(value, float) else value


Number: TypeAlias = Annotated[Decimal, BeforeValidator(_number)]
NumericField: TypeAlias = Annotated[str, AfterValidator(_numeric_field)]


class RestrictionChangeRuleConfig(_RuleBase):
    type: Literal["restriction_change"]


class ThresholdRuleConfig(_ConditionRule):
    type: Literal["threshold"]
    field: NumericField
    op: Op
    value: Number
    #: Hysteresis: once firing, resolve only when the condition no longer holds against
    #: ``clear`` instead of ``value`` (``op = "<"``, ``value = 1000``, ``clear = 1200``).
    clear: Number | None = None

    @model_validator(mode="after")
    def _clear(self) -> ThresholdRuleConfig:
        if self.clear is None:
            return self
        if self.op in ("==", "!="):
            raise ValueError(f"clear: not used with op '{self.op}'")
        if self.op in ("<", "<=") and self.clear < self.value:
            raise ValueError(f"clear: must be at least value ({self.value}) with op '{self.op}'")
        if self.op in (">", ">=") and self.clear > self.value:
            raise ValueError(f"clear: must be at most value ({self.value}) with op '{self.op}'")
        return self


class ChangeRuleConfig(_RuleBase):
    type: Literal["change"]
    field: str

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in KNOWN_FIELDS or value == "account_number":
            fields = ", ".join(f for f in KNOWN_FIELDS if f != "account_number")
            raise ValueError(f"unknown field '{value}'; use one of {fields}")
        return value


class ExpressionRuleConfig(_ConditionRule):
    """A condition in the Common Expression Language over the account's fields."""

    type: Literal["expression"]
    when: Annotated[str, Field(min_length=1)]
    #: Record fields beyond the documented ones that ``when`` may name (ones the vendor added
    #: after this release); they are not type-checked in advance.
    fields: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ...] = ()

    @model_validator(mode="after")
    def _compile(self) -> ExpressionRuleConfig:
        from monitor.expr import ExpressionError, compile_expression

        try:
            compile_expression(self.when, extra_fields=self.fields)
        except ExpressionError as exc:
            raise ValueError(f"when: {exc}") from None
        return self


class DeltaRuleConfig(_ConditionRule):
    """A numeric field moved by at least ``by`` (or ``by_pct`` percent) since the previous
    poll (an event), or within ``window`` (a condition: fires, and resolves once the move
    is no longer inside the window)."""

    type: Literal["delta"]
    field: NumericField
    by: Number | None = None
    by_pct: Number | None = None
    direction: Literal["down", "up", "any"] = "any"
    window: Duration | None = None

    @property
    def kind(self) -> AlertKind:
        """Without a ``window`` a delta is an event (a move between two polls)."""
        return "condition" if self.window is not None else "event"

    @model_validator(mode="after")
    def _amount(self) -> DeltaRuleConfig:
        if (self.by is None) == (self.by_pct is None):
            raise ValueError("give exactly one of by, by_pct")
        amount = self.by if self.by is not None else self.by_pct
        if amount is not None and amount <= 0:
            raise ValueError(f"{'by' if self.by is not None else 'by_pct'}: must be positive")
        if self.window is None:
            for key, value, default in (
                ("for", self.for_, timedelta(0)),
                ("repeat", self.repeat, None),
            ):
                if value != default:
                    raise ValueError(f"{key}: needs window (without it a delta is an event)")
        elif self.window < timedelta(minutes=1):
            raise ValueError("window: must be at least 1m")
        return self


class AccountAddedRuleConfig(_RuleBase):
    type: Literal["account_added"]


class AccountRemovedRuleConfig(_RuleBase):
    type: Literal["account_removed"]


class StaleRuleConfig(_ConditionRule):
    """A field has not changed for longer than ``for``."""

    type: Literal["stale"]
    field: str
    #: Values that are never stale (e.g. ``[0]`` for ``unsettled_cash``).
    ignore: tuple[str | int | float | bool, ...] = ()

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        return ChangeRuleConfig._known(value)

    @field_validator("ignore")
    @classmethod
    def _exact(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_number(v) if isinstance(v, float) else v for v in value)

    @model_validator(mode="after")
    def _for(self) -> StaleRuleConfig:
        if self.for_ <= timedelta(0):
            raise ValueError("for: required for a stale rule (how long unchanged is stale)")
        return self


RuleConfig: TypeAlias = Annotated[
    RestrictionChangeRuleConfig
    | ThresholdRuleConfig
    | ChangeRuleConfig
    | ExpressionRuleConfig
    | DeltaRuleConfig
    | AccountAddedRuleConfig
    | AccountRemovedRuleConfig
    | StaleRuleConfig,
    Field(discriminator="type"),
]

Weekday: TypeAlias = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")


class MuteConfig(_Model):
    """``[[mute]]``: quiet hours. Alert state still changes; notifications are held."""

    name: Name
    #: The days a window starts on (all days when left out).
    days: tuple[Weekday, ...] = WEEKDAYS
    start: str = "00:00"
    #: ``"23:59"`` and ``"24:00"`` mean the end of the day; an ``end`` before ``start`` runs
    #: past midnight into the next day.
    end: str = "24:00"
    timezone: str = "America/New_York"
    #: The rules it mutes (``source_down`` included); every rule when left out.
    rules: tuple[Name, ...] | None = Field(default=None, min_length=1)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError("must be a time like '08:30' (24-hour HH:MM)")
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return ScheduleConfig._zone(value)

    @model_validator(mode="after")
    def _span(self) -> MuteConfig:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        return self

    def covers(self, rule: str) -> bool:
        return self.rules is None or rule in self.rules


# --------------------------------------------------------------------------- root


class Config(BaseSettings):
    """The whole configuration file. Built only by :func:`load_config` (or from a dict in tests)."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    api: ApiConfig | None = None
    sources: tuple[SourceConfig, ...] = ()
    schedule: ScheduleConfig = ScheduleConfig()
    state: StateConfig = StateConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    sinks: tuple[SinkConfig, ...] = Field(min_length=1)
    rules: tuple[RuleConfig, ...] = ()
    mute: tuple[MuteConfig, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is the only source: an environment variable never changes a key
        # behind the operator's back (secrets name their own variables with *_env).
        return (init_settings,)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        if self.api is None and not self.sources:
            problems.append("api: give [api] or at least one [[sources]]")
        problems += _duplicates("sources", (s.name for s in self.sources), "source")
        for i, source in enumerate(self.sources):
            if self.api is not None and source.name == DEFAULT_SOURCE:
                problems.append(f"sources[{i}].name: '{DEFAULT_SOURCE}' is the name of [api]")
            if source.interval is not None and self.schedule.cron is not None:
                problems.append(f"sources[{i}].interval: not used with [schedule] cron")
        source_names = {s.name for s in self.all_sources()}
        problems += _duplicates("sinks", (s.name for s in self.sinks), "sink")
        problems += _duplicates("rules", (r.name for r in self.rules), "rule")
        sink_names = {s.name for s in self.sinks}
        for i, rule in enumerate(self.rules):
            if rule.name == SOURCE_DOWN_RULE:
                problems.append(f"rules[{i}].name: '{SOURCE_DOWN_RULE}' is the built-in rule")
            for name in rule.sinks or ():
                if name not in sink_names:
                    problems.append(f"rules[{i}].sinks: unknown sink '{name}'")
            for name in rule.sources or ():
                if name not in source_names:
                    problems.append(f"rules[{i}].sources: unknown source '{name}'")
        problems += _duplicates("mute", (m.name for m in self.mute), "mute")
        rule_names = {r.name for r in self.rules} | {SOURCE_DOWN_RULE}
        for i, mute in enumerate(self.mute):
            for name in mute.rules or ():
                if name not in rule_names:
                    problems.append(f"mute[{i}].rules: unknown rule '{name}'")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def rule(self, name: str) -> RuleConfig | None:
        return next((r for r in self.rules if r.name == name), None)

    def all_sources(self) -> list[SourceSpec]:
        """Every source to poll: ``[api]`` as ``default``, then ``[[sources]]`` in file order."""
        specs = []
        if self.api is not None:
            specs.append(SourceSpec(DEFAULT_SOURCE, self.api, "api", None))
        specs += [
            SourceSpec(s.name, s, f"sources[{i}]", s.interval) for i, s in enumerate(self.sources)
        ]
        return specs

    def rules_for(self, source: str) -> tuple[RuleConfig, ...]:
        return tuple(r for r in self.rules if r.applies_to(source))

    def secret_refs(self) -> list[SecretRef]:
        refs = [ref for spec in self.all_sources() for ref in spec.config.secret_refs_at(spec.key)]
        for i, sink in enumerate(self.sinks):
            refs += sink.secret_refs(i)
        return refs

    def sinks_for(
        self,
        rule: str,
        severity: Severity | None = None,
        *,
        resolved: bool = False,
        definition: RuleConfig | None = None,
    ) -> tuple[str, ...]:
        """The sink names a rule's notifications go to (``source_down``: every sink), less
        those whose ``min_severity`` is above ``severity``, and, for a ``resolved`` one of a
        rule with ``send_resolved = false``, less those that do not track alert state.
        ``definition`` stands in for a rule no longer in the config (a reload removed it)."""
        found = definition if definition is not None else self.rule(rule)
        names = found.sinks if found is not None else None
        quiet = resolved and found is not None and not found.notifies_resolved
        return tuple(
            s.name
            for s in self.sinks
            if (names is None or s.name in names)
            and (severity is None or s.accepts(severity))
            and (not quiet or s.TRACKS_STATE)
        )

    def summary(self) -> str:
        specs = self.all_sources()
        if len(specs) == 1:
            s = specs[0]
            where = f"source {public_url(s.config.url)} ({s.config.credentials()})"
        else:
            where = f"{len(specs)} sources ({', '.join(s.name for s in specs)})"
        return (
            f"{where}, {describe_schedule(self.schedule)}, "
            f"{_plural(len(self.rules), 'rule')}, {_plural(len(self.sinks), 'sink')}"
            + (f", {_plural(len(self.mute), 'mute window')}" if self.mute else "")
        )


@dataclass(frozen=True)
class SourceSpec:
    """One source to poll, whichever table it came from."""

    name: str
    config: SourceBase
    key: str  # "api" or "sources[2]": where its keys live, for messages
    interval: timedelta | None  # its own interval, overriding [schedule]


def describe_schedule(schedule: ScheduleConfig) -> str:
    if schedule.cron is not None:
        return f"cron '{schedule.cron}' ({schedule.timezone})"
    text = f"every {format_duration(schedule.interval)}"
    if schedule.market_hours is not None:
        off = schedule.off_hours_interval or schedule.interval
        text += f" in {schedule.market_hours} hours, every {format_duration(off)} outside"
    return text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _duplicates(section: str, names: Iterable[str], what: str) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{section}[{i}].name: duplicate {what} name '{name}'")
        seen.add(name)
    return problems


# --------------------------------------------------------------------------- loading


def default_config_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_CONFIG


def load_config(path: Path) -> Config:
    """Read, parse and validate the file; every problem is a ``ConfigError`` naming the key."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from exc
    return config_from_dict(data, base_dir=path.resolve().parent, origin=str(path))


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path, origin: str = "config") -> Config:
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        problems = format_validation_errors(exc)
        raise ConfigError(f"{origin}: {_plural(len(problems), 'problem')}", problems) from None
    return _resolve_paths(config, base_dir)


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    def fix(path: Path | None) -> Path | None:
        if path is None or path.is_absolute() or str(path).startswith("$"):
            return path
        return base_dir / path

    state_path = config.state.path
    if not state_path.is_absolute():
        state_dir = os.environ.get("STATE_DIRECTORY")  # systemd's StateDirectory=
        state_path = Path(state_dir) / state_path if state_dir else base_dir / state_path
    sinks = tuple(
        sink.model_copy(
            update={
                **{f"{n}_file": fix(getattr(sink, f"{n}_file")) for n in sink.SECRETS},
                **({"ca_file": fix(sink.ca_file)} if isinstance(sink, EmailSinkConfig) else {}),
            }
        )
        for sink in config.sinks
    )

    def fix_source(source: _S) -> _S:
        update: dict[str, Any] = {"token_file": fix(source.token_file)}
        if source.oauth is not None:
            update["oauth"] = source.oauth.model_copy(
                update={f"{n}_file": fix(getattr(source.oauth, f"{n}_file")) for n in OAUTH_SECRETS}
            )
        return source.model_copy(update=update)

    return config.model_copy(
        update={
            "api": fix_source(config.api) if config.api is not None else None,
            "sources": tuple(fix_source(s) for s in config.sources),
            "state": config.state.model_copy(update={"path": state_path}),
            "sinks": sinks,
        }
    )


_S = TypeVar("_S", bound="SourceBase")


# --------------------------------------------------------------------------- error messages

_TAGGED = {"rules", "sinks"}


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    skip_tag = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            skip_tag = True
            continue
        if skip_tag:
            skip_tag = False
            if out.split("[")[0] in _TAGGED and out.count("[") == 1 and part in _TAG_VALUES:
                continue  # pydantic puts the discriminator's value in the path
        out += f".{part}" if out else str(part)
    return out


_TAG_VALUES: set[str] = set()


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(options)}"
    if kind == "enum":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(options)}"
    if kind == "union_tag_invalid":
        known = ", ".join(sorted(re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))))
        what = "rule" if "restriction_change" in known else "sink"
        return f"unknown {what} type '{ctx.get('tag')}' (known: {known})"
    if kind == "union_tag_not_found":
        return "required key 'type' missing"
    if kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return "may contain only letters, digits and _ . : -"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def format_validation_errors(exc: ValidationError) -> list[str]:
    """One ``key.path: message`` line per problem; never the offending value (it may be secret)."""
    lines: list[str] = []
    errors = exc.errors(include_input=False, include_url=False)
    for error in errors:
        if error["type"] == "too_short" and _has_item_error(error["loc"], errors):
            continue  # pydantic counts the valid items only: the item's own error says it all
        loc = _location(tuple(error["loc"]))
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = f"{loc}.type"
        first = True
        for line in _message(error).splitlines():
            key = re.match(r"^([a-z_]+)(\[\d+\])?(\.[a-z_]+)*: ", line)
            if not first and not key and lines:
                lines[-1] += f"\n{line}"  # more of the same problem (an excerpt, a caret)
                continue
            first = False
            if key and key.group(1) in Config.model_fields:
                lines.append(line)  # a cross-reference problem that names its own key
            elif key and loc:
                lines.append(f"{loc}.{line}")  # a model's own check naming one of its keys
            else:
                lines.append(f"{loc}: {line}" if loc else line)
    return lines


def _has_item_error(loc: tuple[int | str, ...], errors: Iterable[Mapping[str, Any]]) -> bool:
    return any(len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors)


RULE_CONFIG_TYPES: dict[str, type[BaseModel]] = {
    "restriction_change": RestrictionChangeRuleConfig,
    "threshold": ThresholdRuleConfig,
    "change": ChangeRuleConfig,
    "expression": ExpressionRuleConfig,
    "delta": DeltaRuleConfig,
    "account_added": AccountAddedRuleConfig,
    "account_removed": AccountRemovedRuleConfig,
    "stale": StaleRuleConfig,
}
SINK_CONFIG_TYPES: dict[str, type[BaseModel]] = {
    "webhook": WebhookSinkConfig,
    "slack": SlackSinkConfig,
    "discord": DiscordSinkConfig,
    "msteams": MsTeamsSinkConfig,
    "telegram": TelegramSinkConfig,
    "email": EmailSinkConfig,
    "pagerduty": PagerDutySinkConfig,
    "alertmanager": AlertmanagerSinkConfig,
    "apprise": AppriseSinkConfig,
    "log": LogSinkConfig,
}
_TAG_VALUES.update(RULE_CONFIG_TYPES, SINK_CONFIG_TYPES)
