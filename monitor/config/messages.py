"""Pydantic's validation errors as problem lines: ``key.path: message``, one per problem.

A line names the key the way the TOML file spells it (``rules[1].op``), a table of a list also by
its name (``rules[1] (low-cash).op``), and never quotes the offending value: it may be a secret.
The key comes from pydantic's location of the error, or from the validator that raised a
:class:`~monitor.config.types.KeyProblemsError`; a message is never parsed for one, so its text (a
template's error, an excerpt of an expression) stays the text of its own problem, however many
lines it has. A mistyped key is told the nearest key its table has.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from monitor.config.root import Config
from monitor.config.rules import RULE_CONFIG_TYPES
from monitor.config.sinks import SINK_CONFIG_TYPES
from monitor.config.types import KeyProblemsError, item_key

#: The sections that are lists of named tables: a problem in one names the table too.
_NAMED = frozenset({"sources", "sinks", "rules", "mute", "digests"})
#: The sections that are lists of tagged tables: pydantic puts the tag in an item's path.
_TAGGED = frozenset({"rules", "sinks"})
_TAG_VALUES = {*RULE_CONFIG_TYPES, *SINK_CONFIG_TYPES}


def _location(loc: tuple[int | str, ...], data: Mapping[str, Any] | None) -> str:
    """``('rules', 3, 'threshold', 'value')`` -> ``rules[3] (low-cash).value``."""
    out = ""
    if len(loc) >= 2 and loc[0] in _NAMED and isinstance(loc[1], int):
        section, index = str(loc[0]), loc[1]
        out = item_key(section, index, _name_in(data, section, index))
        # pydantic puts the discriminator's value in the path: ('rules', 3, 'threshold', ...)
        tagged = section in _TAGGED and len(loc) > 2 and loc[2] in _TAG_VALUES
        loc = loc[3:] if tagged else loc[2:]
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = _toml_key(part)
            out += f".{key}" if out else key
    return out


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    """A key as TOML spells it: bare, or quoted when it is empty or holds other characters
    (``"a b"``, ``""``), so that a problem line always starts with a key."""
    if _BARE_KEY.fullmatch(key):
        return key
    escaped = "".join(
        f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c
        for c in key
    )
    return f'"{escaped}"'


def _name_in(data: Mapping[str, Any] | None, section: str, index: int) -> object:
    """The ``name`` of ``data[section][index]`` as the file gives it (anything, or ``None``)."""
    items = data.get(section) if isinstance(data, Mapping) else None
    if isinstance(items, list | tuple) and 0 <= index < len(items):
        item = items[index]
        return item.get("name") if isinstance(item, Mapping) else None
    return None


def _models(annotation: object) -> list[type[BaseModel]]:
    """The models an annotation holds (``tuple[A | B, ...] | None`` -> ``[A, B]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _keys(model: type[BaseModel]) -> dict[str, object]:
    """A model's keys as the file spells them (an alias: ``for``, ``from``) -> annotation."""
    return {info.alias or name: info.annotation for name, info in model.model_fields.items()}


def _model_at(loc: Iterable[int | str]) -> type[BaseModel] | None:
    """The model of the table at ``loc`` (a pydantic location), ``None`` when not one model."""
    models: list[type[BaseModel]] = [Config]
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the same annotation
        tagged = [m for m in models if _tag(m) == part]
        if tagged:
            models = tagged
            continue
        annotations = [a for m in models if (a := _keys(m).get(part)) is not None]
        models = [m for a in annotations for m in _models(a)]
    return models[0] if len(models) == 1 else None


def _tag(model: type[BaseModel]) -> object:
    info = model.model_fields.get("type")
    args = get_args(info.annotation) if info is not None else ()
    return args[0] if len(args) == 1 else None


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return "unknown key"
    close = difflib.get_close_matches(loc[-1], sorted(_keys(model)), n=1)
    return f"unknown key (did you mean '{close[0]}'?)" if close else "unknown key"


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(tuple(error["loc"]))
    if kind == "missing":
        return "required key missing"
    if kind in ("literal_error", "enum"):
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(options)}"
    if kind == "union_tag_invalid":
        tags = sorted(re.findall(r"'([^']*)'", str(ctx.get("expected_tags", ""))))
        what = "rule" if set(tags) == set(RULE_CONFIG_TYPES) else "sink"
        return f"unknown {what} type '{ctx.get('tag')}' (known: {', '.join(tags)})"
    if kind == "union_tag_not_found":
        return "required key 'type' missing"
    if kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return "may contain only letters, digits and _ . : -"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        return f"must be at {'least' if kind == 'greater_than_equal' else 'most'} {bound}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def format_validation_errors(
    exc: ValidationError, data: Mapping[str, Any] | None = None
) -> list[str]:
    """One ``key.path: message`` line per problem; never the offending value (it may be secret).

    ``data`` is what was validated: the names of the tables of lists are read from it.
    """
    lines: list[str] = []
    errors = exc.errors(include_input=False, include_url=False)
    for error in errors:
        if error["type"] == "too_short" and _has_item_error(error["loc"], errors):
            continue  # pydantic counts the valid items only: the item's own error says it all
        key = _location(tuple(error["loc"]), data)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            key = f"{key}.type"
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, KeyProblemsError):
            for sub, message in cause.problems:
                where = sub if cause.absolute or not key else f"{key}.{sub}"
                lines.append(f"{where}: {message}")
            continue
        message = _message(error)
        lines.append(f"{key}: {message}" if key else message)
    return lines


def _has_item_error(loc: tuple[int | str, ...], errors: Iterable[Mapping[str, Any]]) -> bool:
    return any(len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors)
