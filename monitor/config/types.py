"""What every section uses: the frozen model base, durations, names, paths, URLs, numbers.

A type here is an ``Annotated`` alias whose validator raises ``ValueError`` with the message the
user sees after the key (``schedule.interval: must be at least 1s``), never quoting the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeAlias, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr


class FrozenModel(BaseModel):
    """Every config table: immutable once loaded, and a key it does not know is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def models_by_type(union: object) -> dict[str, type[BaseModel]]:
    """The models of a union discriminated on ``type`` (``Annotated[A | B, Field(...)]``), by
    their ``type`` literal, in the union's order: the union is the one list of them."""
    models: dict[str, type[BaseModel]] = {}
    for model in get_args(get_args(union)[0]):
        [tag] = get_args(model.model_fields["type"].annotation)
        models[tag] = model
    return models


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


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration: TypeAlias = Annotated[timedelta, BeforeValidator(parse_duration)]


def at_least_1s(value: timedelta | None) -> timedelta | None:
    """For intervals: a poll more often than every second is a mistake."""
    if value is not None and value < timedelta(seconds=1):
        raise ValueError("must be at least 1s")
    return value


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


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


def check_url_secret(value: SecretStr | None) -> SecretStr | None:
    """A URL that is a secret (a webhook's): checked like any URL, never quoted."""
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


# --------------------------------------------------------------------------- numbers


def to_number(value: Any) -> Any:
    """A TOML number as an exact one: ints stay, floats become ``Decimal`` (bools are refused)."""
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    # TOML floats arrive as float: go through str so 0.1 stays 0.1.
    return Decimal(str(value)) if isinstance(value, float) else value


Number: TypeAlias = Annotated[Decimal, BeforeValidator(to_number)]
