"""The apps × environments matrix, virtualised: only the lines on screen are ever drawn.

Textual's Line API (`ScrollView.render_line`) asks for one line at a time, so ten thousand
apps cost what thirty do. The widget holds the board (plain values, column widths
included, all computed in the poller's thread) and the list of apps the filter lets
through; a line is drawn from them when the screen needs it. A live update swaps the board
and redraws what is visible, leaving the cursor and the scroll position where they were.
Textual's DataTable instead builds a row object per app and measures cells as they are
added: seconds at ten thousand apps, where this draws the first frame in milliseconds.

The cursor reads without colour: the selected cell is bold, reversed when colour is off
(NO_COLOR), and starts with `▶`; its app's name gets the same `▶`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from qrelease.tui.board import APP_COLUMN, Board, matching
from qrelease.tui.widgets.render import cell_key, styled_cell

MARKER = "▶"
"""Marks the cursor's cell and its app's name, so the cursor shows without colour."""
PAD = 1
"""Blank cells on each side of a cell's text (the cursor's marker sits in the left one)."""
CACHE_LIMIT = 4096
_CONSOLE = Console(width=1000, color_system=None, force_terminal=False)
"""Only turns a cell's Text into segments (styles are resolved, nothing is printed)."""


@dataclass(frozen=True)
class _Palette:
    """The styles of one drawing pass (they change with focus, theme and NO_COLOR)."""

    base: Style
    header: Style
    app: Style
    even: Style
    odd: Style
    cursor: Style


class Matrix(ScrollView, can_focus=True):
    """Apps down, environments across in promotion order; the app column stays put."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "matrix--header",
        "matrix--app",
        "matrix--even-row",
        "matrix--odd-row",
        "matrix--cursor",
    }
    DEFAULT_CSS = """
    Matrix {
        background: $surface;
        color: $foreground;
        & > .matrix--header { text-style: bold; background: $panel; color: $foreground; }
        & > .matrix--app { background: $secondary-muted; color: $foreground; }
        & > .matrix--even-row { background: $surface-lighten-1 50%; }
        & > .matrix--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: bold;
        }
        &:focus > .matrix--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        &:nocolor > .matrix--cursor { text-style: bold reverse; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Details", show=False),
        Binding("up", "move(-1, 0)", show=False),
        Binding("down", "move(1, 0)", show=False),
        Binding("left", "move(0, -1)", show=False),
        Binding("right", "move(0, 1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home,ctrl+home", "edge(-1)", show=False),
        Binding("end,ctrl+end", "edge(1)", show=False),
    ]

    @dataclass
    class CellHighlighted(Message):
        """The cursor moved to a cell."""

        app: str
        env: str

    @dataclass
    class CellSelected(Message):
        """Enter (or a click on the cursor's cell) chose a cell."""

        app: str
        env: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.board: Board | None = None
        self.filter_text = ""
        self.apps: list[str] = []
        """The apps on show (the filter's matches), top to bottom."""
        self.cursor = (0, 0)
        """(row in `apps`, index in the board's environments)."""
        self._app_width = 0
        self._env_offsets: list[int] = []
        self._palette: _Palette | None = None
        self._cells: dict[tuple[object, ...], list[Segment]] = {}
        self._lines: dict[tuple[int, int], Strip] = {}

    # -- what the screen calls -----------------------------------------------------------

    def show(self, board: Board, filter_text: str) -> None:
        """Show the apps matching the filter, keeping the cursor on the same cell if it can."""
        keep = self.selected()
        self.board, self.filter_text = board, filter_text
        self.apps = matching(board.apps, filter_text) if filter_text.strip() else [*board.apps]
        self._lay_out(board)
        self._restore_cursor(keep)

    def patch(self, board: Board) -> None:
        """Swap in a newer board; the cursor, scroll and filter stay."""
        old = self.board
        if old is None or old.apps != board.apps or old.envs != board.envs:
            self.show(board, self.filter_text)
            return
        self.board = board
        self._lay_out(board)

    def selected(self) -> tuple[str, str] | None:
        """The (app, env) under the cursor."""
        if self.board is None or not self.apps or not self.board.envs:
            return None
        row, column = self.cursor
        return self.apps[row], self.board.envs[column]

    def cell(self, app: str, env: str) -> Text:
        """The text a cell shows."""
        return styled_cell(self.board.row(app, env) if self.board else None)

    # -- keys and mouse ------------------------------------------------------------------

    def action_move(self, rows: int, columns: int) -> None:
        """Move the cursor by rows and columns."""
        row, column = self.cursor
        self._move_to(row + rows, column + columns)

    def action_page(self, direction: int) -> None:
        """Scroll a screenful up or down; the cursor keeps its place on the screen."""
        page = self._page_rows()
        row, column = self.cursor
        self.scroll_to(y=self.scroll_offset.y + direction * page, animate=False, immediate=True)
        self._move_to(row + direction * page, column)

    def action_edge(self, direction: int) -> None:
        """Go to the first or the last app."""
        self._move_to(0 if direction < 0 else len(self.apps) - 1, self.cursor[1])

    def action_select_cursor(self) -> None:
        """Choose the cursor's cell."""
        if (cell := self.selected()) is not None:
            self.post_message(self.CellSelected(*cell))

    def on_click(self, event: events.Click) -> None:
        """A click moves the cursor to a cell; a click on the cursor's cell chooses it."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0 or self.board is None:
            return  # the header
        scroll_x, scroll_y = self.scroll_offset
        row, column = scroll_y + offset.y - 1, self.cursor[1]
        if offset.x >= self._app_width:
            column = bisect_right(self._env_offsets, offset.x - self._app_width + scroll_x) - 1
        if row >= len(self.apps):
            return
        if (row, column) == self.cursor:
            self.action_select_cursor()
        else:
            self._move_to(row, column)

    def on_resize(self, event: events.Resize) -> None:
        self._lines.clear()
        self._scroll_to_cursor()

    def notify_style_update(self) -> None:
        """Styles changed (focus, theme): draw again with the new ones."""
        super().notify_style_update()
        self._palette = None
        self.refresh()

    def on_focus(self, event: events.Focus) -> None:
        self._palette = None

    def on_blur(self, event: events.Blur) -> None:
        self._palette = None

    # -- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """One line of the screen: the header, or the row of the app scrolled there."""
        width = self.size.width
        palette = self._current_palette()
        if self.board is None:
            return Strip.blank(width, palette.base)
        scroll_x, scroll_y = self.scroll_offset
        index = -1 if y == 0 else scroll_y + y - 1
        if index >= len(self.apps):
            return Strip.blank(width, palette.base)
        key = (index, self.cursor[1] if index == self.cursor[0] else -1)
        line = self._lines.get(key)
        if line is None:
            line = self._header(palette) if index < 0 else self._row(index, palette)
            if len(self._lines) > CACHE_LIMIT:
                self._lines.clear()
            self._lines[key] = line
        fixed = self._app_width
        scrolled = line.crop(fixed + scroll_x, fixed + scroll_x + max(0, width - fixed))
        return Strip.join([line.crop(0, fixed), scrolled]).adjust_cell_length(width, palette.base)

    def _header(self, palette: _Palette) -> Strip:
        assert self.board is not None
        style = palette.base + palette.header
        widths = self.board.widths
        segments = _padded(Text("  app"), widths[APP_COLUMN] + 2, style)
        for env in self.board.envs:
            segments += _padded(Text(env), widths[env], style)
        return Strip(segments)

    def _row(self, index: int, palette: _Palette) -> Strip:
        assert self.board is not None
        board, app = self.board, self.apps[index]
        cursor_row, cursor_column = self.cursor
        stripe = palette.base + (palette.odd if index % 2 else palette.even)
        name = Text(f"{MARKER} {app}" if index == cursor_row else f"  {app}")
        app_style = stripe + palette.app + (Style(bold=True) if index == cursor_row else Style())
        segments = _padded(name, board.widths[APP_COLUMN] + 2, app_style)
        for column, env in enumerate(board.envs):
            on_cursor = (index, column) == (cursor_row, cursor_column)
            segments += self._cell(app, env, stripe, palette.cursor if on_cursor else None)
        return Strip(segments)

    def _cell(self, app: str, env: str, stripe: Style, cursor: Style | None) -> list[Segment]:
        """One cell's segments; cells that look alike are drawn once."""
        assert self.board is not None
        row = self.board.row(app, env)
        width = self.board.widths[env]
        key = (cell_key(row), width, stripe, cursor)
        found = self._cells.get(key)
        if found is None:
            if len(self._cells) > CACHE_LIMIT:
                self._cells.clear()
            marker = MARKER if cursor is not None else " "
            found = _padded(styled_cell(row), width, stripe, cursor, marker)
            self._cells[key] = found
        return found

    def _current_palette(self) -> _Palette:
        if self._palette is None:

            def style(name: str) -> Style:
                return self.get_component_styles(name).rich_style

            self._palette = _Palette(
                self.rich_style,
                style("matrix--header"),
                style("matrix--app"),
                style("matrix--even-row"),
                style("matrix--odd-row"),
                style("matrix--cursor"),
            )
            self._lines.clear()
            self._cells.clear()
        return self._palette

    # -- layout and cursor ---------------------------------------------------------------

    def _lay_out(self, board: Board) -> None:
        """Column offsets and the virtual size from the board's widths; forget drawn lines."""
        self._app_width = board.widths.get(APP_COLUMN, 0) + 2 + 2 * PAD
        self._env_offsets = []
        offset = 0
        for env in board.envs:
            self._env_offsets.append(offset)
            offset += board.widths[env] + 2 * PAD
        self.virtual_size = Size(self._app_width + offset, len(self.apps) + 1)
        self._lines.clear()
        self.refresh()

    def _restore_cursor(self, keep: tuple[str, str] | None) -> None:
        board = self.board
        if board is None or not self.apps:
            self.cursor = (0, 0)
            return
        app, env = keep or (self.apps[0], board.envs[0] if board.envs else "")
        row = self.apps.index(app) if app in self.apps else 0
        column = board.envs.index(env) if env in board.envs else 0
        self.cursor = (row, column)
        self._scroll_to_cursor()

    def _move_to(self, row: int, column: int) -> None:
        if self.board is None or not self.apps or not self.board.envs:
            return
        row = min(max(row, 0), len(self.apps) - 1)
        column = min(max(column, 0), len(self.board.envs) - 1)
        if (row, column) == self.cursor:
            return
        self.cursor = (row, column)
        self._scroll_to_cursor()
        self.refresh()
        if (cell := self.selected()) is not None:
            self.post_message(self.CellHighlighted(*cell))

    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        """Scroll just enough to show the cursor's cell below the header and right of the apps."""
        if self.board is None or not self._env_offsets:
            return
        row, column = self.cursor
        x, y = self.scroll_offset
        rows = self._page_rows()
        y = min(y, row) if row < y + rows else row - rows + 1
        area = max(1, self.scrollable_content_region.width - self._app_width)
        left = self._env_offsets[column]
        right = left + self.board.widths[self.board.envs[column]] + 2 * PAD
        x = min(x, left) if right <= x + area else max(left, right - area)
        if (x, y) != tuple(self.scroll_offset):
            self.scroll_to(x=x, y=y, animate=False, immediate=True)


def _padded(
    text: Text, width: int, style: Style, cursor: Style | None = None, marker: str = " "
) -> list[Segment]:
    """A cell: `marker`, the text cut or padded to `width`, a blank; the cursor's style wins."""
    content = Segment.adjust_line_length(list(text.render(_CONSOLE)), width, pad=True)
    return list(Segment.apply_style([Segment(marker), *content, Segment(" ")], style, cursor))
