"""TUI first paint at 1,000 apps x 3 environments against a bare Textual DataTable app.

Both apps run headless (`App.run_test`) in the same process, alternating; "first paint"
is the first frame in which the table has laid out every row. The measuring itself lives
in `tui_paint.py`; this module turns its medians into a harness row.
"""

from __future__ import annotations

from benchmarks.harness import Context, Row, Stats
from benchmarks.tui_paint import measure

TARGET = 1.3


def run(ctx: Context) -> list[Row]:
    """One ratio row: qrelease's first paint over the bare DataTable's."""
    result = measure(apps=ctx.sizes.apps, envs=3, reps=max(ctx.reps, 1))
    notes = (
        f"{result['apps']} apps x {result['envs']} envs; all manifests read after "
        f"{result['qrelease_manifests_read_s']}s (the first frame needs only releases/*.yaml)",
        f"page-down: qrelease {result['qrelease_pagedown_ms']}ms, "
        f"bare {result['bare_pagedown_ms']}ms",
    )
    return [
        Row(
            "TUI first paint, 1,000 apps x 3 envs",
            "ratio",
            TARGET,
            Stats.of(result["qrelease_paint_all_s"]),
            Stats.of(result["bare_paint_all_s"]),
            "bare Textual DataTable app, same rows",
            notes,
        )
    ]
