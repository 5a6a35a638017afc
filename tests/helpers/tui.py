"""The TUI over a real bare remote and a real store filled by the engine, driven headless."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

from rich.console import Console
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import WorkerState

from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.environment import Environment
from qrelease.promotion.promote import Promoter
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from qrelease.tui.app import QreleaseApp, make_app
from qrelease.tui.screens.main import MainScreen
from qrelease.tui.widgets.matrix import Matrix
from tests.helpers.gitops import GitOpsRepo

DEPLOYED_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
LATER = DEPLOYED_AT + timedelta(hours=2)
COMMIT_DATE = "2026-11-02T08:00:00+00:00"
SIZE = (100, 30)


class Remote:
    """A bare remote of the example repo, reconciled once by the engine into a real store."""

    def __init__(self, work: GitOpsRepo, root: Path) -> None:
        self.bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(self.bare)], check=True)
        self.state = root / "state"
        self.quantum = MemoryQuantum()
        self.deployer = MemoryDeployer()  # what is deployed lives as long as the remote
        self.reconcile(DEPLOYED_AT)

    def reconcile(self, now: datetime) -> None:
        """One engine pass over the fakes at `now`, as the controller would run it."""
        backends = Backends(lambda env: self.deployer, lambda env: self.quantum)
        with open_store(self.state) as store, GitRepo(self.bare) as repo:
            Engine(repo, store, backends, clock=lambda: now).reconcile("main")

    def promote(self, app: str, env: str, reason: str, now: datetime) -> None:
        """Promote outside the UI (as the CLI would), committed and recorded at `now`."""
        dates = {"GIT_AUTHOR_DATE": now.isoformat(), "GIT_COMMITTER_DATE": now.isoformat()}
        with mock.patch.dict(os.environ, dates), open_store(self.state) as store:
            promoter = Promoter(str(self.bare), self.state, store, self.quantum_for, lambda: now)
            result = promoter.promote(app, env, None, reason, actor="Ada <ada@example.test>")
        assert not result.refused

    def app(self, now: datetime = LATER, poll: float = 0.1) -> QreleaseApp:
        """The TUI over this remote, with a fixed clock."""
        return make_app(
            str(self.bare),
            self.state,
            quantum_for=self.quantum_for,
            clock=lambda: now,
            poll_interval=poll,
        )

    def quantum_for(self, env: Environment) -> MemoryQuantum:
        return self.quantum

    def push_edit(self, path: str, old: str, new: str, message: str) -> str:
        """Edit one file on the remote's branch by hand (clone, commit, push); the new head."""
        work = self.bare.parent / "hand-edit"
        if not work.exists():
            subprocess.run(["git", "clone", "-q", str(self.bare), str(work)], check=True)
        subprocess.run(["git", "-C", str(work), "pull", "-q"], check=True)
        text = (work / path).read_text()
        assert old in text, f"{old!r} not in {path}"
        (work / path).write_text(text.replace(old, new))
        for args in (["commit", "-qam", message], ["push", "-q"]):
            subprocess.run(["git", "-C", str(work), *args], check=True)
        return self.head

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.bare), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    @property
    def head(self) -> str:
        return self.git("rev-parse", "main")

    def event_count(self) -> int:
        with open_store(self.state) as store:
            return store.count_events()


Scenario = Callable[[Pilot[None]], Awaitable[None]]


def drive(app: QreleaseApp, scenario: Scenario, size: tuple[int, int] = SIZE) -> None:
    """Run the app headless, settle it, then play the scenario."""

    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(run())


async def settle(pilot: Pilot[None], timeout: float = 15.0) -> None:
    """Wait until the board is shown and no worker but the poller has been busy for 0.3s."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 6:
        await pilot.pause(0.05)
        main = pilot.app.screen_stack[0]
        busy = [
            w
            for w in pilot.app.workers
            if w.group != "poll" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
        ]
        loaded = isinstance(main, MainScreen) and main.board is not None and main.board.complete
        quiet = quiet + 1 if loaded and not busy else 0
        assert time.monotonic() < deadline, f"the UI did not settle: {busy}"
    await pilot.pause()


async def until(pilot: Pilot[None], ready: Callable[[], object], timeout: float = 15.0) -> None:
    """Wait until `ready()` is true (a worker's result reached the screen), then settle."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out waiting for the screen"
        await pilot.pause(0.05)
    await settle(pilot)


def shown(widget: Widget) -> str:
    """The plain text a Static (or any widget with content) currently shows."""
    assert isinstance(widget, Static)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def cells(app: QreleaseApp) -> dict[tuple[str, str], str]:
    """The matrix as (app, env) -> plain cell text, for the apps it shows."""
    matrix = app.screen_stack[0].query_one(Matrix)
    assert matrix.board is not None
    return {
        (name, env): matrix.cell(name, env).plain
        for name in matrix.apps
        for env in matrix.board.envs
    }


def drawn(app: QreleaseApp) -> list[str]:
    """The matrix's lines on screen as plain text (header first), as a terminal shows them."""
    matrix = app.screen_stack[0].query_one(Matrix)
    return [
        matrix.render_line(y).text.rstrip() for y in range(matrix.scrollable_content_region.height)
    ]


async def type_text(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*["space" if char == " " else char for char in text])


# -- the data layer, without textual ------------------------------------------------------
