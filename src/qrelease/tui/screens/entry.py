"""One history entry in full: the whole reason, who, which commit, and the release's gates.

The history table cuts long values to keep its columns steady; this screen shows an entry
whole, wrapped to the terminal, with the newest result of each gate of the release the
entry moved to (read from the store in a worker, so a slow store never blocks the screen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from qrelease.history import Entry
from qrelease.tui.data import Dashboard, DashboardError, GateLine
from qrelease.tui.widgets.render import outcome_mark


@dataclass
class GatesLoaded(Message):
    """The newest gate results of the entry's release (empty: none recorded)."""

    gates: tuple[GateLine, ...]


@dataclass
class GatesFailed(Message):
    """The store could not be read."""

    problem: str


class EntryScreen(Screen[None]):
    """Every field of one timeline entry, then the gate results of its release."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, dashboard: Dashboard, entry: Entry) -> None:
        super().__init__()
        self.dashboard, self.entry = dashboard, entry
        self.gates: tuple[GateLine, ...] | None = None
        """None until the store has answered."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="entry"):
            yield Static(entry_fields_table(self.entry), id="entry-fields")
            yield Static(Text("Gates", style="bold underline"), id="entry-gates-title")
            yield Static(self._gates_note(), id="entry-gates")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#entry", VerticalScroll).focus()
        if self.entry.to_version and self.entry.env and self.entry.app:
            self._load_gates()

    @work(thread=True, exclusive=True, group="entry-gates")
    def _load_gates(self) -> None:
        entry = self.entry
        assert entry.to_version is not None
        try:
            gates = self.dashboard.gates_of(entry.env, entry.app, entry.to_version)
        except DashboardError as exc:
            self.post_message(GatesFailed(str(exc)))
            return
        self.post_message(GatesLoaded(gates))

    @on(GatesLoaded)
    def _gates_loaded(self, message: GatesLoaded) -> None:
        self.gates = message.gates
        self.query_one("#entry-gates", Static).update(gate_table(self.entry, message.gates))

    @on(GatesFailed)
    def _gates_failed(self, message: GatesFailed) -> None:
        self.query_one("#entry-gates", Static).update(Text(f"⚠ {message.problem}"))

    def action_back(self) -> None:
        """Back to the timeline."""
        self.dismiss()

    def _gates_note(self) -> Text:
        if not self.entry.to_version:
            return Text("  this entry names no release", style="bright_black")
        return Text("  reading the gate results…", style="bright_black")


def entry_fields_table(entry: Entry) -> RenderableType:
    """The entry's fields, one per line; the reason and the ids are never cut."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold", min_width=9)
    grid.add_column(overflow="fold")
    change = f"{entry.from_version or '–'} → {entry.to_version or '–'}"
    rows: list[tuple[str, RenderableType]] = [
        ("time", f"{entry.time:%Y-%m-%d %H:%M:%S %Z}".strip()),
        ("where", f"{entry.app} in {entry.env}"),
        ("action", entry.action),
        ("change", change),
        ("outcome", outcome_mark(entry.outcome)),
        ("actor", entry.actor or "–"),
        ("reason", entry.reason or "–"),
        ("commit", entry.revision or "–"),
        ("signature", entry.signature or "–"),
        ("source", entry.source),
        ("event", f"#{entry.seq}  {entry.hash}" if entry.seq is not None else "–"),
    ]
    for name, value in rows:
        grid.add_row(name, value)
    return Group(Text(f"{entry.action} {entry.app} in {entry.env}", style="bold"), grid)


def gate_table(entry: Entry, gates: tuple[GateLine, ...]) -> RenderableType:
    """The newest result of each gate of the entry's release in its environment."""
    if not gates:
        where = f"{entry.app} {entry.to_version} in {entry.env}"
        return Text(f"  no gate results recorded for {where}", style="bright_black")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold", min_width=9)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for gate in gates:
        grid.add_row(gate.gate, outcome_mark(gate.outcome), gate.message)
    return grid
