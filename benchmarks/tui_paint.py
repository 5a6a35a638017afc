"""The TUI at N apps x 3 envs (1,000 and 10,000 in `make bench`) against a bare DataTable.

The qrelease side is `make_app` over a generated bare GitOps repo and a real store holding
every (env, app) as Healthy: its first paint includes opening the store, reading every
recorded state, building the board and laying out the matrix (Git is read after that
frame). The reference is a bare Textual app whose DataTable is filled in `on_mount` with
the same cell texts, already computed: Textual's own cost of the paint. Both run headless
with `App.run_test()` in this process, alternating (ABBA). "First paint" is the first frame
the app composes once its table has laid out every row (the frame goes through
`App._display`, which is wrapped to take the time). Then: when the matrix matched Git (its
environment files read), when it was complete (every manifest read), and the mean time
of a page-down key press once loaded (the bare table is complete when painted).

Run: `.venv/bin/python -m benchmarks.tui_paint` (prints the dict `measure()` returns).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from benchmarks.fixtures import healthy_state
from benchmarks.gitdata import (
    BELL_PROGRAM,
    ENVIRONMENTS,
    app_name,
    environment_yaml,
    fast_import,
)
from benchmarks.gitdata import manifest_yaml as generated_manifest
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.status import StatusRow
from qrelease.quantum.memory import MemoryQuantum
from qrelease.store import open_store
from qrelease.tui.app import QreleaseApp, make_app
from qrelease.tui.board import Stage, cell_text

SIZE = (120, 40)
PAGES = 10
POLL_SECONDS = 0.05
VERSIONS = ("1.0.0", "1.1.0")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def env_names(envs: int) -> list[str]:
    """dev, staging, prod, then env-3, env-4, ... (only the first three promote)."""
    return [*ENVIRONMENTS[:envs], *(f"env-{i}" for i in range(len(ENVIRONMENTS), envs))]


def pins(envs: list[str], apps: int) -> dict[str, dict[str, str]]:
    """dev runs the newer release of every app; the others the older one."""
    return {
        env: {app_name(a): VERSIONS[1] if rank == 0 else VERSIONS[0] for a in range(apps)}
        for rank, env in enumerate(envs)
    }


def build_repo(path: Path, envs: list[str], apps: int) -> dict[str, dict[str, str]]:
    """A bare repo with two releases of every app and every app pinned in every env."""
    files: dict[str, bytes] = {}
    for a in range(apps):
        app = app_name(a)
        files[f"manifests/{app}/programs/bell.qs"] = BELL_PROGRAM
        for version in VERSIONS:
            files[f"manifests/{app}/{version}.yaml"] = generated_manifest(app, version)
    pinned = pins(envs, apps)
    for env in envs:
        files[f"releases/{env}.yaml"] = environment_yaml(env, pinned[env])
    fast_import(path, [files])
    return pinned


def build_store(state: Path, revision: str, pinned: dict[str, dict[str, str]]) -> None:
    """Every (env, app) observed Healthy at its pin, and one finished reconcile run."""
    with open_store(state) as store, store.transaction():
        run = store.begin_run(revision, time=NOW - timedelta(minutes=5))
        for env, apps in pinned.items():
            for app, version in apps.items():
                since = NOW - timedelta(hours=1)
                store.put_observed(healthy_state(env, app, version, revision, at=NOW, since=since))
        store.finish_run(run, "succeeded", {}, time=NOW - timedelta(minutes=4))


class BareTable(App[None]):
    """The reference: one DataTable filled with the same texts in one add_rows call."""

    def __init__(self, columns: list[str], rows: list[list[str]]) -> None:
        super().__init__()
        self.columns, self.rows = columns, rows

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="cell")

    def on_mount(self) -> None:
        table: DataTable[str] = self.query_one(DataTable)
        table.add_columns(*self.columns)
        table.add_rows(self.rows)
        table.focus()


Timing = tuple[float, float, float, float]
"""Seconds to: the first frame of every row, Git's pins shown, complete; and per page-down."""


async def _paint_and_scroll(app: App[None], rows: int) -> Timing:
    """Seconds to the first frame showing the full table, to the first showing the matrix
    matching Git and to the first showing a fully loaded screen, and mean seconds per
    page-down key press once loaded.

    Every time is taken when a frame is composed (`App._display`), so it is what a person
    would see. Meanwhile the measuring loop only sleeps (POLL_SECONDS): `Pilot.pause`
    visits every widget's message queue, which a few milliseconds apart would take the
    GIL from the app's own threads and slow what is measured.
    """
    started = time.perf_counter()
    painted: list[float] = []
    git: list[float] = []
    loaded: list[float] = []
    display = app._display  # wrapped, not replaced: every frame still goes through it

    def record(screen: Any, renderable: Any) -> None:
        now = time.perf_counter() - started
        table = _table(screen)
        if not painted and table is not None and table.virtual_size.height > rows:
            painted.append(now)  # header + every row laid out
        if painted and not git and _git_shown(app):
            git.append(now)
        if painted and not loaded and _loaded(app):
            loaded.append(now)
        display(screen, renderable)

    app._display = record  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        while not loaded:
            await asyncio.sleep(POLL_SECONDS)
        await pilot.pause()
        table = _table(app.screen)
        scroll_start = time.perf_counter()
        for _ in range(PAGES):
            await pilot.press("pagedown")
        scrolled = (time.perf_counter() - scroll_start) / PAGES
        assert table is not None and _cursor_row(table) > 0, "paging did not move the cursor"
    return painted[0], (git or loaded)[0], loaded[0], scrolled


def _table(screen: Any) -> Any:
    """The app's table: qrelease's matrix, or the bare app's DataTable."""
    found = screen.query("#matrix, DataTable")
    return found.first() if found else None


def _cursor_row(table: Any) -> int:
    return int(table.cursor_row) if isinstance(table, DataTable) else int(table.cursor[0])


def _git_shown(app: App[None]) -> bool:
    """Whether the screen shows Git's pins (the bare table never reads Git: at once)."""
    board = getattr(app.screen, "board", None)
    return not isinstance(app, QreleaseApp) or bool(board and board.stage != Stage.STORE)


def _loaded(app: App[None]) -> bool:
    """The bare table is loaded once painted; qrelease once Git is read too."""
    board = getattr(app.screen, "board", None)
    return board is None if not isinstance(app, QreleaseApp) else bool(board and board.complete)


def measure(apps: int = 1000, envs: int = 3, reps: int = 3) -> dict[str, Any]:
    """Median time to first paint of `make_app` vs a bare DataTable app, and their ratio."""
    names = env_names(envs)
    with tempfile.TemporaryDirectory(prefix="qrelease-tui-bench-") as scratch:
        root = Path(scratch)
        repo = root / "gitops.git"
        pinned = build_repo(repo, names, apps)
        revision = (repo / "refs" / "heads" / "main").read_text().strip()
        build_store(root / "state", revision, pinned)
        quantum = MemoryQuantum()
        rows = [
            [app_name(a), *(cell_text_for(pinned[env][app_name(a)]) for env in names)]
            for a in range(apps)
        ]
        sides: dict[str, Callable[[], App[None]]] = {
            "qrelease": lambda: make_app(
                str(repo), root / "state", quantum_for=lambda env: quantum, clock=lambda: NOW
            ),
            "bare": lambda: BareTable(["app", *names], rows),
        }
        timings: dict[str, list[Timing]] = {"qrelease": [], "bare": []}
        for rep in range(reps):
            order = ("qrelease", "bare") if rep % 2 == 0 else ("bare", "qrelease")
            for side in order:
                timings[side].append(asyncio.run(_paint_and_scroll(sides[side](), apps)))
    return _summary(apps, envs, reps, timings)


def cell_text_for(version: str) -> str:
    """The text the matrix shows for a Healthy, synced cell at `version`."""
    row = StatusRow(
        "env", "app", version, version, Sync.SYNCED, Health.HEALTHY, Rollout.SUCCEEDED, "",
        None, Availability.AVAILABLE, "", None,
    )  # fmt: skip
    return cell_text(row)


def _summary(apps: int, envs: int, reps: int, timings: dict[str, list[Timing]]) -> dict[str, Any]:
    def median(side: str, index: int) -> float:
        return statistics.median(run[index] for run in timings[side])

    paint = {side: median(side, 0) for side in timings}
    return {
        "apps": apps,
        "envs": envs,
        "reps": reps,
        "qrelease_paint_s": round(paint["qrelease"], 4),
        "bare_paint_s": round(paint["bare"], 4),
        "ratio": round(paint["qrelease"] / paint["bare"], 2),
        "qrelease_paint_all_s": [round(run[0], 4) for run in timings["qrelease"]],
        "bare_paint_all_s": [round(run[0], 4) for run in timings["bare"]],
        "qrelease_git_shown_s": round(median("qrelease", 1), 4),
        "qrelease_manifests_read_s": round(median("qrelease", 2), 4),
        "qrelease_complete_all_s": [round(run[2], 4) for run in timings["qrelease"]],
        "bare_complete_s": round(median("bare", 2), 4),
        "qrelease_pagedown_ms": round(median("qrelease", 3) * 1000, 2),
        "bare_pagedown_ms": round(median("bare", 3) * 1000, 2),
        "qrelease_pagedown_all_s": [round(run[3], 5) for run in timings["qrelease"]],
        "bare_pagedown_all_s": [round(run[3], 5) for run in timings["bare"]],
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
