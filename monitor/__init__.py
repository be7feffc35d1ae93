"""balance-monitor: watch brokerage account balances and alert on what changes."""

import sys as _sys

__version__ = "0.1.0"


def _structlog_without_rich() -> None:
    """Import structlog without ``rich``.

    ``structlog.dev`` imports ``rich`` whenever it is installed (it is, for the command-line
    tool of the CEL library) to pretty-print tracebacks, which we never do (``plain_traceback``:
    a pretty traceback with local variables could print a secret). Loading it costs every
    daemon about 1.5 MiB and 15 ms, so structlog is imported with ``rich`` hidden; the CEL
    library still imports it normally when an expression rule needs it.
    """
    if "structlog" in _sys.modules or "rich" in _sys.modules:
        return
    _sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]


_structlog_without_rich()
