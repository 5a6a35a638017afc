"""The detail pane: what the selected cell runs, whether its gates passed, and what happened last.

It answers the question a release manager has after spotting a glyph in the matrix
("why is this out of sync?") without leaving the screen.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from qrelease.history import event_reason
from qrelease.model.events import Event
from qrelease.model.manifest import ReleaseManifest
from qrelease.planning.status import StatusRow
from qrelease.source.approvals import ApprovalRecord
from qrelease.tui.board import AVAILABILITY_GLYPHS, HEALTH_GLYPHS, ROLLOUT_GLYPHS, SYNC_GLYPHS
from qrelease.tui.data import Details, GateLine
from qrelease.tui.widgets.render import (
    AVAILABILITY_STYLES,
    HEALTH_STYLES,
    ROLLOUT_STYLES,
    SYNC_STYLES,
    outcome_mark,
)


class DetailPane(VerticalScroll):
    """A scrollable pane below the matrix, shown on Enter and hidden on Escape."""

    details: Details | None = None
    """What the pane shows; None while loading."""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-body")

    def waiting(self, app: str, env: str) -> None:
        """Say which cell is being loaded, so a slow store never looks like stale data."""
        self.details = None
        self.query_one("#detail-body", Static).update(Text(f"{app} in {env}: loading…"))

    def show(self, details: Details) -> None:
        """Render one cell's details."""
        self.details = details
        self.query_one("#detail-body", Static).update(render_details(details))


def render_details(details: Details) -> RenderableType:
    """Status line, release summary, gate results and last events as one renderable."""
    parts: list[RenderableType] = [_status(details.app, details.env, details.row)]
    if details.row is not None and details.row.message:
        parts.append(Text(details.row.message, style="italic"))
    parts += [_heading(f"Release {details.version or '–'}"), _manifest(details.manifest)]
    parts += [_heading("Gates"), _gates(details.gates)]
    if details.required:
        title = f"Approvals ({details.required} required; a to approve or reject)"
        parts += [_heading(title), _approvals(details.approvals)]
    parts += [_heading("Last events"), _events(details.events)]
    return Group(*parts)


def _approvals(approvals: tuple[ApprovalRecord, ...]) -> RenderableType:
    """Who approved or rejected this release here; words that cannot count are dimmed."""
    if not approvals:
        return Text("  nobody has approved this release here yet", style="bright_black")
    grid = _grid()
    for record in approvals:
        word = outcome_mark("Approved" if record.approves else "Rejected")
        who = record.approver or "(not counted)"
        why = record.problem or record.reason
        style = "" if record.approver else "bright_black"
        grid.add_row(Text(who, style=style), word, f"{record.at:%Y-%m-%d %H:%M}", why)
    return _indented(grid)


def _heading(title: str) -> Text:
    return Text(title, style="bold underline")


def _status(app: str, env: str, row: StatusRow | None) -> Text:
    title = Text.assemble((app, "bold"), " in ", (env, "bold"))
    if row is None:
        return title + Text("  · not pinned or deployed here")
    return Text.assemble(
        title,
        f"  desired {row.desired or '–'} · deployed {row.deployed or '–'}  ",
        (f"{SYNC_GLYPHS[row.sync]} {row.sync}", SYNC_STYLES[row.sync]),
        "  ",
        (f"{HEALTH_GLYPHS[row.health]} {row.health}", HEALTH_STYLES[row.health]),
        _rollout(row),
        "  target ",
        (
            f"{AVAILABILITY_GLYPHS[row.availability] or '✓'} {row.availability}",
            AVAILABILITY_STYLES[row.availability],
        ),
    )


def _rollout(row: StatusRow) -> Text:
    """`  rollout ! Failed (install)`, or nothing before the first rollout."""
    if row.rollout is None:
        return Text("")
    step = f" ({row.step})" if row.step else ""
    shown = f"{ROLLOUT_GLYPHS[row.rollout]} {row.rollout}".strip() + step
    return Text.assemble("  rollout ", (shown, ROLLOUT_STYLES[row.rollout]))


def _manifest(manifest: ReleaseManifest | None) -> RenderableType:
    if manifest is None:
        return Text("  no valid manifest at this revision", style="bright_black")
    quantum = manifest.quantum
    packages = ", ".join(f"{p.name} {p.version}" for p in manifest.classical.packages)
    grid = _grid()
    grid.add_row("packages", packages)
    start = {
        "qsharp": f"  entry {quantum.entry}",
        "openqasm": "  (OpenQASM 3)",
        "qiskit": f"  circuit {quantum.circuit} (Qiskit)",
    }
    grid.add_row("program", f"{quantum.program}{start[quantum.kind]}")
    grid.add_row("target", f"{quantum.target.id}  profile {quantum.target.profile}")
    return _indented(grid)


def _gates(gates: tuple[GateLine, ...]) -> RenderableType:
    if not gates:
        return Text("  no gate results recorded for this release here", style="bright_black")
    grid = _grid()
    for gate in gates:
        grid.add_row(gate.gate, outcome_mark(gate.outcome), gate.message)
    return _indented(grid)


def _events(events: tuple[Event, ...]) -> RenderableType:
    if not events:
        return Text("  no events yet", style="bright_black")
    grid = _grid()
    for event in events:
        change = f"{event.from_version or '–'} → {event.to_version or '–'}"
        grid.add_row(
            f"{event.time:%Y-%m-%d %H:%M}",
            event.action,
            change,
            outcome_mark(event.outcome),
            event_reason(event),
        )
    return _indented(grid)


def _grid() -> Table:
    """A borderless grid whose first column names the row."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold", min_width=8)
    return grid


def _indented(grid: Table) -> Padding:
    return Padding(grid, (0, 0, 0, 2))
