"""The diff screen: what changes between two releases of an app, fields first, then the program.

It opens on the selected cell's deployed release against the one Git wants there (or the
two newest), which is the question before a promotion: what exactly am I about to ship?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Select, Static
from textual.worker import get_current_worker

from qrelease.promotion.diff import ReleaseDiff
from qrelease.tui.board import Board, versions
from qrelease.tui.data import Dashboard, DashboardError
from qrelease.tui.widgets.render import diff_lines


@dataclass
class DiffLoaded(Message):
    """The differences between the two chosen releases."""

    diff: ReleaseDiff


@dataclass
class DiffFailed(Message):
    """The two releases cannot be compared (one no longer validates)."""

    problem: str


def default_pair(board: Board, app: str, env: str) -> tuple[str | None, str | None]:
    """The deployed release and the one Git wants, else the two newest releases."""
    known = versions(board.snapshot, app)
    row = board.row(app, env)
    pinned = (row.deployed, row.desired) if row is not None else (None, None)
    if pinned[0] != pinned[1] and all(version in known for version in pinned):
        return pinned
    newest = known[:2]
    if len(newest) == 2:
        return newest[1], newest[0]
    return (newest[0], newest[0]) if newest else (None, None)


class DiffScreen(Screen[None]):
    """Two version pickers, the changed fields, and the program's unified diff."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, dashboard: Dashboard, board: Board, app: str, env: str) -> None:
        super().__init__()
        self.dashboard, self.board, self.app_name = dashboard, board, app
        self.pair = default_pair(board, app, env)

    def compose(self) -> ComposeResult:
        options = [(v, v) for v in versions(self.board.snapshot, self.app_name)]
        old, new = self.pair
        yield Header()
        with Horizontal(id="diff-choices"):
            yield Label(f"{self.app_name}  from")
            yield Select(options, value=old or Select.NULL, id="old", compact=True)
            yield Label("to")
            yield Select(options, value=new or Select.NULL, id="new", compact=True)
        yield DataTable(id="diff-fields", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="diff-program"):
            yield Static("Choose two versions.", id="diff-text")
        yield Footer()

    def on_mount(self) -> None:
        table: DataTable[str] = self.query_one("#diff-fields", DataTable)
        table.add_columns("field", "from", "to")
        table.focus()

    @work(thread=True, exclusive=True, group="diff")
    def _compare(self, old: str, new: str) -> None:
        try:
            diff = self.dashboard.diff(self.board, self.app_name, old, new)
        except DashboardError as exc:
            self.post_message(DiffFailed(str(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(DiffLoaded(diff))

    @on(Select.Changed)
    def _choice_changed(self) -> None:
        old, new = self.query_one("#old", Select).value, self.query_one("#new", Select).value
        if isinstance(old, str) and isinstance(new, str):
            self.query_one("#diff-text", Static).update("Comparing…")
            self._compare(old, new)

    @on(DiffLoaded)
    def _show(self, message: DiffLoaded) -> None:
        diff = message.diff
        table: DataTable[str] = self.query_one("#diff-fields", DataTable)
        table.clear()
        table.add_rows(diff.fields or [("(no field changes)", "", "")])
        self.query_one("#diff-text", Static).update(diff_lines(diff.program_diff))

    @on(DiffFailed)
    def _failed(self, message: DiffFailed) -> None:
        self.query_one("#diff-text", Static).update(f"✗ {message.problem}")

    def action_back(self) -> None:
        """Back to the matrix."""
        self.dismiss()
