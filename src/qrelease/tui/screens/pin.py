"""Promote and Rollback dialogs: choose, read the checks and the plan, give a reason, confirm.

The dialog opens with the reason focused, so typing at once is never lost. Nothing is
written until the Confirm button is pressed: Enter in the reason moves to that button (whose
label says exactly what it will do) and never commits by itself. The choices run a dry run
in a worker (the same policy over the same evidence as the real thing), the reason is
required, and `--force` is offered only when a check fails. Every release in the version
picker carries what its gates last said; a release whose gates failed is marked and never
proposed. The commit and push then run in a worker while the dialog shows progress, and
end with the commit id or the refusal naming each failed check. Escape cancels at any point
before the commit starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Footer,
    Input,
    Label,
    LoadingIndicator,
    Select,
    Static,
)
from textual.worker import get_current_worker

from qrelease.promotion.promote import Result
from qrelease.tui.board import Board, GateVerdict, promote_target, versions
from qrelease.tui.data import Dashboard, DashboardError, PinAction, Preview
from qrelease.tui.widgets.checkbox import MarkedCheckbox
from qrelease.tui.widgets.render import check_lines


@dataclass
class ChoiceReady(Message):
    """The release a dialog proposes for an environment (None: the user must choose)."""

    env: str
    version: str | None
    choices: list[tuple[str, GateVerdict]]
    """Every valid release, newest first, with what its gates last said."""


@dataclass
class PreviewReady(Message):
    """The dry run of the current choice."""

    preview: Preview


@dataclass
class PreviewFailed(Message):
    """The current choice cannot be carried out at all; the problem says why."""

    env: str
    version: str
    problem: str


@dataclass
class Committed(Message):
    """The promote or rollback ran: a commit was pushed, or policy refused it."""

    result: Result


@dataclass
class CommitFailed(Message):
    """Git refused (a lost race on the same pin, no access); nothing was pushed."""

    problem: str


class PinDialog(ModalScreen[Result | None]):
    """What Promote and Rollback share; subclasses name the action and the starting environment."""

    ACTION: ClassVar[PinAction]
    ENV_LABEL: ClassVar[str]
    AUTO_FOCUS = "#reason"  # focused as the dialog appears: keys typed at once land there
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("q", "quit_unless_busy", "Quit", show=False),
    ]

    def __init__(self, dashboard: Dashboard, board: Board, app: str, env: str) -> None:
        super().__init__()
        self.dashboard, self.board, self.app_name = dashboard, board, app
        self.env = self.starting_env(board, env)
        self.preview: Preview | None = None
        self.result: Result | None = None
        self.busy = False
        self.verdicts: dict[str, GateVerdict] = {}

    @classmethod
    def starting_env(cls, board: Board, env: str) -> str:
        """The environment the dialog opens on, given the selected cell's."""
        return env

    def compose(self) -> ComposeResult:
        title = f"{self.ACTION.capitalize()} {self.app_name}"
        with Vertical(id="dialog"):
            yield Static(Text(title, style="bold"), id="dialog-title")
            with Horizontal(id="choices"):
                yield Label(self.ENV_LABEL)
                envs = [(env, env) for env in self.board.envs]
                yield Select(envs, value=self.env, allow_blank=False, id="env", compact=True)
                yield Label("version")
                options = [(v, v) for v in versions(self.board.snapshot, self.app_name)]
                yield Select(options, prompt="choose", id="version", compact=True)
            yield Static("Choose a version to see the policy checks.", id="checks")
            yield Static("", id="plan")
            placeholder = "reason (required; recorded in the commit); Enter, then confirm"
            yield Input(placeholder=placeholder, id="reason")
            force = "--force: override the failed checks (recorded)"
            yield MarkedCheckbox(force, id="force", compact=True)
            with Horizontal(id="buttons"):
                yield Button(f"{self.ACTION.capitalize()}…", id="confirm", variant="primary")
                yield Button("Cancel", id="cancel")
            yield LoadingIndicator(id="progress")
            yield Static("", id="outcome")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#force", Checkbox).display = False
        self.query_one("#progress", LoadingIndicator).display = False
        self._update_confirm()

    def on_key(self, event: events.Key) -> None:
        """Keys typed while the dialog appears (nothing focused yet) go into the reason."""
        if self.focused is not None or self.busy or not event.is_printable:
            return
        reason = self.query_one("#reason", Input)
        reason.insert_text_at_cursor(event.character or "")
        self.set_focus(reason)
        event.stop()
        event.prevent_default()

    # -- workers ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="choice")
    def _propose(self, env: str) -> None:
        try:
            version = self.dashboard.default_version(self.board, self.ACTION, self.app_name, env)
        except DashboardError:
            version = None  # no proposal; the user picks one and the dry run explains
        try:
            choices = self.dashboard.version_choices(self.board, self.app_name)
        except DashboardError:  # the store is unreadable: offer the releases unmarked
            choices = [(v, GateVerdict()) for v in versions(self.board.snapshot, self.app_name)]
        if not get_current_worker().is_cancelled:
            self.post_message(ChoiceReady(env, version, choices))

    @work(thread=True, exclusive=True, group="preview")
    def _dry_run(self, env: str, version: str) -> None:
        try:
            preview = self.dashboard.preview(self.board, self.ACTION, self.app_name, env, version)
        except DashboardError as exc:
            self.post_message(PreviewFailed(env, version, str(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(PreviewReady(preview))

    @work(thread=True, exclusive=True, group="commit")
    def _commit(self, preview: Preview, reason: str, force: bool) -> None:
        try:
            result = self.dashboard.commit(
                preview.action, preview.app, preview.env, preview.to_version, reason, force=force
            )
        except DashboardError as exc:
            self.post_message(CommitFailed(str(exc)))
            return
        self.post_message(Committed(result))

    # -- handlers --------------------------------------------------------------------

    @on(Select.Changed, "#env")
    def _env_changed(self, message: Select.Changed) -> None:
        if isinstance(message.value, str):
            self.env = message.value
            self._clear_preview("Finding the release to propose…")
            self._propose(message.value)

    @on(ChoiceReady)
    def _choice_ready(self, message: ChoiceReady) -> None:
        select = self.query_one("#version", Select)
        if message.env != self.env:
            return
        verdicts = dict(message.choices)
        if verdicts != self.verdicts:
            self.verdicts = verdicts
            chosen = select.value
            select.set_options([(version_label(v, g), v) for v, g in message.choices])
            if isinstance(chosen, str) and chosen in verdicts:
                select.value = chosen
        proposed = message.version
        blocked = proposed is not None and self.verdicts.get(proposed, GateVerdict()).blocked
        if proposed in verdicts and not blocked and select.value != proposed:
            select.value = proposed  # posts Select.Changed, which runs the dry run
        elif isinstance(select.value, str):
            self._dry_run(self.env, select.value)
        elif blocked:
            mark = self.verdicts[str(proposed)].mark()
            self._clear_preview(Text(f"Not proposing {proposed} ({mark}): choose a version."))
        else:
            self._clear_preview("Nothing to propose here: choose a version.")

    @on(Select.Changed, "#version")
    def _version_changed(self, message: Select.Changed) -> None:
        if isinstance(message.value, str):
            self._clear_preview("Checking policy…")
            self._dry_run(self.env, message.value)

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        preview = message.preview
        if (preview.env, preview.to_version) != self._choice():
            return
        self.preview = preview
        self.query_one("#checks", Static).update(check_lines(preview.checks))
        self.query_one("#plan", Static).update(Text.assemble(("Plan  ", "bold"), preview.pin_line))
        self.query_one("#force", Checkbox).display = bool(preview.refused)
        self._update_confirm()

    @on(PreviewFailed)
    def _preview_failed(self, message: PreviewFailed) -> None:
        if (message.env, message.version) == self._choice():
            self._clear_preview(Text(f"✗ {message.problem}", style="bold red"))

    @on(Input.Changed, "#reason")
    def _reason_changed(self) -> None:
        self._update_confirm()

    @on(Input.Submitted, "#reason")
    def _reason_done(self) -> None:
        """Enter in the reason never commits: it moves to Confirm, or says what is missing."""
        if self._can_confirm():
            self.query_one("#confirm", Button).focus()
        elif not self.query_one("#reason", Input).value.strip():
            self.notify("A reason is required: it goes into the commit.", severity="warning")
        elif self.preview is None and not self.busy and not self.result:
            self.notify("Choose a release the policy can judge first.", severity="warning")

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if not self._can_confirm() or self.preview is None:
            return
        reason = self.query_one("#reason", Input).value.strip()
        force = self.query_one("#force", Checkbox).value and bool(self.preview.refused)
        self._set_busy(True, f"{self.ACTION.capitalize()}: committing and pushing…")
        self._commit(self.preview, reason, force)

    @on(Checkbox.Changed, "#force")
    def _force_changed(self) -> None:
        self._update_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Committed)
    def _committed(self, message: Committed) -> None:
        result = message.result
        self._set_busy(False, _outcome(result))
        self.query_one("#checks", Static).update(check_lines(result.checks))
        if result.refused:
            self.query_one("#force", Checkbox).display = True
            self.query_one("#force", Checkbox).focus()  # the one way forward, if any
            return
        self.result = result
        self.query_one("#confirm", Button).display = False
        self.query_one("#cancel", Button).label = "Close"
        self.query_one("#cancel", Button).focus()

    @on(CommitFailed)
    def _commit_failed(self, message: CommitFailed) -> None:
        self._set_busy(False, Text(f"✗ nothing was pushed: {message.problem}", style="bold red"))
        self.query_one("#reason", Input).focus()

    def action_cancel(self) -> None:
        """Close the dialog; while a push is running, wait for it instead."""
        if not self._wait_if_busy():
            self.dismiss(self.result)

    def action_quit_unless_busy(self) -> None:
        """Quit the app, but never while a push runs: its result must be seen."""
        if not self._wait_if_busy():
            self.app.exit()

    def _wait_if_busy(self) -> bool:
        if self.busy:
            self.notify("A commit is being pushed; wait for its result.", severity="warning")
        return self.busy

    # -- helpers (called from handlers only) ------------------------------------------

    def _choice(self) -> tuple[str, str | None]:
        version = self.query_one("#version", Select).value
        return self.env, version if isinstance(version, str) else None

    def _clear_preview(self, note: str | Text) -> None:
        self.preview = None
        self.query_one("#checks", Static).update(note)
        self.query_one("#plan", Static).update("")
        self.query_one("#force", Checkbox).display = False
        self._update_confirm()

    def _can_confirm(self) -> bool:
        reason = self.query_one("#reason", Input).value.strip()
        return bool(reason) and self.preview is not None and not self.busy and not self.result

    def _update_confirm(self) -> None:
        button = self.query_one("#confirm", Button)
        button.disabled = not self._can_confirm()
        preview = self.preview
        label = f"{self.ACTION.capitalize()}…"
        if preview is not None:
            forced = preview.refused and self.query_one("#force", Checkbox).value
            label = self.confirm_label(preview) + (" (--force)" if forced else "")
        if str(button.label) != label:
            button.label = label
            button.refresh(layout=True)  # the label sets the button's width

    def confirm_label(self, preview: Preview) -> str:
        """What the Confirm button says it will do."""
        return f"Confirm: {preview.action} {preview.to_version} in {preview.env}"

    def _set_busy(self, busy: bool, note: str | Text) -> None:
        self.busy = busy
        self.query_one("#progress", LoadingIndicator).display = busy
        self.query_one("#outcome", Static).update(note)
        for widget in self.query("#env, #version, #reason, #force"):
            widget.disabled = busy
        self._update_confirm()


class PromoteDialog(PinDialog):
    """Promote the selected cell's app into the next environment downstream."""

    ACTION = "promote"
    ENV_LABEL = "to"

    @classmethod
    def starting_env(cls, board: Board, env: str) -> str:
        """The next environment downstream of the selected one (itself when there is none)."""
        return promote_target(board, env)

    def confirm_label(self, preview: Preview) -> str:
        """`Confirm: promote 1.2.0 to staging`."""
        return f"Confirm: promote {preview.to_version} to {preview.env}"


class RollbackDialog(PinDialog):
    """Pin an earlier release in the selected cell's environment (default: last Healthy)."""

    ACTION = "rollback"
    ENV_LABEL = "in"

    def confirm_label(self, preview: Preview) -> str:
        """`Confirm: roll staging back to 1.1.0`."""
        return f"Confirm: roll {preview.env} back to {preview.to_version}"


def version_label(version: str, verdict: GateVerdict) -> Text:
    """A release in the version picker: its gates' verdict beside it, failed ones in red.

    >>> version_label("1.2.0", GateVerdict(failed=("smoke",))).plain
    '1.2.0  ✗ gates failed: smoke'
    """
    mark = verdict.mark()
    style = "bold red" if verdict.blocked else "green" if verdict.passed else "yellow"
    return Text.assemble(version, ("  " + mark, style) if mark else "")


def _outcome(result: Result) -> Text:
    """The last line of the dialog: the commit, or the refusal with every failed check."""
    change = result.change
    if result.published is None:
        names = ", ".join(check.name for check in result.checks if not check.passed)
        return Text(
            f"✗ refused: {names}; nothing was committed (tick --force to override, recorded)",
            style="bold red",
        )
    where = "pushed" if result.published.pushed else "committed locally (no remote)"
    forced = f", override: {', '.join(change.override)}" if change.override else ""
    return Text(
        f"✓ {change.action} {change.app} {change.from_version or 'none'} -> {change.to_version} "
        f"in {change.env}: {result.published.commit[:12]} {where}{forced}",
        style="bold green",
    )
