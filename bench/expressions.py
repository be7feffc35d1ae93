"""Which CEL library for ``monitor.expr``: ``cel`` (common-expression-language, Rust) or ``celpy``.

    .venv/bin/python bench/expressions.py [--accounts 10000] [--repeat 3]

Needs both installed (``.venv/bin/pip install -e '.[bench]'`` brings ``cel-python``). Prints
Markdown: import time, compile time of the issue's example expression, evaluation time over N
accounts (each activation built per account, as ``monitor.expr`` does: Decimal money -> double,
``previous`` -> map), then what each library reports for a syntax error, an undeclared variable,
a type error and mixed int/double numbers, and how it is packaged. ``celpy`` runs its
interpreter: its ``CompiledRunner`` transpiles to Python source and ``exec``s it, which we rule out.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import cel
import celpy
import celpy.celtypes as ct
from packaging.requirements import Requirement

from monitor.expr import compile_expression
from monitor.models import KNOWN_ENUMS, MONEY_FIELDS, JSONValue

EXAMPLE = "daytrades_count >= 3 && account_value_total < 25000.0 && margin_type != 'cash'"
EXAMPLE_NAMES = ("account_value_total", "daytrades_count", "margin_type")
Record = dict[str, JSONValue]


def make_accounts(n: int, seed: int = 6) -> list[tuple[Record, Record]]:
    """(record, previous) pairs shaped like the API's, plus two vendor fields (one a list)."""
    rng = random.Random(seed)
    margin_types = sorted(KNOWN_ENUMS["margin_type"])
    out = []
    for i in range(n):
        record: Record = {
            "account_number": f"{10_000_000 + i}@vision",
            "trade_platform": "ETNA",
            "margin_type": rng.choice(margin_types),
            "restriction": "none",
            "restriction_reason": None,
            "daytrades_count": rng.randint(0, 6),
            "pattern_day_trader": rng.random() < 0.1,
            "tags": ["a", "b"],
        }
        for name in MONEY_FIELDS:
            record[name] = Decimal(rng.randint(-5_000_00, 60_000_00)) / 100
        previous = dict(record, cash=Decimal(rng.randint(0, 60_000_00)) / 100)
        out.append((record, previous))
    return out


# -- cel (Rust): activation as plain Python values -------------------------------------------


def cel_value(value: JSONValue) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def cel_activation(record: Record, previous: Record, names: tuple[str, ...] | None) -> Any:
    keys = names if names is not None else [*record, "previous"]
    act: dict[str, Any] = {}
    for name in keys:
        if name == "previous":
            act[name] = {k: cel_value(v) for k, v in previous.items() if not _nested(v)}
        elif not _nested(record.get(name)):
            act[name] = cel_value(record.get(name))
    return act


# -- celpy: activation as celtypes -------------------------------------------------------------


def celpy_value(value: JSONValue) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return ct.BoolType(value)
    if isinstance(value, int):
        return ct.IntType(value)
    if isinstance(value, Decimal):
        return ct.DoubleType(float(value))
    return ct.StringType(str(value))


def celpy_activation(record: Record, previous: Record, names: tuple[str, ...] | None) -> Any:
    keys = names if names is not None else [*record, "previous"]
    act: dict[str, Any] = {}
    for name in keys:
        if name == "previous":
            act[name] = ct.MapType(
                {ct.StringType(k): celpy_value(v) for k, v in previous.items() if not _nested(v)}
            )
        elif not _nested(record.get(name)):
            act[name] = celpy_value(record.get(name))
    return act


def _nested(value: object) -> bool:
    return isinstance(value, list | dict)


CELPY_ENV = celpy.Environment()  # builds the lark parser once; sets sys.setrecursionlimit(2500)


def celpy_compile(text: str) -> Any:
    return CELPY_ENV.program(CELPY_ENV.compile(text))


LIBS: dict[str, dict[str, Callable[..., Any]]] = {
    "cel": {
        "compile": cel.compile,
        "activation": cel_activation,
        "run": lambda program, act: program.execute(act),
    },
    "celpy": {
        "compile": celpy_compile,
        "activation": celpy_activation,
        "run": lambda program, act: program.evaluate(act),
    },
}


# -- measurements ------------------------------------------------------------------------------


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    command = [sys.executable, "-P", "-c", code]  # -P: not this directory
    runs = [
        float(subprocess.run(command, check=True, capture_output=True).stdout) for _ in range(3)
    ]
    return min(runs) * 1000


def compile_us(compile_fn: Callable[[str], Any], n: int = 200) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        compile_fn(EXAMPLE)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def eval_ms(
    lib: Mapping[str, Callable[..., Any]],
    accounts: list[tuple[Record, Record]],
    names: tuple[str, ...] | None,
    repeat: int,
) -> tuple[float, int]:
    program = lib["compile"](EXAMPLE)
    activation, run = lib["activation"], lib["run"]
    best, hits = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        hits = sum(1 for rec, prev in accounts if run(program, activation(rec, prev, names)))
        best = min(best, time.perf_counter() - t)
    return best * 1000, hits


def module_eval_ms(accounts: list[tuple[Record, Record]], repeat: int) -> tuple[float, int]:
    expression = compile_expression(EXAMPLE)
    best, hits = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        hits = sum(1 for rec, prev in accounts if expression.evaluate(rec, prev))
        best = min(best, time.perf_counter() - t)
    return best * 1000, hits


def outcome(lib: Mapping[str, Callable[..., Any]], text: str, variables: Record) -> str:
    """What happens at compile time and at evaluation, in one cell."""
    try:
        program = lib["compile"](text)
    except Exception as exc:  # whatever the library raises
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f" [line={line}, column={column}]" if column is not None else ""
        return f"compile: {type(exc).__name__}{where}: {_short(exc)}"
    names = (*variables, "previous")
    try:
        result = lib["run"](program, lib["activation"](variables, {}, names))
    except Exception as exc:
        return f"compiles; eval: {type(exc).__name__}: {_short(exc)}"
    return f"compiles; eval -> {result!r}"


def _short(exc: BaseException, limit: int = 110) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def wheel(dist: str) -> str:
    meta = importlib.metadata.distribution(dist)
    lines = (meta.read_text("WHEEL") or "").splitlines()
    tags = [line.split(": ", 1)[1] for line in lines if line.startswith("Tag:")]
    requires = [Requirement(r) for r in meta.requires or []]
    needed = {r.name for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})}
    return f"{dist} {meta.version}: wheel {', '.join(tags)}; requires {', '.join(sorted(needed))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    accounts = make_accounts(args.accounts)
    n = args.accounts

    print(f"## CEL libraries: `{EXAMPLE}`\n")
    print(f"Python {sys.version.split()[0]}, {n:,} accounts, best of {args.repeat}.\n")
    print(f"| library | import ms | compile µs | eval {n:,}, full activation ms |", end="")
    print(f" eval {n:,}, used variables only ms | µs/account (used only) | true |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, lib in LIBS.items():
        full, hits_full = eval_ms(lib, accounts, None, args.repeat)
        used, hits = eval_ms(lib, accounts, EXAMPLE_NAMES, args.repeat)
        if hits != hits_full:
            raise SystemExit(f"{name}: {hits} != {hits_full} accounts match")
        print(
            f"| {name} | {import_ms(name):.0f} | {compile_us(lib['compile']):.1f} | {full:.1f} |"
            f" {used:.1f} | {used * 1000 / n:.2f} | {hits:,} |"
        )
    module, hits = module_eval_ms(accounts, args.repeat)
    print(f"| monitor.expr (cel) | | | | {module:.1f} | {module * 1000 / n:.2f} | {hits:,} |")

    checks: list[tuple[str, str, Record]] = [
        ("syntax error", "daytrades_count >= 3 &&\n  account_value_total <", {}),
        ("undeclared variable", "daytrade_count >= 3", {"daytrades_count": 4}),
        ("string < number", "cash < 'x'", {"cash": Decimal(1)}),
        ("non-bool result", "cash + 1.0", {"cash": Decimal(1)}),
        (
            "double < int literal",
            "account_value_total < 25000",
            {"account_value_total": Decimal(1)},
        ),
        ("int >= double literal", "daytrades_count >= 3.0", {"daytrades_count": 4}),
        ("double + int (spec: error)", "cash + 1 > 0.0", {"cash": Decimal(1)}),
        ("has() on empty map", "has(previous.cash)", {}),
        ("Python escape", "__import__('os')", {}),
    ]
    print("\n| check | cel | celpy |\n|---|---|---|")
    for label, text, variables in checks:
        cells = [outcome(lib, text, variables).replace("|", "\\|") for lib in LIBS.values()]
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    print()
    for dist in ("common-expression-language", "cel-python"):
        print(f"- {wheel(dist)}")


if __name__ == "__main__":
    main()
