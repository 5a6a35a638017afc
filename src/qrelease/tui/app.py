"""The Textual app: one `make_app` factory for `qrelease tui` and for the tests.

The app is only the hub: it holds the `Dashboard` (the repo, the state dir, the clock and
the quantum backends) and opens the main screen; the screens do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from qrelease.engine import utcnow
from qrelease.model.environment import Environment
from qrelease.quantum.base import QuantumBackend
from qrelease.source.signatures import TrustedKeys
from qrelease.tui.data import Dashboard
from qrelease.tui.screens.main import MainScreen

POLL_SECONDS = 1.0


class QreleaseApp(App[None]):
    """Watch every app in every environment; promote and roll back by Git commits."""

    CSS_PATH = "app.tcss"
    TITLE = "qrelease"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(self, dashboard: Dashboard, poll_interval: float = POLL_SECONDS) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.poll_interval = poll_interval
        self.sub_title = f"{dashboard.label} @ {dashboard.branch}"

    def get_default_screen(self) -> Screen[None]:
        """The matrix is home; history, diff and the dialogs are pushed over it."""
        return MainScreen(self.dashboard, self.poll_interval)


def make_app(
    repo: str,
    state_dir: Path,
    *,
    branch: str = "main",
    quantum_for: Callable[[Environment], QuantumBackend] | None = None,
    clock: Callable[[], datetime] = utcnow,
    actor: str | None = None,
    poll_interval: float = POLL_SECONDS,
    store_url: str | None = None,
    keys: TrustedKeys | None = None,
) -> QreleaseApp:
    """The app over one GitOps repo (path or URL) and one state dir.

    `quantum_for` answers target availability for the policy checks (default: the local
    backends, as the CLI uses); `clock` is what "now" means to soak checks and ages;
    `actor` ("Name <email>") authors the commits (default: git config); `store_url` is
    the state store (default: the state dir's SQLite file).
    """
    if quantum_for is None:
        from qrelease.wiring import LocalBackends

        quantum_for = LocalBackends(state_dir).quantum_for
    dashboard = Dashboard(repo, state_dir, quantum_for, clock, branch, actor, store_url, keys)
    return QreleaseApp(dashboard, poll_interval)


def run_tui(
    repo: str,
    state_dir: Path,
    branch: str = "main",
    store_url: str | None = None,
    keys: TrustedKeys | None = None,
) -> int:
    """Run the UI in the terminal until the user quits; the exit code for the CLI."""
    app = make_app(repo, state_dir, branch=branch, store_url=store_url, keys=keys)
    app.run()
    return app.return_code or 0
