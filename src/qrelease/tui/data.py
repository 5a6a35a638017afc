"""The TUI's data layer, without textual: it reads Git and the store, and runs promotions.

Screens call this layer from worker threads and get immutable values back, so the UI thread
never waits on Git or SQLite and the same code is tested without a terminal. SQLite
connections belong to the thread that opened them: every call opens its own `Store`, and a
`Watcher` keeps one for the life of the polling thread. Promotions go through the CLI's
`Promoter`; the dry run evaluates the same policy over the same evidence, publishing nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from qrelease.evidence import release_digest
from qrelease.history import Entry, timeline
from qrelease.model.environment import Environment
from qrelease.model.events import Event
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import EventKind
from qrelease.planning.status import StatusRow, recorded_rows
from qrelease.planning.upstream import GATE_EVENTS_SCANNED, GateLine, newest_gates
from qrelease.promotion.diff import ReleaseDiff, UnknownReleaseError, diff_releases
from qrelease.promotion.promote import PinAction, Preview, Promoter, PromotionError, Result
from qrelease.quantum.base import QuantumBackend
from qrelease.redaction import redact_url
from qrelease.source.approvals import ApprovalRecord, read_approvals, record_approval
from qrelease.source.loader import Loader, Snapshot
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys
from qrelease.source.workspace import is_local_repo, open_repo
from qrelease.store import open_parse_cache
from qrelease.store.base import Run, StateStore, StoreError
from qrelease.store.parsecache import ParseCache
from qrelease.tui.board import (
    Board,
    GateVerdict,
    Recorded,
    Stage,
    build_board,
    gate_verdicts,
    store_board,
    upstream_version,
    versions,
)
from qrelease.wiring import open_state, promoter

__all__ = ["GateLine", "PinAction", "Preview"]

GIT_REFRESH_SECONDS = 30.0
EVENTS_SHOWN = 8
PINS_ONLY = ("releases",)
"""What the second frame reads: the environment files alone take milliseconds to parse."""
VERDICT_EVENTS_SCANNED = 2000
"""How many of an app's newest gate events the version pickers read to mark each release."""
ENV_ORDER_FILE = "tui-environments.json"
"""In the state dir: the environments in the promotion order the TUI last read from Git,
`{"version": 1, "environments": ["dev", "staging", "prod"]}`, so the next first frame (drawn
from the store, before Git is read) shows the columns where they will stay. Only a hint: a
missing or unreadable file means the conventional order is guessed."""


class DashboardError(Exception):
    """Git, the store or the policy could not do what a screen asked; the message says why."""


@contextmanager
def _reported() -> Iterator[None]:
    """Turn the errors of the layers below into one error type the screens show."""
    try:
        yield
    except (PromotionError, UnknownReleaseError, SourceError, StoreError) as exc:
        raise DashboardError(str(exc)) from exc


# -- values the screens show --------------------------------------------------------------


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
    approvals: tuple[ApprovalRecord, ...] = ()
    """Approves and rejects of this release here, oldest first (when the environment asks)."""
    required: int = 0
    """How many approvals the environment asks for (0: none)."""


# -- the service the screens call from their workers --------------------------------------


@dataclass(frozen=True)
class Dashboard:
    """One GitOps repo and one state dir, as the TUI reads and changes them."""

    location: str
    state_dir: Path
    quantum_for: Callable[[Environment], QuantumBackend]
    clock: Callable[[], datetime]
    branch: str = "main"
    actor: str | None = None
    store_url: str | None = None
    """The store's URL; None means the state dir's SQLite file."""
    keys: TrustedKeys | None = None
    """Signed-commit verification's keys: approvals count only when a trusted key signed them."""

    @property
    def label(self) -> str:
        """A short name for the repo: no credentials, no local directory layout."""
        if is_local_repo(self.location):
            return Path(self.location).resolve().name
        return redact_url(self.location)

    @contextmanager
    def store(self) -> Iterator[StateStore]:
        """A Store for the calling thread, closed afterwards."""
        with _reported(), open_state(self.state_dir, self.store_url) as store:
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
        environment = board.snapshot.environments.get(env)
        rule = environment.policy.approvals if environment else None
        if manifest is None or rule is None:
            return Details(app, env, row, version, manifest, gates, tuple(events))
        digest = release_digest(board.snapshot, manifest)
        with self.repo() as repo:
            approvals = tuple(
                record
                for record in read_approvals(repo, self.keys)
                if (record.env, record.app, record.version, record.digest)
                == (env, app, manifest.version, digest)
            )
        return Details(
            app, env, row, version, manifest, gates, tuple(events), approvals, rule.required
        )

    def approve(
        self, board: Board, app: str, env: str, reason: str, *, approves: bool
    ) -> ApprovalRecord:
        """Approve (or reject) the release pinned in `env`, as `qrelease approve` does."""
        row = board.row(app, env)
        version = row.desired if row else None
        manifest = board.snapshot.manifest(app, version) if version else None
        if manifest is None:
            raise DashboardError(f"{app} has no valid release pinned in {env} to approve")
        digest = release_digest(board.snapshot, manifest)
        with self.repo() as repo, _reported():
            commit = record_approval(
                repo,
                env=env,
                app=app,
                version=manifest.version,
                digest=digest,
                approves=approves,
                reason=reason,
                actor=self.actor,
            )
            recorded = [r for r in read_approvals(repo, self.keys) if r.commit == commit]
        if not recorded:
            raise DashboardError(f"the approval {commit[:12]} was written but cannot be read back")
        return recorded[0]

    def version_choices(self, board: Board, app: str) -> list[tuple[str, GateVerdict]]:
        """Every valid release of an app, newest first, with what its gates last said."""
        with self.store() as store:
            events = store.iter_events(
                app=app, actions=[EventKind.GATE], descending=True, limit=VERDICT_EVENTS_SCANNED
            )
            verdicts = gate_verdicts(events)
        return [(v, verdicts.get(v, GateVerdict())) for v in versions(board.snapshot, app)]

    def gates_of(self, env: str, app: str, version: str) -> tuple[GateLine, ...]:
        """The newest result of each gate of `version` in (env, app) (the history detail)."""
        with self.store() as store:
            return _gate_lines(store, env, app, version)

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
            try:
                return self._promoter(store, board.snapshot).default_version(action, app, env)
            except PromotionError:
                return None

    def preview(self, board: Board, action: PinAction, app: str, env: str, version: str) -> Preview:
        """A dry run against the board's snapshot: nothing is committed or recorded."""
        with self.store() as store:
            return self._promoter(store, board.snapshot).preview(action, app, env, version)

    def commit(
        self, action: PinAction, app: str, env: str, version: str, reason: str, *, force: bool
    ) -> Result:
        """Carry out the change exactly as the CLI does: policy first, then commit and push."""
        with self.store() as store:
            promotions = self._promoter(store)
            if action == "promote":
                return promotions.promote(app, env, version, reason, actor=self.actor, force=force)
            return promotions.rollback(app, env, version, reason, actor=self.actor)

    def _promoter(self, store: StateStore, snapshot: Snapshot | None = None) -> Promoter:
        promotions = promoter(
            self.location,
            self.state_dir,
            store,
            branch=self.branch,
            clock=self.clock,
            quantum_for=self.quantum_for,
        )
        if snapshot is not None:
            promotions.use_snapshot(snapshot)
        return promotions


class Watcher:
    """Polls the store from one thread, re-reading Git only when something says it moved.

    The first poll reads the store alone (`Stage.STORE`): the first frame never waits on
    Git. The second reads Git's environment files (`Stage.PINS`: the matrix now shows what
    Git wants), the third every manifest (`Stage.COMPLETE`). After that Git is re-read when
    the controller's last run names a new revision, when asked (after a promotion from this
    UI), and every GIT_REFRESH_SECONDS for commits nobody applied yet. One Loader lives as
    long as the watcher, so a re-read parses only the files that changed.
    """

    def __init__(self, dashboard: Dashboard, git_every: float = GIT_REFRESH_SECONDS) -> None:
        self._dashboard = dashboard
        self._git_every = git_every
        with _reported():
            self._store = open_state(dashboard.state_dir, dashboard.store_url)
        self._repo: GitRepo | None = None  # opened by the second poll (a remote is fetched)
        self._cache: ParseCache | None = None  # shared with the CLI and the controller
        self._loader: Loader | None = None
        self._snapshot: Snapshot | None = None
        self._run_revision: str | None = None
        self._loaded_at = 0.0
        self._board: Board | None = None
        self._recorded: tuple[Mapping[tuple[str, str], ObservedState], Recorded] | None = None

    @property
    def complete(self) -> bool:
        """False until Git, every manifest included, has been read."""
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
        if self._cache is not None:
            self._cache.close()
        if self._repo is not None:
            self._repo.close()

    def poll(self, *, reload_git: bool = False) -> Board | None:
        """A new board when anything shown changed since the last poll, else None."""
        with _reported():
            last_run = self._store.last_run()
            recorded = self._recorded_rows()
            if self._board is None:
                board = store_board(recorded, last_run, remembered_order(self._dashboard))
            else:
                snapshot, stage = self._snapshot_for(last_run, reload_git)
                board = build_board(snapshot, recorded, last_run, stage)
        if self._board is not None and board.same_as(self._board):
            return None
        if board.stage != Stage.STORE and (self._board is None or self._board.envs != board.envs):
            remember_order(self._dashboard, board.envs)
        self._board = board
        return board

    def _recorded_rows(self) -> Recorded:
        """The rows of the recorded states, made again only when the store moved.

        The store hands back the very mapping it read last while nothing changed (SQLite's
        `data_version`), so three stages of the first second make the rows once.
        """
        observed = self._store.observed_by_key()
        if self._recorded is None or self._recorded[0] is not observed:
            self._recorded = (observed, recorded_rows(observed.values()))
        return self._recorded[1]

    def _snapshot_for(self, last_run: Run | None, reload_git: bool) -> tuple[Snapshot, Stage]:
        if self._repo is None:
            self._repo = open_repo(self._dashboard.location, self._dashboard.state_dir)
            self._cache = open_parse_cache(self._dashboard.state_dir)
            pin_loader = Loader(self._repo, roots=PINS_ONLY, cache=self._cache)
            pins = pin_loader.load(self._dashboard.branch)
            return replace(pins, errors=()), Stage.PINS  # its missing-manifest errors are not real
        run_revision = last_run.revision if last_run else None
        due = time.monotonic() - self._loaded_at >= self._git_every
        moved = run_revision != self._run_revision
        if self._loader is None:
            self._loader = Loader(self._repo, cache=self._cache)
        elif reload_git or due or moved:
            self._dashboard.fetch()
        else:
            assert self._snapshot is not None
            return self._snapshot, Stage.COMPLETE
        self._loaded_at = time.monotonic()
        self._run_revision = run_revision
        self._snapshot = self._loader.load(self._dashboard.branch)
        return self._snapshot, Stage.COMPLETE


def remembered_order(dashboard: Dashboard) -> list[str]:
    """The environments' order the TUI last read from Git (empty when it never did)."""
    with suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads((dashboard.state_dir / ENV_ORDER_FILE).read_text(encoding="utf-8"))
        names = data["environments"]
        if data.get("version") == 1 and isinstance(names, list):
            return [str(name) for name in names]
    return []


def remember_order(dashboard: Dashboard, envs: Sequence[str]) -> None:
    """Keep the environments' order for the next first frame (best effort: only a hint)."""
    path = dashboard.state_dir / ENV_ORDER_FILE
    text = json.dumps({"version": 1, "environments": list(envs)})
    with suppress(OSError):
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)


def _gate_lines(store: StateStore, env: str, app: str, version: str) -> tuple[GateLine, ...]:
    """The newest result of each gate run for `version` in (env, app)."""
    events = store.iter_events(
        env=env, app=app, actions=[EventKind.GATE], descending=True, limit=GATE_EVENTS_SCANNED
    )
    return newest_gates(events, version)


def _branch_rev(repo: GitRepo, branch: str) -> str:
    """The tracked branch if the repo has it, else HEAD (as `qrelease history` does)."""
    try:
        return repo.resolve(branch)
    except SourceError:
        return "HEAD"
