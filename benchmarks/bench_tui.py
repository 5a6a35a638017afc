"""The TUI against a bare Textual DataTable of the same rows, at 1,000 and 10,000 apps x 3 envs.

Both apps run headless (`App.run_test`) in the same process, alternating; "first paint" is
the first frame in which the table has laid out every row. The measuring itself lives in
`tui_paint.py`; this module turns its numbers into harness rows: first paint at both
sizes, and at the large size page-down (per key press) and the time to complete (every
manifest read; absolute, as the bare table reads no Git).
"""

from __future__ import annotations

from typing import Any

from benchmarks.harness import Context, Row, Stats
from benchmarks.tui_paint import measure

PAINT_TARGET = 1.3
PAGE_TARGET = 1.2
COMPLETE_TARGET = 3.0
LARGE_APPS = 10_000
REFERENCE = "bare Textual DataTable app, same rows"


def run(ctx: Context) -> list[Row]:
    """First paint at the usual size; first paint, page-down and completion at the large one."""
    reps = max(ctx.reps, 1)
    small = measure(apps=ctx.sizes.apps, envs=3, reps=reps)
    large = measure(apps=large_apps(ctx), envs=3, reps=reps)
    return [paint_row(small), paint_row(large), page_row(large), complete_row(large)]


def large_apps(ctx: Context) -> int:
    """10,000 in the full run; ten times the usual size in --quick and the smoke test."""
    return LARGE_APPS if not ctx.quick and ctx.sizes.apps >= 1000 else 10 * ctx.sizes.apps


def paint_row(result: dict[str, Any]) -> Row:
    """First paint, qrelease over the bare DataTable."""
    notes = (
        "the first frame is drawn from the store alone; Git's pins shown after "
        f"{result['qrelease_git_shown_s']}s, every manifest read after "
        f"{result['qrelease_manifests_read_s']}s",
    )
    return Row(
        f"TUI first paint, {_size(result)}",
        "ratio",
        PAINT_TARGET,
        Stats.of(result["qrelease_paint_all_s"]),
        Stats.of(result["bare_paint_all_s"]),
        REFERENCE,
        notes,
    )


def page_row(result: dict[str, Any]) -> Row:
    """One page-down key press once loaded (mean over the presses of each trial)."""
    notes = (
        f"median ms per press: qrelease {result['qrelease_pagedown_ms']}, "
        f"bare {result['bare_pagedown_ms']}; rows are drawn only when on screen",
    )
    return Row(
        f"TUI page-down, {_size(result)}",
        "ratio",
        PAGE_TARGET,
        Stats.of(result["qrelease_pagedown_all_s"]),
        Stats.of(result["bare_pagedown_all_s"]),
        REFERENCE,
        notes,
    )


def complete_row(result: dict[str, Any]) -> Row:
    """From start to every manifest read and shown (absolute: the bare table reads no Git)."""
    notes = (
        f"the matrix matched Git (its environment files) after {result['qrelease_git_shown_s']}s;"
        f" the bare table was complete at its first paint, {result['bare_complete_s']}s",
        "the rest is the loader parsing every manifest (source/loader.py, issue 20's parse "
        "cache); the TUI is usable meanwhile, only dialogs and details wait",
    )
    return Row(
        f"TUI complete, {_size(result)}",
        "absolute",
        COMPLETE_TARGET,
        Stats.of(result["qrelease_complete_all_s"]),
        None,
        "",
        notes,
    )


def _size(result: dict[str, Any]) -> str:
    return f"{result['apps']:,} apps x {result['envs']} envs"
