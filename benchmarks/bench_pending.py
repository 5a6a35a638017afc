"""Goals whose component does not exist yet: listed with no numbers, never invented ones.

When a component lands, its benchmark becomes a module of its own (see suite.py) and its
entry here goes away.
"""

from __future__ import annotations

import importlib.util

from benchmarks.harness import Context, Row, pending_row

PENDING = (
    ("idle poll (nothing new)", "qrelease.daemon", "the daemon", "git fetch of the same clone"),
    (
        "TUI first paint, 1,000 apps x 3 envs",
        "qrelease.tui",
        "the TUI",
        "bare Textual DataTable app, same rows",
    ),
    ("daemon RSS, 1,000 apps x 3 envs", "qrelease.daemon", "the daemon", "absolute, <= 150 MiB"),
)


def built(module: str) -> bool:
    """True when the component's module exists in the installed qrelease."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def run(ctx: Context) -> list[Row]:
    """One pending row per goal that cannot be measured yet."""
    rows = []
    for name, module, component, reference in PENDING:
        if built(module):
            reason = f"{module} exists, but no benchmark module measures it yet"
        else:
            reason = f"{component} not built ({module} is missing)"
        rows.append(pending_row(name, reason, reference))
    return rows
