"""The approve dialog: approve or reject the release pinned in the selected cell, with a reason.

An approval is signed Git data on `refs/qrelease/approvals` (see `source/approvals.py`);
the controller counts it toward the environment's `policy.approvals`. The dialog says
what it will approve (app, version, environment) before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from qrelease.source.approvals import ApprovalRecord
from qrelease.tui.board import Board
from qrelease.tui.data import Dashboard, DashboardError


@dataclass
class Recorded(Message):
    """The approval (or reject) is on the ref."""

    record: ApprovalRecord


@dataclass
class RecordFailed(Message):
    """Nothing was recorded; the message says why."""

    problem: str


class ApproveDialog(ModalScreen[ApprovalRecord | None]):
    """Approve or reject one release for one environment."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, dashboard: Dashboard, board: Board, app: str, env: str) -> None:
        super().__init__()
        self.dashboard, self.board, self.app_name, self.env = dashboard, board, app, env
        row = board.row(app, env)
        self.version = row.desired if row else None
        self.busy = False

    def compose(self) -> ComposeResult:
        what = f"{self.app_name} {self.version or '(nothing pinned)'} in {self.env}"
        with Vertical(id="dialog"):
            yield Static(Text(f"Approve or reject {what}", style="bold"), id="dialog-title")
            yield Input(placeholder="reason (required; recorded with it)", id="reason")
            with Horizontal(id="buttons"):
                yield Button("Approve", id="approve", variant="success", disabled=True)
                yield Button("Reject", id="reject", variant="error", disabled=True)
                yield Button("Cancel", id="cancel")
            yield Static("", id="outcome")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    @work(thread=True, exclusive=True, group="approve")
    def _record(self, reason: str, approves: bool) -> None:
        try:
            record = self.dashboard.approve(
                self.board, self.app_name, self.env, reason, approves=approves
            )
        except DashboardError as exc:
            self.post_message(RecordFailed(str(exc)))
            return
        self.post_message(Recorded(record))

    @on(Input.Changed, "#reason")
    def _reason_changed(self, message: Input.Changed) -> None:
        ready = bool(message.value.strip()) and self.version is not None and not self.busy
        for button in ("#approve", "#reject"):
            self.query_one(button, Button).disabled = not ready

    @on(Button.Pressed, "#approve")
    def _approve(self) -> None:
        self._start(approves=True)

    @on(Button.Pressed, "#reject")
    def _reject(self) -> None:
        self._start(approves=False)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without recording anything."""
        if not self.busy:
            self.dismiss(None)

    @on(Recorded)
    def _done(self, message: Recorded) -> None:
        record = message.record
        word = "approved" if record.approves else "rejected"
        who = record.approver or f"not counted: {record.problem}"
        outcome = f"✓ {word} as {who}: {record.commit[:12]} (esc to close)"
        self.query_one("#outcome", Static).update(Text(outcome, style="green"))
        self.busy = False
        self.dismiss(record)

    @on(RecordFailed)
    def _failed(self, message: RecordFailed) -> None:
        self.busy = False
        self.query_one("#outcome", Static).update(Text(f"✗ {message.problem}", style="bold red"))

    def _start(self, *, approves: bool) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if self.busy or not reason:
            return
        self.busy = True
        for button in ("#approve", "#reject"):
            self.query_one(button, Button).disabled = True
        self.query_one("#outcome", Static).update("Recording…")
        self._record(reason, approves)
