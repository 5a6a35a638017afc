"""Rich renderings shared by the screens; colour only repeats what the glyphs already say."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from rich.text import Text

from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.policy import Check
from qrelease.planning.status import StatusRow
from qrelease.tui.board import CellParts, cell_parts

HEALTH_STYLES: Mapping[Health, str] = {
    Health.HEALTHY: "green",
    Health.SUSPENDED: "blue",
    Health.PROGRESSING: "yellow",
    Health.MISSING: "bright_black",
    Health.DEGRADED: "bold red",
    Health.UNKNOWN: "magenta",
}
SYNC_STYLES: Mapping[Sync, str] = {
    Sync.SYNCED: "green",
    Sync.OUT_OF_SYNC: "yellow",
    Sync.UNKNOWN: "magenta",
}
AVAILABILITY_STYLES: Mapping[Availability, str] = {
    Availability.AVAILABLE: "green",
    Availability.DEGRADED: "yellow",
    Availability.UNAVAILABLE: "bold red",
    Availability.UNKNOWN: "magenta",
}
ROLLOUT_STYLES: Mapping[Rollout | None, str] = {
    None: "",
    Rollout.SUCCEEDED: "green",
    Rollout.RUNNING: "yellow",
    Rollout.FAILED: "bold red",
    Rollout.HELD: "yellow",
}
OUTCOME_MARKS: Mapping[str, tuple[str, str]] = {
    "Passed": ("✓", "green"),
    "Healthy": ("✓", "green"),
    "Succeeded": ("✓", "green"),
    "Committed": ("✓", "green"),
    "Approved": ("✓", "green"),
    "Rejected": ("✗", "bold red"),
    "Failed": ("✗", "bold red"),
    "Degraded": ("✗", "bold red"),
    "Restored": ("↺", "yellow"),
    "Forced": ("!", "yellow"),
    "Inconclusive": ("?", "yellow"),
    "Skipped": ("–", "bright_black"),
}


def styled_cell(row: StatusRow | None) -> Text:
    """A matrix cell: versions (yellow while out of sync), the coloured glyphs, a running step.

    Cells that look alike share one Text (a thousand Healthy apps at 1.0.0 are one object),
    so drawing the matrix costs a dictionary lookup per cell; nobody modifies a cell's Text.
    """
    if row is None:
        return _styled(None)
    return _styled(cell_parts(row), row.sync, row.health, row.rollout, row.availability)


def cell_key(row: StatusRow | None) -> tuple[object, ...]:
    """Everything a cell's rendering depends on (equal keys draw the same cell)."""
    if row is None:
        return ()
    return (row.desired, row.deployed, row.sync, row.health, row.rollout, row.step,
            row.availability)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _styled(
    parts: CellParts | None,
    sync: Sync = Sync.UNKNOWN,
    health: Health = Health.UNKNOWN,
    rollout: Rollout | None = None,
    availability: Availability = Availability.UNKNOWN,
) -> Text:
    if parts is None:
        return Text("·", style="bright_black")
    text = Text.assemble(
        (parts.versions, "yellow" if sync == Sync.OUT_OF_SYNC else ""),
        " ",
        (parts.sync, SYNC_STYLES[sync]),
        (parts.health, HEALTH_STYLES[health]),
        (parts.rollout, ROLLOUT_STYLES[rollout]),
        (parts.target, AVAILABILITY_STYLES[availability]),
    )
    if parts.step:
        text.append(f" {parts.step}", style="italic " + ROLLOUT_STYLES[rollout])
    return text


def outcome_mark(outcome: str) -> Text:
    """A glyph and colour for a gate or event outcome (plain text for unusual ones)."""
    mark, style = OUTCOME_MARKS.get(outcome, ("·", ""))
    return Text(f"{mark} {outcome}", style=style)


def check_lines(checks: Iterable[Check]) -> Text:
    """Policy checks one per line, `✓ name: detail` in green or `✗ name: detail` in red."""
    lines = [
        Text(check.render(), style="green" if check.passed else "bold red") for check in checks
    ]
    return Text("\n").join(lines)


def diff_lines(lines: Iterable[str]) -> Text:
    """A unified diff with additions green, removals red and hunk headers dim."""
    styled = [Text(line, style=_diff_style(line)) for line in lines]
    return Text("\n").join(styled) if styled else Text("(the program text is the same)")


def _diff_style(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("@@"):
        return "cyan"
    return {"+": "green", "-": "red"}.get(line[:1], "")
