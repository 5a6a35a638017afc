"""The TUI's data layer, without textual: it reads Git and the store, and runs promotions.

Screens call this layer from worker threads and get immutable values back, so the UI thread
never waits on Git or SQLite and the same code is tested without a terminal. SQLite
connections belong to the thread that opened them: every call opens its own `Store`, and a
`Watcher` keeps one for the life of the polling thread. Promotions go through the CLI's
`Promoter`; the dry run evaluates the same policy over the same evidence, publishing nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from qrelease.history import Entry, timeline
from qrelease.model.environment import Environment
from qrelease.model.events import Event
from qrelease.model.manifest import ReleaseManifest
from qrelease.planning.policy import Check, failed, promotion_checks
from qrelease.planning.status import StatusRow
from qrelease.promotion import Promoter, PromotionError, ReleaseDiff, Result, diff_releases
from qrelease.quantum.base import QuantumBackend
from qrelease.runtime import open_store
from qrelease.source.loader import Loader, Snapshot
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.workspace import is_local_repo, open_repo, redact_url
from qrelease.store.sqlite import Run, Store, StoreError
from qrelease.tui.board import Board, build_board, upstream_version

PinAction = Literal["promote", "rollback"]
GIT_REFRESH_SECONDS = 30.0
PINS_ONLY = ("releases",)
"""What the first frame reads: the environment files alone take milliseconds to parse."""
EVENTS_SHOWN = 8


class DashboardError(Exception):
    """Git, the store or the policy could not do what a screen asked; the message says why."""


@contextmanager
def _reported() -> Iterator[None]:
    """Turn the errors of the layers below into one error type the screens show."""
    try:
        yield
    except (PromotionError, SourceError, StoreError) as exc:
        raise DashboardError(str(exc)) from exc


# -- values the screens show --------------------------------------------------------------


@dataclass(frozen=True)
class GateLine:
    """The latest result of one quantum gate for one release."""

    gate: str
    outcome: str
    message: str


@dataclass(frozen=True)
class Details:
    """Everything the detail pane shows for one cell."""

    app: str
    env: str
    row: StatusRow | None
    version: str | None
    manifest: ReleaseManifest | None
    gates: tuple[GateLine, ...]
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Preview:
    """A dry run of one pin change: every policy check and the one line it would edit."""

    action: PinAction
    app: str
    env: str
    from_version: str | None
    to_version: str
    checks: tuple[Check, ...]

    @property
    def refused(self) -> list[Check]:
        """The checks that would stop it unless forced."""
        return failed(self.checks)

    @property
    def pin_line(self) -> str:
        """The plan: `apps.X: a -> b in releases/env.yaml`."""
        before = self.from_version or "none"
        return f"apps.{self.app}: {before} -> {self.to_version} in releases/{self.env}.yaml"


# -- the service the screens call from their workers --------------------------------------


class _DryRunPromoter(Promoter):
    """The CLI's Promoter plus the dry runs the dialogs show before anything is committed."""

    def use_snapshot(self, snapshot: Snapshot) -> None:
        """Judge against the snapshot the screen shows instead of re-reading the remote."""
        self._snapshot = snapshot

    def preview_promote(self, app: str, env_name: str, version: str) -> Preview:
        """The checks `promote` would run, computed without publishing."""
        env = self._environment(env_name)
        manifest = self._manifest(app, version)
        current = self._pin_to_replace(env, app, version)
        checks = promotion_checks(self._evidence(env, app, version, manifest))
        return Preview("promote", app, env_name, current, version, tuple(checks))

    def preview_rollback(self, app: str, env_name: str, version: str) -> Preview:
        """What `rollback` would commit: it checks only that the older release still validates."""
        env = self._environment(env_name)
        self._manifest(app, version)
        current = self._pin_to_replace(env, app, version)
        check = Check("manifest-valid", True, f"manifests/{app}/{version}.yaml validates")
        return Preview("rollback", app, env_name, current, version, (check,))

    def last_healthy(self, app: str, env_name: str) -> str | None:
        """The release a rollback pins by default, if there was an earlier Healthy one."""
        current = self._environment(env_name).apps.get(app)
        try:
            return self._last_healthy(env_name, app, current)
        except PromotionError:
            return None

    def _pin_to_replace(self, env: Environment, app: str, version: str) -> str | None:
        """The current pin, which the new one must differ from (as promote/rollback require)."""
        current = env.apps.get(app)
        if current == version:
            raise PromotionError(f"{app} is already pinned to {version} in {env.environment}")
        return current


@dataclass(frozen=True)
class Dashboard:
    """One GitOps repo and one state dir, as the TUI reads and changes them."""

    location: str
    state_dir: Path
    quantum_for: Callable[[Environment], QuantumBackend]
    clock: Callable[[], datetime]
    branch: str = "main"
    actor: str | None = None

    @property
    def label(self) -> str:
        """A short name for the repo: no credentials, no local directory layout."""
        if is_local_repo(self.location):
            return Path(self.location).resolve().name
        return redact_url(self.location)

    @contextmanager
    def store(self) -> Iterator[Store]:
        """A Store for the calling thread, closed afterwards."""
        with _reported(), open_store(self.state_dir) as store:
            yield store

    @contextmanager
    def repo(self) -> Iterator[GitRepo]:
        """The GitOps repo (a remote one is fetched first), closed afterwards."""
        with _reported(), open_repo(self.location, self.state_dir) as repo:
            yield repo

    def fetch(self) -> None:
        """Bring the local mirror of a remote repo up to date (a local repo is read in place)."""
        if not is_local_repo(self.location):
            with self.repo():
                pass  # opening a remote's mirror fetches it

    def watcher(self) -> Watcher:
        """A poller for the calling thread; close it in the same thread."""
        return Watcher(self)

    def details(self, board: Board, app: str, env: str) -> Details:
        """The release a cell is about (desired, else deployed), its gates and its last events."""
        row = board.row(app, env)
        version = (row.desired or row.deployed) if row else None
        with self.store() as store:
            gates = _gate_lines(store, env, app, version) if version else ()
            events = store.events(env=env, app=app, limit=EVENTS_SHOWN, descending=True)
        manifest = board.snapshot.manifest(app, version) if version else None
        return Details(app, env, row, version, manifest, gates, tuple(events))

    def history(self) -> list[Entry]:
        """The `qrelease history` timeline, newest first."""
        with self.store() as store, self.repo() as repo:
            return list(reversed(timeline(store, repo, _branch_rev(repo, self.branch))))

    def diff(self, board: Board, app: str, old: str, new: str) -> ReleaseDiff:
        """Field and program differences between two releases at the board's revision."""
        with self.repo() as repo:
            return diff_releases(repo, board.snapshot, app, old, new)

    def default_version(self, board: Board, action: PinAction, app: str, env: str) -> str | None:
        """The release a dialog proposes: Healthy upstream, or the last Healthy one here."""
        if action == "promote":
            return upstream_version(board, app, env)
        with self.store() as store:
            return self._promoter(store, board.snapshot).last_healthy(app, env)

    def preview(self, board: Board, action: PinAction, app: str, env: str, version: str) -> Preview:
        """A dry run against the board's snapshot: nothing is committed or recorded."""
        with self.store() as store:
            promoter = self._promoter(store, board.snapshot)
            if action == "promote":
                return promoter.preview_promote(app, env, version)
            return promoter.preview_rollback(app, env, version)

    def commit(
        self, action: PinAction, app: str, env: str, version: str, reason: str, *, force: bool
    ) -> Result:
        """Carry out the change exactly as the CLI does: policy first, then commit and push."""
        with self.store() as store:
            promoter = self._promoter(store)
            if action == "promote":
                return promoter.promote(app, env, version, reason, actor=self.actor, force=force)
            return promoter.rollback(app, env, version, reason, actor=self.actor)

    def _promoter(self, store: Store, snapshot: Snapshot | None = None) -> _DryRunPromoter:
        promoter = _DryRunPromoter(
            self.location, self.state_dir, store, self.quantum_for, self.clock, self.branch
        )
        if snapshot is not None:
            promoter.use_snapshot(snapshot)
        return promoter


class Watcher:
    """Polls the store from one thread, re-reading Git only when something says it moved.

    Git is re-read when the controller's last run names a new revision, when asked (after a
    promotion from this UI), and every GIT_REFRESH_SECONDS for commits nobody applied yet.
    One Loader lives as long as the watcher, so a re-read parses only the files that changed.
    The first poll reads only the pins (`complete` is False until the next one).
    """

    def __init__(self, dashboard: Dashboard, git_every: float = GIT_REFRESH_SECONDS) -> None:
        self._dashboard = dashboard
        self._git_every = git_every
        with _reported():
            self._repo = open_repo(dashboard.location, dashboard.state_dir)
            self._store = open_store(dashboard.state_dir)
        self._loader = Loader(self._repo)
        self._snapshot: Snapshot | None = None
        self._run_revision: str | None = None
        self._loaded_at = 0.0
        self._board: Board | None = None

    @property
    def complete(self) -> bool:
        """False until the manifests, not just the pins, have been read."""
        return self._board is not None and self._board.complete

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._store.close()
        self._repo.close()

    def poll(self, *, reload_git: bool = False) -> Board | None:
        """A new board when anything shown changed since the last poll, else None."""
        with _reported():
            last_run = self._store.last_run()
            observed = self._store.all_observed()
            snapshot, complete = self._snapshot_for(last_run, reload_git)
        board = build_board(snapshot, observed, last_run, complete=complete)
        if self._board is not None and board.same_as(self._board):
            return None
        self._board = board
        return board

    def _snapshot_for(self, last_run: Run | None, reload_git: bool) -> tuple[Snapshot, bool]:
        if self._board is None:
            pins = Loader(self._repo, roots=PINS_ONLY).load(self._dashboard.branch)
            return replace(pins, errors=()), False  # its missing-manifest errors are not real
        run_revision = last_run.revision if last_run else None
        due = time.monotonic() - self._loaded_at >= self._git_every
        moved = run_revision != self._run_revision
        if self._snapshot is None or reload_git or due or moved:
            if self._snapshot is not None:
                self._dashboard.fetch()
            self._loaded_at = time.monotonic()
            self._snapshot = self._loader.load(self._dashboard.branch)
        self._run_revision = run_revision
        return self._snapshot, True


def _gate_lines(store: Store, env: str, app: str, version: str) -> tuple[GateLine, ...]:
    """The newest result of each gate run for `version` in (env, app)."""
    latest: dict[str, GateLine] = {}
    for event in store.iter_events(env=env, app=app, actions=["gate"], descending=True, limit=500):
        gate = str(event.details.get("gate", ""))
        if event.to_version == version and gate not in latest:
            message = str(event.details.get("message", event.reason))
            latest[gate] = GateLine(gate, event.outcome, message)
    return tuple(sorted(latest.values(), key=lambda line: line.gate))


def _branch_rev(repo: GitRepo, branch: str) -> str:
    """The tracked branch if the repo has it, else HEAD (as `qrelease history` does)."""
    try:
        return repo.resolve(branch)
    except SourceError:
        return "HEAD"
