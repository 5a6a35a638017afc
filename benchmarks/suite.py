"""The benchmarks in the order the table shows them; adding a row is one module and one line here.

Each module exposes `run(ctx: Context) -> list[Row]`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from benchmarks.harness import Context, Row

MODULES = (
    "bench_load",
    "bench_pin_change",
    "bench_deploy",
    "bench_history",
    "bench_gates",
    "bench_gate_pool",
    "bench_reconcile",
    "bench_daemon",
    "bench_tui",
    "bench_replicas",
    "bench_scale",
)


def module(name: str) -> ModuleType:
    """One benchmark module by its short name."""
    return importlib.import_module(f"benchmarks.{name}")


def runner(name: str) -> Callable[[Context], list[Row]]:
    """The `run` function of one benchmark module."""
    run: Callable[[Context], list[Row]] = module(name).run
    return run
