"""Progress of a pass with step times: plain lines off a terminal, a live view on one.

Rows are the engine's StatusRows; the clock is a list the test moves, never the wall clock.
"""

from __future__ import annotations

import io

from rich.console import Console

from qrelease.cli.progress import LiveProgress, PlainProgress
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.status import StatusRow


def row(app: str, rollout: Rollout, step: str = "", message: str = "") -> StatusRow:
    return StatusRow(
        "dev", app, "1.2.0", None, Sync.OUT_OF_SYNC, Health.PROGRESSING, rollout, step, "t",
        Availability.AVAILABLE, message or "rolling out 1.2.0", None,
    )  # fmt: skip


def feed(progress: PlainProgress | LiveProgress, now: list[float]) -> None:
    """bell-service goes live in 3.5s; qrng fails its install."""
    for at, each in (
        (0.0, row("bell-service", Rollout.RUNNING)),
        (0.0, row("qrng", Rollout.RUNNING)),
        (0.5, row("bell-service", Rollout.RUNNING, "quantum gates")),
        (2.5, row("bell-service", Rollout.RUNNING, "install")),
        (2.5, row("bell-service", Rollout.RUNNING, "install")),  # the same step again: no line
        (3.0, row("qrng", Rollout.RUNNING, "install")),
        (3.5, row("bell-service", Rollout.SUCCEEDED)),
        (4.25, row("qrng", Rollout.FAILED, "install", "install failed for 1.2.0: no wheel")),
    ):
        now[0] = at
        progress(each)


def test_plain_lines_name_each_step_and_end_with_the_times() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress(lambda: now[0], out)
    feed(progress, now)
    progress.close()
    assert out.getvalue().splitlines() == [
        "dev/bell-service: rolling out 1.2.0",
        "dev/qrng: rolling out 1.2.0",
        "dev/bell-service: quantum gates",
        "dev/bell-service: install",
        "dev/qrng: install",
        "dev/bell-service: Succeeded in 3.5s (queued 500ms, quantum gates 2.0s, install 1.0s)",
        "dev/qrng: Failed in 4.2s (queued 3.0s, install 1.2s): install failed for 1.2.0: no wheel",
    ]


def test_the_live_view_shows_every_rollout_with_its_step_times() -> None:
    now = [0.0]
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140, color_system=None)
    progress = LiveProgress(lambda: now[0], console)
    feed(progress, now)
    progress.close()
    shown = " ".join(screen.getvalue().split())  # every frame drawn, the last one included
    assert "✓ dev/bell-service Succeeded 3.5s queued 500ms, quantum gates 2.0s, install 1.0s" in (
        shown
    )
    assert "✗ dev/qrng Failed 4.2s queued 3.0s, install 1.2s" in shown
    assert "install failed for 1.2.0: no wheel" in shown
