"""The history screen: the `qrelease history` timeline, newest first, narrowed as you type.

Git pin changes and controller events come from the same `timeline` the CLI prints, read
in a worker; filtering is a substring match over the shown columns of the loaded rows.
At most HISTORY_ROWS matches are shown at once, so a long audit log stays responsive.
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
from qrelease.tui.board import HISTORY_COLUMNS, entry_fields, filter_rows
from qrelease.tui.data import Dashboard, DashboardError

HISTORY_ROWS = 2000
MAX_WIDTHS = {"actor": 32, "reason": 40}
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
    ]

    def __init__(self, dashboard: Dashboard) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.rows: list[tuple[str, ...]] = []

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

    def _fill(self, text: str) -> None:
        matches = filter_rows(self.rows, text)
        table: DataTable[str] = self.query_one("#history", DataTable)
        table.clear()
        table.add_rows(matches[:HISTORY_ROWS])
        shown = f"newest {HISTORY_ROWS} of " if len(matches) > HISTORY_ROWS else ""
        status = f"{shown}{len(matches)} of {len(self.rows)} entries, newest first"
        self.query_one("#history-status", Static).update(status)

    def action_filter(self) -> None:
        """Type to narrow the timeline."""
        self.query_one("#history-filter", Input).focus()

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
