"""structlog set-up: console lines on a terminal, JSON lines otherwise; secrets never logged.

Console lines are coloured on a terminal unless ``NO_COLOR`` is set to anything but the empty
string (https://no-color.org).

Events are constant snake_case names with key-value context. Records from the standard library's
``logging`` (APScheduler, aiohttp) go through the same renderer.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from monitor import encoding

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _json(event: Any, **_: Any) -> str:
    return encoding.dumps(event, default=str)


def colours(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream``: a terminal, and ``NO_COLOR`` unset or empty."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def configure(
    level: str = "info",
    fmt: str | None = None,
    stream: TextIO | None = None,
    *,
    console: Processor | None = None,
) -> None:
    """Configure structlog and stdlib logging once per process (again on reload is fine).
    ``console`` renders the console format instead of structlog's renderer (the demo's)."""
    out = stream if stream is not None else sys.stderr
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json)
        # Never show_locals: a frame's locals can hold the token or a webhook URL.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = console or structlog.dev.ConsoleRenderer(
            colors=colours(out), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # APScheduler says "Running job ..." at INFO for every tick: keep it at WARNING.
    logging.getLogger("apscheduler").setLevel(max(LEVELS[level], logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
