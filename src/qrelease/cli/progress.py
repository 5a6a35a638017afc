"""Progress of a pass as it runs, with each step's time: live on a terminal, plain lines otherwise.

`reconcile` and `sync` feed every row the pass records to a `Progress`. It keeps, per
(environment, app) being rolled out, the steps seen and when each began (by the injected
monotonic clock), and shows them:

- on a terminal, a live display (rich's `Live`, on stderr) with a spinner per rollout, its
  current step and how long it has run, and the finished steps with their times;
- otherwise (a pipe, a file, CI), one plain line per step as it starts and one line per
  rollout when it ends, with its outcome and step times.

The status table that follows goes to stdout either way, so `2>/dev/null` keeps it alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from qrelease.planning.status import StatusRow

RUNNING = "Running"


@dataclass
class Rollout:
    """One (environment, app) being rolled out: its steps so far and how it ended."""

    label: str
    started: float
    steps: list[tuple[str, float]] = field(default_factory=list)
    """(step, when it began), in order."""
    finished: float | None = None
    outcome: str = RUNNING
    message: str = ""

    def timings(self, now: float) -> list[tuple[str, float]]:
        """Each step with how long it took (the current one: so far)."""
        ends = [began for _, began in self.steps[1:]] + [self.finished or now]
        return [(step, end - began) for (step, began), end in zip(self.steps, ends, strict=True)]

    @property
    def step(self) -> str:
        """The step it is in (or ended in)."""
        return self.steps[-1][0] if self.steps else ""


def seconds(value: float) -> str:
    """A step time as people read it.

    >>> seconds(0.042), seconds(3.14159), seconds(75)
    ('42ms', '3.1s', '1m15s')
    """
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}m{rest:02d}s"


def steps_text(rollout: Rollout, now: float) -> str:
    """`quantum gates 2.0s, install 3.1s`."""
    return ", ".join(f"{step} {seconds(took)}" for step, took in rollout.timings(now))


class Progress:
    """Tracks the rollouts of one pass from its rows; subclasses decide how to show them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rollouts: dict[tuple[str, str], Rollout] = {}
        self._lock = threading.Lock()  # the engine reports rows from its worker threads

    def __call__(self, row: StatusRow) -> None:
        """Take one recorded row."""
        with self._lock:
            self._take(row, self.clock())

    def _take(self, row: StatusRow, now: float) -> None:
        key = (row.env, row.app)
        rollout = self.rollouts.get(key)
        if str(row.rollout) == RUNNING:
            if rollout is None or rollout.finished is not None:
                rollout = self.rollouts[key] = Rollout(f"{row.env}/{row.app}", now)
            step = row.step or "queued"
            if rollout.step != step:
                rollout.steps.append((step, now))
                self.started(rollout, row)
        elif rollout is not None and rollout.finished is None:
            rollout.finished, rollout.outcome = now, str(row.rollout or "")
            rollout.message = row.message
            self.ended(rollout)
        elif row.rollout is not None and str(row.rollout) == "Failed" and row.step:
            self.failed_elsewhere(row)

    def started(self, rollout: Rollout, row: StatusRow) -> None:
        """A rollout reached a new step."""

    def ended(self, rollout: Rollout) -> None:
        """A rollout ended."""

    def failed_elsewhere(self, row: StatusRow) -> None:
        """A row failed without this process seeing it start (a recovered rollout)."""

    def close(self) -> None:
        """The pass is over."""


class PlainProgress(Progress):
    """One line per step as it starts, one per rollout as it ends (stderr)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, file: IO[str] | None = None):
        super().__init__(clock)
        self.file = file

    def _line(self, text: str) -> None:
        click.echo(text, file=self.file, err=self.file is None)

    def started(self, rollout: Rollout, row: StatusRow) -> None:
        self._line(f"{rollout.label}: {row.step or row.message}")

    def ended(self, rollout: Rollout) -> None:
        took = seconds((rollout.finished or rollout.started) - rollout.started)
        text = f"{rollout.label}: {rollout.outcome} in {took} ({steps_text(rollout, 0.0)})"
        if rollout.outcome != "Succeeded" and rollout.message:
            text += f": {rollout.message}"
        self._line(text)

    def failed_elsewhere(self, row: StatusRow) -> None:
        self._line(f"{row.env}/{row.app}: {row.message}")


class LiveProgress(Progress):
    """A live view on a terminal: a spinner per rollout, its step and its step times."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, console: Any = None) -> None:
        super().__init__(clock)
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(stderr=True)
        self._closed = False
        self.live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=8,
            transient=False,
        )
        self.live.start()

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        table = Table.grid(padding=(0, 1))
        with self._lock:
            rollouts = list(self.rollouts.values())
        if not rollouts:
            return Text("") if self._closed else Spinner("dots", Text("planning", style="dim"))
        for rollout in rollouts:
            took = seconds((rollout.finished or now) - rollout.started)
            if rollout.finished is None:
                mark: Any = Spinner("dots", style="cyan")
                state = Text(rollout.step, style="bold")
            else:
                good = rollout.outcome == "Succeeded"
                mark = Text("✓" if good else "✗", style="green" if good else "red")
                state = Text(rollout.outcome, style="green" if good else "red")
            table.add_row(mark, rollout.label, state, took, Text(steps_text(rollout, now), "dim"))
            if rollout.finished is not None and rollout.outcome != "Succeeded":
                table.add_row("", "", Text(rollout.message, style="red"), "", "")
        return table

    def failed_elsewhere(self, row: StatusRow) -> None:
        self.console.print(f"{row.env}/{row.app}: {row.message}", markup=False, highlight=False)

    def close(self) -> None:
        self._closed = True  # nothing rolled out: the spinner goes, nothing is left behind
        self.live.refresh()
        self.live.stop()


def progress_for_terminal(clock: Callable[[], float] = time.monotonic) -> Progress:
    """Live progress when stderr is a terminal, plain lines otherwise."""
    import sys

    if sys.stderr.isatty():
        return LiveProgress(clock)
    return PlainProgress(clock)
