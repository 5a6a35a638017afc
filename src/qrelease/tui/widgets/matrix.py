"""The apps × environments matrix: one DataTable row per app, patched in place as status changes.

Rows go in with one `add_rows` call, column widths are computed up front from plain text
and no cell is a widget, so a thousand apps open quickly. Live updates rewrite only the
cells that changed, which leaves the cursor and the scroll position where the user put them.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from qrelease.planning.status import StatusRow
from qrelease.tui.board import Board, cell_text, matching
from qrelease.tui.widgets.render import styled_cell

APP_COLUMN = "#app"  # not a valid environment name, so it never collides with one
APP_WIDTH_RANGE = (8, 32)
CELL_MIN_WIDTH = 15


class Matrix(DataTable[Text]):
    """Apps down, environments across in promotion order; the app column stays put."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Details")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="cell", fixed_columns=1, zebra_stripes=True)
        self.board: Board | None = None
        self.filter_text = ""
        self._apps: list[str] = []
        self._row_keys: dict[str, RowKey] = {}
        self._widths: dict[str, int] = {}

    def show(self, board: Board, filter_text: str) -> None:
        """Rebuild the rows for the apps matching the filter, keeping the cursor's cell."""
        keep = self.selected()
        self.clear(columns=True)
        self._widths = column_widths(board)
        self.add_column("app", width=self._widths[APP_COLUMN], key=APP_COLUMN)
        for env in board.envs:
            self.add_column(env, width=self._widths[env], key=env)
        self._apps = matching(board.apps, filter_text)
        keys = self.add_rows([self._cells(board, app) for app in self._apps])
        self._row_keys = dict(zip(self._apps, keys, strict=True))
        self.board, self.filter_text = board, filter_text
        self._restore_cursor(keep)

    def patch(self, board: Board) -> None:
        """Rewrite the cells that changed; rebuild only when the shape or a width changed."""
        old = self.board
        changed = board.changed_cells(old) if old is not None else []
        if old is None or not board.same_shape(old) or self._overflows(board, changed):
            self.show(board, self.filter_text)
            return
        for app, env in changed:
            row_key = self._row_keys.get(app)
            row, before = board.row(app, env), old.row(app, env)
            if row_key is not None and _looks(row) != _looks(before):
                self.update_cell(row_key, env, styled_cell(row))
        self.board = board

    def selected(self) -> tuple[str, str] | None:
        """The (app, env) under the cursor; on the app column, the first environment."""
        if self.board is None or not self._apps or not self.board.envs:
            return None
        row, column = self.cursor_coordinate
        envs = self.board.envs
        return self._apps[min(row, len(self._apps) - 1)], envs[min(max(column, 1), len(envs)) - 1]

    def _cells(self, board: Board, app: str) -> list[Text]:
        return [Text(app), *(styled_cell(board.row(app, env)) for env in board.envs)]

    def _overflows(self, board: Board, changed: list[tuple[str, str]]) -> bool:
        return any(
            len(cell_text(board.row(app, env))) > self._widths.get(env, 0) for app, env in changed
        )

    def _restore_cursor(self, keep: tuple[str, str] | None) -> None:
        if self.board is None or not self._apps:
            return
        app, env = keep or (self._apps[0], self.board.envs[0] if self.board.envs else "")
        row = self._apps.index(app) if app in self._apps else 0
        column = self.board.envs.index(env) + 1 if env in self.board.envs else 1
        self.cursor_coordinate = Coordinate(row, column)


def column_widths(board: Board) -> dict[str, int]:
    """Widths from plain text, so the table never measures three thousand rich cells."""
    low, high = APP_WIDTH_RANGE
    widths = {APP_COLUMN: min(high, max([low, *(len(app) for app in board.apps)]))}
    for env in board.envs:
        texts = (cell_text(board.row(app, env)) for app in board.apps)
        widths[env] = max([CELL_MIN_WIDTH, len(env), *(len(text) for text in texts)])
    return widths


def _looks(row: StatusRow | None) -> tuple[object, ...]:
    """What a cell's rendering depends on (a changed message or target alone redraws nothing)."""
    if row is None:
        return ()
    return (row.desired, row.deployed, row.sync, row.health, row.availability)
