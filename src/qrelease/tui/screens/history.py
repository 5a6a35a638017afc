"""The history screen: the `qrelease history` timeline, newest first, narrowed as you type.

Git pin changes and controller events come from the same `timeline` the CLI prints, read
in a worker; filtering is a substring match over the shown columns of the loaded rows.
At most HISTORY_ROWS matches are shown at once, so a long audit log stays responsive.
Long values are cut to keep the columns steady; Enter opens an entry in full (`EntryScreen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from qrelease.history import Entry
from qrelease.tui.board import HISTORY_COLUMNS, entry_fields, row_matches
from qrelease.tui.data import Dashboard, DashboardError
from qrelease.tui.screens.entry import EntryScreen

HISTORY_ROWS = 2000
MAX_WIDTHS = {"actor": 32, "reason": 60}
DEFAULT_MAX_WIDTH = 24


@dataclass
class HistoryLoaded(Message):
    """The whole timeline, newest first."""

    entries: list[Entry]


@dataclass
class HistoryFailed(Message):
    """Git or the store could not be read."""

    problem: str


class HistoryScreen(Screen[None]):
    """Who changed which pin, and what the controller did about it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter"),
        Binding("enter", "open", "Open entry", show=True),
    ]

    def __init__(self, dashboard: Dashboard) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.rows: list[tuple[str, ...]] = []
        self.entries: list[Entry] = []
        self.shown: list[Entry] = []
        """The entries in the table, top to bottom (the filter's newest matches)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Reading the timeline…", id="history-status")
        yield Input(
            placeholder="/ filter: app, env, action, actor, reason…",
            id="history-filter",
            compact=True,
        )
        yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#history", DataTable).focus()
        self._load()

    @work(thread=True, exclusive=True, group="history")
    def _load(self) -> None:
        try:
            self.post_message(HistoryLoaded(self.dashboard.history()))
        except DashboardError as exc:
            self.post_message(HistoryFailed(str(exc)))

    @on(HistoryLoaded)
    def _loaded(self, message: HistoryLoaded) -> None:
        self.entries = message.entries
        self.rows = [entry_fields(entry) for entry in message.entries]
        table: DataTable[str] = self.query_one("#history", DataTable)
        table.clear(columns=True)
        for column, width in zip(HISTORY_COLUMNS, column_widths(self.rows), strict=True):
            table.add_column(column, key=column, width=width)
        self._fill(self.query_one("#history-filter", Input).value)

    @on(HistoryFailed)
    def _failed(self, message: HistoryFailed) -> None:
        self.query_one("#history-status", Static).update(f"⚠ {message.problem}")

    @on(Input.Changed, "#history-filter")
    def _filter_changed(self, message: Input.Changed) -> None:
        self._fill(message.value)

    @on(Input.Submitted, "#history-filter")
    def _filter_done(self) -> None:
        self.query_one("#history", DataTable).focus()

    @on(DataTable.RowSelected, "#history")
    def _row_selected(self) -> None:
        self.action_open()

    def _fill(self, text: str) -> None:
        pairs = zip(self.rows, self.entries, strict=True)
        chosen = [(row, entry) for row, entry in pairs if row_matches(row, text)]
        matches = [row for row, _ in chosen]
        self.shown = [entry for _, entry in chosen[:HISTORY_ROWS]]
        table: DataTable[str] = self.query_one("#history", DataTable)
        table.clear()
        table.add_rows(matches[:HISTORY_ROWS])
        shown = f"newest {HISTORY_ROWS} of " if len(matches) > HISTORY_ROWS else ""
        status = f"{shown}{len(matches)} of {len(self.rows)} entries, newest first"
        self.query_one("#history-status", Static).update(status)

    def action_open(self) -> None:
        """Show the entry under the cursor in full: reason, actor, commit, gate results."""
        table = self.query_one("#history", DataTable)
        if table.has_focus and 0 <= table.cursor_row < len(self.shown):
            self.app.push_screen(EntryScreen(self.dashboard, self.shown[table.cursor_row]))

    def action_filter(self) -> None:
        """Type to narrow the timeline."""
        self.set_focus(self.query_one("#history-filter", Input))  # now: the next key is its

    def action_back(self) -> None:
        """Leave the filter box, else go back to the matrix."""
        table = self.query_one("#history", DataTable)
        if not table.has_focus:
            table.focus()
        else:
            self.dismiss()


def column_widths(rows: list[tuple[str, ...]]) -> list[int]:
    """Each column as wide as its widest value, capped; fixed so filtering never reflows."""
    return [
        min(
            MAX_WIDTHS.get(column, DEFAULT_MAX_WIDTH),
            max([len(column), *(len(row[index]) for row in rows)]),
        )
        for index, column in enumerate(HISTORY_COLUMNS)
    ]
