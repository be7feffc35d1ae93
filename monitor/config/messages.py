"""Pydantic's validation errors as problem lines: ``key.path: message``, one per problem.

A line names the key the way the TOML file spells it (``rules[1].op``, ``sinks[0].type``) and
never quotes the offending value: it may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from monitor.config.root import Config
from monitor.config.rules import RULE_CONFIG_TYPES
from monitor.config.sinks import SINK_CONFIG_TYPES

#: The sections that are lists of tagged tables: pydantic puts the tag in an item's path.
_TAGGED = {"rules", "sinks"}
_TAG_VALUES = {*RULE_CONFIG_TYPES, *SINK_CONFIG_TYPES}


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
        tags = sorted(re.findall(r"'([^']*)'", str(ctx.get("expected_tags", ""))))
        what = "rule" if set(tags) == set(RULE_CONFIG_TYPES) else "sink"
        return f"unknown {what} type '{ctx.get('tag')}' (known: {', '.join(tags)})"
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
