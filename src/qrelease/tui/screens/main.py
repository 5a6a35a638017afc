"""The main screen: the live matrix, its filter, the detail pane, and the keys to act on a cell.

A poller thread watches the store (with its own connection) and posts a board only when
something changed; the handler patches the matrix in place. Git is re-read when the
controller reports a new revision, on request, and after a change made from this screen.

The first frame: the poller starts before the widgets are built and the screen waits up
to FIRST_FRAME_WAIT for its first board (the store alone), so the matrix is drawn in the
first frame. While the screen waits it holds no GIL, so the poller reads at full speed;
reading in parallel with Textual's start-up would cost more than it saves, as every SQLite
call gives the GIL up and waits for it back. A store slower than that (a remote database,
a locked file) gets the "Reading the store…" line instead, and its board a frame later.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static
from textual.worker import get_current_worker

from qrelease.promotion.promote import Result
from qrelease.tui.board import LEGEND, Board, headline
from qrelease.tui.data import Dashboard, DashboardError, Details, Watcher
from qrelease.tui.screens.approve import ApproveDialog
from qrelease.tui.screens.diff import DiffScreen
from qrelease.tui.screens.history import HistoryScreen
from qrelease.tui.screens.pin import PinDialog, PromoteDialog, RollbackDialog
from qrelease.tui.widgets.detail import DetailPane
from qrelease.tui.widgets.matrix import Matrix

HEADLINE_REFRESH_SECONDS = 15.0
POLL_SHARE = 10
"""A poll that took t seconds waits at least POLL_SHARE * t before the next: reading ten
thousand apps' status takes most of a second, and the poller must not take the CPU (and
the GIL) the screen needs to keep up with the keyboard. Asked-for refreshes come at once."""
FIRST_FRAME_WAIT = 1.0
"""How long building the screen waits for the store's board (10,000 apps: about 0.8 s)."""


@dataclass
class BoardLoaded(Message):
    """The poller saw a change: the board to show now."""

    board: Board


@dataclass
class BoardFailed(Message):
    """The poller could not read Git or the store; the last board stays on screen."""

    problem: str


@dataclass
class DetailsLoaded(Message):
    """The detail pane's content for one cell."""

    details: Details


@dataclass
class PollerCrashed(Message):
    """The poller thread hit a bug (not a Git or store problem): the app ends with it."""

    error: Exception


@dataclass
class _Handoff:
    """The poller's first board, taken by the screen while it is still being built."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Event = field(default_factory=threading.Event)
    open: bool = True
    """False once the screen stopped waiting: later boards travel as messages."""
    board: Board | None = None

    def give(self, board: Board) -> bool:
        """Hand the board over if the screen still waits for it (else post it)."""
        with self.lock:
            if self.open:
                self.board = board
            self.ready.set()
            return self.open

    def give_up(self) -> None:
        """Nothing to hand over (the store could not be read): the screen waits no longer."""
        self.ready.set()

    def take(self, timeout: float) -> None:
        """Wait up to `timeout` for the first board (then in `board`, if it came in time);
        after this nothing is handed over."""
        self.ready.wait(timeout)
        with self.lock:
            self.open = False


class MainScreen(Screen[None]):
    """Apps × environments, live; Enter for details, p/r to promote or roll back the cell."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("enter", "details", "Details"),
        Binding("p", "promote", "Promote"),
        Binding("r", "rollback", "Rollback"),
        Binding("a", "approve", "Approve"),
        Binding("h", "history", "History"),
        Binding("d", "diff", "Diff"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, dashboard: Dashboard, poll_interval: float) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.board: Board | None = None
        self._poll_interval = poll_interval
        self._wake = threading.Event()
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._first = _Handoff()
        self._poller = threading.Thread(target=self._poll, name="qrelease-tui-poll", daemon=True)

    def compose(self) -> ComposeResult:
        self._poller.start()
        self._first.take(FIRST_FRAME_WAIT)
        yield Header()
        yield Static("Reading the store…", id="status")
        yield Input(placeholder="/ filter apps by name", id="filter", compact=True)
        yield Matrix(id="matrix")
        yield Static(LEGEND, id="legend")
        yield DetailPane(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Matrix).focus()
        self.set_interval(HEADLINE_REFRESH_SECONDS, self._show_headline)
        if self._first.board is not None:  # handed over while the screen was built: first frame
            self._show_board(BoardLoaded(self._first.board))

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()  # let the poller see that now

    # -- threads: compute off the UI thread, post what they found ------------------------

    def _poll(self) -> None:
        """Watch the store until the screen goes; each change becomes one BoardLoaded."""
        try:
            self._watch()
        except Exception as exc:  # a bug: the UI thread raises it, as a worker would
            self._first.give_up()
            self.post_message(PollerCrashed(exc))

    def _watch(self) -> None:
        try:
            watcher = self.dashboard.watcher()
        except DashboardError as exc:
            self._first.give_up()
            self.post_message(BoardFailed(str(exc)))
            return
        with watcher:
            while not self._stop.is_set():
                started = time.monotonic()
                self._poll_once(watcher)
                spent = time.monotonic() - started
                self._wake.wait(max(self._poll_interval, POLL_SHARE * spent))
                self._wake.clear()

    def _poll_once(self, watcher: Watcher) -> None:
        reload_git = self._reload.is_set()
        self._reload.clear()
        try:
            board = watcher.poll(reload_git=reload_git)
        except DashboardError as exc:
            self._first.give_up()
            self.post_message(BoardFailed(str(exc)))
            return
        if board is not None and not self._first.give(board):
            self.post_message(BoardLoaded(board))

    @work(thread=True, exclusive=True, group="details")
    def _load_details(self, board: Board, app: str, env: str) -> None:
        try:
            details = self.dashboard.details(board, app, env)
        except DashboardError as exc:
            self.post_message(BoardFailed(str(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(DetailsLoaded(details))

    # -- handlers: the only code that touches widgets ----------------------------------

    @on(BoardLoaded)
    def _show_board(self, message: BoardLoaded) -> None:
        matrix, previous = self.query_one(Matrix), self.board
        if matrix.board is None:
            matrix.show(message.board, self.query_one("#filter", Input).value)
        else:
            matrix.patch(message.board)
        self.board = message.board
        self._show_headline()
        if not message.board.complete:  # this stage is on screen: read the next after this frame
            self.call_after_refresh(self._wake.set)
        if self._detail_open() and self._selected_changed(previous, message.board):
            self._request_details(keep_shown=True)

    @on(PollerCrashed)
    def _poller_crashed(self, message: PollerCrashed) -> None:
        raise message.error

    @on(BoardFailed)
    def _show_problem(self, message: BoardFailed) -> None:
        self.query_one("#status", Static).update(f"⚠ {message.problem}")

    @on(DetailsLoaded)
    def _show_details(self, message: DetailsLoaded) -> None:
        details = message.details
        if self.query_one(Matrix).selected() == (details.app, details.env):
            self.query_one(DetailPane).show(details)

    @on(Input.Changed, "#filter")
    def _filter(self, message: Input.Changed) -> None:
        if self.board is not None:
            self.query_one(Matrix).show(self.board, message.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(Matrix).focus()

    @on(Matrix.CellSelected)
    def _cell_selected(self) -> None:
        self.action_details()

    @on(Matrix.CellHighlighted)
    def _cell_highlighted(self) -> None:
        if self._detail_open():
            self._request_details()

    def _show_headline(self) -> None:
        if self.board is not None:
            now = self.dashboard.clock()
            self.query_one("#status", Static).update(headline(self.board, now))

    def _detail_open(self) -> bool:
        return bool(self.query_one(DetailPane).display)

    def _request_details(self, *, keep_shown: bool = False) -> None:
        """Load the selected cell's details; a refresh keeps the old ones up until then."""
        cell = self.query_one(Matrix).selected()
        if self.board is None or cell is None:
            return
        if not keep_shown:
            self.query_one(DetailPane).waiting(*cell)
        if self.board.complete:  # else the complete board's arrival asks again
            self._load_details(self.board, *cell)

    def _selected_changed(self, before: Board | None, after: Board) -> bool:
        """Whether a new board changes what the detail pane says about the selected cell."""
        cell = self.query_one(Matrix).selected()
        if before is None or cell is None or before.stage != after.stage:
            return True
        return before.revision != after.revision or before.row(*cell) != after.row(*cell)

    def _ready_cell(self) -> tuple[Board, tuple[str, str]] | None:
        """The board and selected cell, once the manifests are read (else say why not)."""
        cell = self.query_one(Matrix).selected()
        if self.board is None or cell is None:
            self.notify("Nothing selected yet", severity="warning")
            return None
        if not self.board.complete:
            self.notify("Still reading the release manifests…", severity="warning")
            return None
        return self.board, cell

    # -- actions (key bindings) --------------------------------------------------------

    def action_filter(self) -> None:
        """Type to narrow the matrix to matching apps."""
        self.set_focus(self.query_one("#filter", Input))  # now: the next key typed is its

    def action_details(self) -> None:
        """Open the detail pane for the selected cell; it follows the cursor while open."""
        self.query_one(DetailPane).display = True
        self._request_details()

    def action_back(self) -> None:
        """Clear the filter (every app shows again), else close the detail pane."""
        matrix, box = self.query_one(Matrix), self.query_one("#filter", Input)
        if box.value or box.has_focus:
            box.value = ""  # posts Input.Changed: the matrix shows every app, cursor kept
            matrix.focus()
        elif not matrix.has_focus:
            matrix.focus()
        elif self._detail_open():
            self.query_one(DetailPane).display = False

    def action_promote(self) -> None:
        """Open the promote dialog for the selected cell (its next environment downstream)."""
        self._open_dialog(PromoteDialog)

    def action_rollback(self) -> None:
        """Open the rollback dialog for the selected cell."""
        self._open_dialog(RollbackDialog)

    def action_approve(self) -> None:
        """Approve or reject the release pinned in the selected cell."""
        if ready := self._ready_cell():
            board, cell = ready
            self.app.push_screen(ApproveDialog(self.dashboard, board, *cell), self._after_approval)

    def _after_approval(self, record: object) -> None:
        """An approval landed: the controller may now let the change through; look again."""
        if record is not None:
            self.action_refresh()
            if self._detail_open():
                self._request_details(keep_shown=True)

    def action_history(self) -> None:
        """Show the audit timeline."""
        self.app.push_screen(HistoryScreen(self.dashboard))

    def action_diff(self) -> None:
        """Compare two releases of the selected app."""
        if ready := self._ready_cell():
            board, cell = ready
            self.app.push_screen(DiffScreen(self.dashboard, board, *cell))

    def action_refresh(self) -> None:
        """Re-read Git and the store now."""
        self._reload.set()
        self._wake.set()

    def _open_dialog(self, dialog: type[PinDialog]) -> None:
        if ready := self._ready_cell():
            board, cell = ready
            self.app.push_screen(dialog(self.dashboard, board, *cell), self._after_change)

    def _after_change(self, result: Result | None) -> None:
        """A dialog closed: after a commit, show the new pin at once."""
        if result is not None and not result.refused:
            self.action_refresh()
