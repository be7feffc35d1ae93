"""balance-monitor: watch brokerage account balances and alert on what changes."""

import sys as _sys
from collections.abc import Sequence as _Sequence
from importlib.abc import MetaPathFinder as _MetaPathFinder
from types import ModuleType as _ModuleType

__version__ = "0.1.0"


class _NoRichForStructlog(_MetaPathFinder):
    """Keeps ``rich`` from structlog, without importing structlog now.

    ``structlog.dev`` imports ``rich`` whenever it is installed (it is, for the command-line tool
    of the CEL library) to pretty-print tracebacks, which we never do (``plain_traceback``: a
    pretty traceback with local variables could print a secret). Loading it costs every daemon
    about 1.5 MiB and 15 ms. This finder, first on ``sys.meta_path``, answers "no such module"
    to that one import, made while ``structlog.dev`` is being executed, and stays out of every
    other import (``rich`` itself imports normally later). Importing structlog here instead
    would cost ``--version`` and ``check-config`` 40 ms they do not need.
    """

    def find_spec(
        self, fullname: str, path: _Sequence[str] | None, target: _ModuleType | None = None, /
    ) -> None:
        if fullname == "rich" and _importing("structlog.dev"):
            raise ModuleNotFoundError("rich is not used by balance-monitor's logs", name=fullname)


def _importing(module: str) -> bool:
    """Whether ``module`` is being executed (in ``sys.modules``, not finished); should the
    import system stop saying so, rich is merely loaded again."""
    spec = getattr(_sys.modules.get(module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


if "structlog" not in _sys.modules:
    _sys.meta_path.insert(0, _NoRichForStructlog())
