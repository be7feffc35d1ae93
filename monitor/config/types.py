"""What every section uses: the frozen model base, durations, names, paths, URLs, numbers.

A type here is an ``Annotated`` alias whose validator raises ``ValueError`` with the message the
user sees after the key (``schedule.interval: must be at least 1s``), never quoting the value.
Every duration and number key has a range (:func:`within`, :class:`NumberRange`); a validator
that knows which key a problem is about raises :class:`KeyProblemsError`; whatever else a
validator raises becomes a problem of its key (:class:`FrozenModel`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeAlias, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
)
from pydantic_core import core_schema


def _model_fields(schema: core_schema.CoreSchema) -> dict[str, Any] | None:
    """The fields of a model's schema, inside the validators that wrap it."""
    current: Any = schema
    while isinstance(current, dict):
        if current.get("type") == "model-fields":
            fields: dict[str, Any] = current["fields"]
            return fields
        current = current.get("schema")
    return None


def _guarded(schema: core_schema.CoreSchema) -> core_schema.CoreSchema:
    return core_schema.no_info_wrap_validator_function(_guard, schema)


def _guard(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Any:
    """Run ``handler``; an exception that pydantic does not report becomes one it does.

    Only the exception's class is told: its text may quote the value, and the value a secret.
    """
    try:
        return handler(value)
    except (ValueError, AssertionError):  # pydantic's own (ValidationError is a ValueError)
        raise
    except Exception as exc:
        raise ValueError(f"cannot be checked ({type(exc).__name__})") from None


def models_by_type(union: object) -> dict[str, type[BaseModel]]:
    """The models of a union discriminated on ``type`` (``Annotated[A | B, Field(...)]``), by
    their ``type`` literal, in the union's order: the union is the one list of them."""
    models: dict[str, type[BaseModel]] = {}
    for model in get_args(get_args(union)[0]):
        [tag] = get_args(model.model_fields["type"].annotation)
        models[tag] = model
    return models


class FrozenModel(BaseModel):
    """Every config table: immutable once loaded, and a key it does not know is an error.

    Whatever a validator of the table raises is a validation error of the key it was checking
    (of the table, for a check of the whole table), never an exception of another kind: a
    library called to check a value (Jinja2, a time zone database, a cron parser) may raise
    anything on a hostile value, and ``check-config`` must still name the key, not crash.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        fields = _model_fields(schema)
        for field in fields.values() if fields is not None else ():
            inner = field["schema"]
            if inner["type"] == "literal":
                continue  # nothing to guard, and a discriminator (``type``) must stay bare
            if inner["type"] == "default":  # wrap inside, or the default is no longer applied
                inner["schema"] = _guarded(inner["schema"])
            else:
                field["schema"] = _guarded(inner)
        return _guarded(schema)


# --------------------------------------------------------------------------- problems


class KeyProblemsError(ValueError):
    """Problems a validator found at keys it names itself: ``(key, message)`` pairs.

    A key is relative to the table being validated (``"clear"`` of a rule), or, ``absolute``,
    the whole path from the file's root (``"rules[1] (x).sinks"``: the checks that span
    sections). The problem lines take the keys from here; a message is never parsed for one.
    """

    def __init__(self, problems: Iterable[tuple[str, str]], *, absolute: bool = False) -> None:
        self.problems = tuple(problems)
        self.absolute = absolute
        super().__init__("\n".join(f"{key}: {message}" for key, message in self.problems))


def key_problem(key: str, message: str) -> KeyProblemsError:
    """The one problem of key ``key`` of the table being validated."""
    return KeyProblemsError([(key, message)])


_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # what :data:`Name` accepts


def item_key(section: str, index: int, name: object) -> str:
    """``rules[3] (low-cash)``: a table of a list, by its index and, when it has one, its name."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return f"{section}[{index}] ({name})"
    return f"{section}[{index}]"


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HELP = "must be a duration like '30s', '5m', '1h', '1h30m' or a number of seconds"


class DurationTooLongError(ValueError):
    """A duration beyond what ``timedelta`` holds (about 2.7 million years)."""


def parse_duration(value: Any) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a number of seconds -> ``timedelta``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    spelled_infinite = False
    if isinstance(value, int | float | Decimal):
        spelled_infinite = not isinstance(value, int) and not math.isfinite(value)
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond a float's range
            raise DurationTooLongError("is too long") from None
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        spelled_infinite = "inf" in text or "nan" in text
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
    if math.isnan(seconds) or (math.isinf(seconds) and spelled_infinite):  # "inf", TOML nan
        raise ValueError(_DURATION_HELP)
    if seconds < 0:
        raise ValueError("must not be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # beyond timedelta's ~2.7 million years (or so many digits: inf)
        raise DurationTooLongError("is too long") from None


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


#: A duration without bounds: for values that are not keys of the file (a key has a range:
#: :func:`within`).
Duration: TypeAlias = Annotated[timedelta, BeforeValidator(parse_duration)]


@dataclass(frozen=True)
class DurationRange:
    """The validator of a duration key: parses it and checks it lies in ``[low, high]``.

    The bounds are written as in the file (``"1s"``, ``"1d"``) and quoted so in the message.
    """

    low: str
    high: str
    #: Why the bound is there, after the message: ``must be at most 10m (...)``.
    note: str = ""

    def __call__(self, value: Any) -> timedelta:
        note = f" ({self.note})" if self.note else ""
        try:
            duration = parse_duration(value)
        except DurationTooLongError:
            raise ValueError(f"must be at most {self.high}{note}") from None
        if duration > parse_duration(self.high):
            raise ValueError(f"must be at most {self.high}{note}")
        if duration < parse_duration(self.low):
            raise ValueError(f"must be at least {self.low}")
        return duration


def within(low: str, high: str, note: str = "") -> BeforeValidator:
    """The validator of a duration key from ``low`` to ``high``:
    ``Annotated[timedelta, within("1s", "1d")]``."""
    return BeforeValidator(DurationRange(low, high, note))


#: How often something is polled (``[schedule] interval``, a source's ``interval``).
Interval: TypeAlias = Annotated[timedelta, within("1s", "1d")]
#: How long one request may take.
Timeout: TypeAlias = Annotated[timedelta, within("100ms", "5m")]
#: How long a condition must hold, or an alert be reminded of; the reach of a ``window``.
RuleDuration: TypeAlias = Annotated[timedelta, within("0s", "30d")]


# --------------------------------------------------------------------------- names

Name: TypeAlias = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def check_timezone(value: str) -> str:
    """An IANA time zone name (``America/New_York``) this machine knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{value}'") from None
    return value


# --------------------------------------------------------------------------- paths


def config_path(path: Path | None, base_dir: Path) -> Path | None:
    """A path the file names: a relative one is relative to ``base_dir``, the file's folder; an
    absolute one, or one that starts with a variable (``$CREDENTIALS_DIRECTORY/token``, expanded
    when the file is read), is kept."""
    if path is None or path.is_absolute() or str(path).startswith("$"):
        return path
    return base_dir / path


# --------------------------------------------------------------------------- URLs


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def check_http_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """An ``http://`` or ``https://`` URL a request can be sent to: a host (a name, or an IP
    address), a port from 1 to 65535 when one is given, no spaces or control characters.
    ``schemes`` are the schemes allowed (``ws``/``wss`` for a WebSocket's).

    The message never quotes the URL: a webhook's is a secret.
    """
    if _SPACE_OR_CONTROL.search(value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # "http://[::1/x"
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in schemes:
        article = "an" if schemes[0].startswith("h") else "a"  # "an http://", "a ws://"
        raise ValueError(f"must be {article} {' or '.join(f'{s}://' for s in schemes)} URL")
    if not host:
        raise ValueError("must name a host")
    try:
        port = parts.port
    except ValueError:  # out of range, or not a number
        port = 0
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    if not _valid_host(host):
        raise ValueError("has an invalid host name")
    return value


def _valid_host(host: str) -> bool:
    """An IP address, or a name whose labels IDNA encodes to 1-63 letters, digits, - and _."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        encoded = host.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(encoded) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in encoded.split("."))


def check_url_secret(value: SecretStr | None) -> SecretStr | None:
    """A URL that is a secret (a webhook's): checked like any URL, never quoted."""
    if value is not None:
        check_http_url(value.get_secret_value())
    return value


#: An ``http://`` or ``https://`` URL kept as text (not a secret: balances and token endpoints).
HttpUrlText: TypeAlias = Annotated[
    str, BeforeValidator(lambda v: check_http_url(v) if isinstance(v, str) else v)
]


#: A ``ws://`` or ``wss://`` URL kept as text (the account stream's).
WsUrlText: TypeAlias = Annotated[
    str,
    BeforeValidator(lambda v: check_http_url(v, ("ws", "wss")) if isinstance(v, str) else v),
]


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


# --------------------------------------------------------------------------- numbers


def to_number(value: Any) -> Any:
    """A TOML number as an exact one: ints stay, floats become ``Decimal`` (bools are refused)."""
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    # TOML floats arrive as float: go through str so 0.1 stays 0.1.
    return Decimal(str(value)) if isinstance(value, float) else value


@dataclass(frozen=True)
class NumberRange:
    """The validator of a number key: checks it lies in ``[low, high]``."""

    low: Decimal
    high: Decimal

    def __call__(self, value: Decimal | int) -> Decimal | int:
        if value > self.high:
            raise ValueError(f"must be at most {self.high:,}")
        if value < self.low:
            raise ValueError(f"must be at least {self.low:,}")
        return value


#: The largest amount a rule compares with: a thousand trillion (far beyond any account).
MAX_AMOUNT = Decimal(10**15)

#: A rule's number (an amount, a count or a percentage), exact, at most :data:`MAX_AMOUNT`
#: either way.
Number: TypeAlias = Annotated[
    Decimal, BeforeValidator(to_number), AfterValidator(NumberRange(-MAX_AMOUNT, MAX_AMOUNT))
]
