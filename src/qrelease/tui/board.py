"""The board: the apps × environments picture and how each cell reads, as pure values.

Nothing here does I/O: a `Board` is built from a snapshot and observed states the data
layer already read, so the matrix, the defaults the dialogs propose, and the history
columns are decided by functions tests can call with plain values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from qrelease.history import Entry
from qrelease.model.environment import Environment, promotion_order
from qrelease.model.events import Event
from qrelease.model.types import format_duration, version_key
from qrelease.model.vocabulary import Availability, EventKind, GateOutcome, Health, Rollout, Sync
from qrelease.planning.status import StatusRow, pinned_rows
from qrelease.planning.upstream import healthy_release
from qrelease.source.loader import Snapshot
from qrelease.store.base import Run

SYNC_GLYPHS: Mapping[Sync, str] = {Sync.SYNCED: "✓", Sync.OUT_OF_SYNC: "↻", Sync.UNKNOWN: "?"}
HEALTH_GLYPHS: Mapping[Health, str] = {
    Health.HEALTHY: "●",
    Health.SUSPENDED: "‖",
    Health.PROGRESSING: "◐",
    Health.MISSING: "○",
    Health.DEGRADED: "✗",
    Health.UNKNOWN: "?",
}
AVAILABILITY_GLYPHS: Mapping[Availability, str] = {
    Availability.AVAILABLE: "",
    Availability.DEGRADED: "△",
    Availability.UNAVAILABLE: "⊘",
    Availability.UNKNOWN: "◇",
}
ROLLOUT_GLYPHS: Mapping[Rollout | None, str] = {
    None: "",
    Rollout.SUCCEEDED: "",
    Rollout.RUNNING: "»",
    Rollout.FAILED: "!",
    Rollout.HELD: "…",
}
STEP_LABELS: Mapping[str, str] = {
    "quantum gates": "gates",
    "health check": "health",
    "health check (live)": "live check",
}
"""Short names for the rollout steps a running cell shows; other steps show as recorded."""
STEP_WIDTH = 12
"""A step name longer than this is cut in a cell (the detail pane shows it whole)."""
LEGEND = (
    "✓ synced ↻ out of sync │ ● healthy ◐ progressing ✗ degraded ○ missing ‖ suspended"
    " │ rollout » running (with its step) ! failed … held │ target △ degraded ⊘ down ◇ unknown"
)
CONVENTIONAL_ORDER = ("dev", "development", "test", "qa", "stage", "staging", "preprod", "uat")
"""Before Git is read, environments with these names go first, in this order, then the rest
by name, and names starting with `prod` last: the usual promotion chain."""


# -- the matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CellParts:
    """What a matrix cell shows, piece by piece (each screen styles the pieces its own way)."""

    versions: str
    """`deployed`, or `deployed → desired` when they differ."""
    sync: str
    health: str
    rollout: str
    target: str
    """Empty while Available and while nothing is deployed (availability is only known for
    what runs)."""
    step: str
    """The step a running rollout is at (`install`, `gates`, `bake`...), else empty."""

    @property
    def text(self) -> str:
        """The whole cell as plain text."""
        glyphs = f"{self.sync}{self.health}{self.rollout}{self.target}"
        return f"{self.versions} {glyphs}" + (f" {self.step}" if self.step else "")


def cell_parts(row: StatusRow) -> CellParts:
    """A cell's versions, its four glyphs and, while a rollout runs, the step it is at."""
    versions = row.deployed or "–"
    if row.desired != row.deployed:
        versions += f" → {row.desired or '–'}"
    return CellParts(
        versions,
        SYNC_GLYPHS[row.sync],
        HEALTH_GLYPHS[row.health],
        ROLLOUT_GLYPHS[row.rollout],
        AVAILABILITY_GLYPHS[row.availability] if row.deployed else "",
        step_label(row.step) if row.rollout == Rollout.RUNNING else "",
    )


def step_label(step: str) -> str:
    """A rollout step as short as a cell needs it.

    >>> step_label("health check (live)"), step_label("install"), step_label("")
    ('live check', 'install', '')
    """
    label = STEP_LABELS.get(step, step)
    return label if len(label) <= STEP_WIDTH else label[: STEP_WIDTH - 1] + "…"


def cell_text(row: StatusRow | None) -> str:
    """A matrix cell that reads without colour: versions, sync, health, rollout, target, step.

    >>> row = StatusRow("dev", "a", "1.1.0", "1.0.0", Sync.OUT_OF_SYNC, Health.HEALTHY,
    ...                 Rollout.FAILED, "install", "t", Availability.UNAVAILABLE, "", None)
    >>> cell_text(row)
    '1.0.0 → 1.1.0 ↻●!⊘'
    >>> from dataclasses import replace
    >>> cell_text(replace(row, rollout=Rollout.RUNNING, availability=Availability.AVAILABLE))
    '1.0.0 → 1.1.0 ↻●» install'
    """
    return "·" if row is None else cell_parts(row).text


class Stage(StrEnum):
    """How much of the picture a board holds: each stage is drawn as soon as it is read."""

    STORE = "store"
    """What the controller last recorded, before Git is read (milliseconds)."""
    PINS = "pins"
    """Git's environment files too: pins, order, policies; no release manifests yet."""
    COMPLETE = "complete"
    """Every manifest too: details, targets and the dialogs' choices."""


APP_COLUMN = "#app"  # not a valid environment name, so it never collides with one
APP_WIDTH_RANGE = (8, 32)
CELL_MIN_WIDTH = 15


@dataclass(frozen=True, eq=False)
class Board:
    """Git's desired state at one revision joined with what the store last observed.

    Before Git is read the board holds the store alone (`Stage.STORE`): each cell as the
    controller last recorded it, environments in the order last seen or guessed.
    """

    snapshot: Snapshot
    envs: tuple[str, ...]
    apps: tuple[str, ...]
    rows: Mapping[tuple[str, str], StatusRow]
    last_run: Run | None
    stage: Stage = Stage.COMPLETE
    widths: Mapping[str, int] = field(default_factory=dict)
    """Each column's width in cells (APP_COLUMN for the app names), from plain text."""

    @property
    def complete(self) -> bool:
        """True once every manifest is read (the dialogs and the detail pane need them)."""
        return self.stage == Stage.COMPLETE

    @property
    def revision(self) -> str:
        """The commit the desired state was read from (before Git: the last pass's)."""
        return self.snapshot.revision

    def row(self, app: str, env: str) -> StatusRow | None:
        """The status of one cell, if the app is pinned or deployed there."""
        return self.rows.get((app, env))

    def same_as(self, other: Board) -> bool:
        """True when nothing a screen shows differs."""
        return (
            self.revision == other.revision
            and self.stage == other.stage
            and self.envs == other.envs
            and self.last_run == other.last_run
            and self.rows == other.rows
        )

    @property
    def problems(self) -> int | None:
        """How many problems the controller's last pass found in Git at this revision."""
        run = self.last_run
        if not self.complete or run is None or run.revision != self.revision:
            return None
        errors = run.summary.get("errors")
        return errors if isinstance(errors, int) else None


Recorded = Mapping[tuple[str, str], StatusRow]
"""The rows of the recorded states by (env, app) (`planning.status.recorded_rows`)."""


def build_board(
    snapshot: Snapshot,
    recorded: Recorded,
    last_run: Run | None,
    stage: Stage = Stage.COMPLETE,
) -> Board:
    """The matrix of every pinned or deployed (app, env), environments in promotion order."""
    status = pinned_rows(recorded, snapshot.pins(), snapshot.revision)
    ordered = promotion_order(snapshot.environments)
    return _board(snapshot, status, ordered, last_run, stage)


def store_board(recorded: Recorded, last_run: Run | None, remembered: Sequence[str] = ()) -> Board:
    """The first frame: what the controller last recorded, before Git is read.

    Environments come in the order the last session saw in Git (`remembered`), else in
    the conventional order (`guessed_order`).
    """
    status = pinned_rows(recorded)
    revision = last_run.revision if last_run and last_run.revision else ""
    snapshot = Snapshot(revision, {}, {}, {}, {}, ())
    names = {row.env for row in status}
    ordered = [env for env in remembered if env in names]
    ordered += guessed_order(names - set(ordered))
    return _board(snapshot, status, ordered, last_run, Stage.STORE)


def guessed_order(names: Collection[str]) -> list[str]:
    """Environments in the usual promotion order when Git has not said it yet.

    >>> guessed_order(["prod", "perf", "staging", "dev", "production-eu"])
    ['dev', 'staging', 'perf', 'prod', 'production-eu']
    """

    def rank(name: str) -> tuple[int, int, str]:
        lowered = name.lower()
        if lowered in CONVENTIONAL_ORDER:
            return (0, CONVENTIONAL_ORDER.index(lowered), name)
        return (2 if lowered.startswith("prod") else 1, 0, name)

    return sorted(names, key=rank)


def _board(
    snapshot: Snapshot,
    status: list[StatusRow],
    ordered: Sequence[str],
    last_run: Run | None,
    stage: Stage,
) -> Board:
    extra = sorted({row.env for row in status} - set(ordered))
    envs = (*ordered, *extra)
    apps = tuple(sorted({row.app for row in status}))
    rows = {(row.app, row.env): row for row in status}
    widths = column_widths(apps, envs, rows.values())
    return Board(snapshot, envs, apps, rows, last_run, stage, widths)


def column_widths(
    apps: Iterable[str], envs: Iterable[str], rows: Iterable[StatusRow]
) -> dict[str, int]:
    """Each column as wide as its widest cell, from plain text (nothing is measured on screen).

    >>> row = StatusRow("dev", "a", "1.0.0", "1.0.0", Sync.SYNCED, Health.HEALTHY, None, "",
    ...                 None, Availability.AVAILABLE, "", None)
    >>> column_widths(["a"], ["dev", "staging"], [row])
    {'#app': 8, 'dev': 15, 'staging': 15}
    """
    low, high = APP_WIDTH_RANGE
    widths = {APP_COLUMN: min(high, max([low, *(len(app) for app in apps)]))}
    widths.update({env: max(CELL_MIN_WIDTH, len(env)) for env in envs})
    for row in rows:
        if row.env in widths:
            widths[row.env] = max(widths[row.env], len(cell_text(row)))
    return widths


def matching(apps: Iterable[str], text: str) -> list[str]:
    """The apps whose name contains `text`, ignoring case.

    >>> matching(["bell-service", "qrng"], "BELL")
    ['bell-service']
    """
    needle = text.strip().lower()
    return [app for app in apps if needle in app.lower()]


def last_reconcile(board: Board, now: datetime) -> str:
    """When the last reconcile pass ended (or began, if running), how long ago, and its outcome."""
    run = board.last_run
    if run is None:
        return "no reconcile yet"
    when = run.finished_at or run.started_at
    return (
        f"reconciled {when:%Y-%m-%d %H:%M} UTC, {age(now - when)} ago ({run.outcome or 'running'})"
    )


def age(elapsed: timedelta) -> str:
    """A coarse age that a glance can take in: seconds, minutes, hours and minutes, or days.

    >>> age(timedelta(hours=2, minutes=3, seconds=4)), age(timedelta(seconds=-5))
    ('2h3m', '0s')
    """
    seconds = max(0, int(elapsed.total_seconds()))
    unit = 86400 if seconds >= 86400 else 60 if seconds >= 60 else 1
    return format_duration(timedelta(seconds=seconds - seconds % unit))


def headline(board: Board, now: datetime) -> str:
    """The status line: revision, last reconcile, size, and how many problems Git has.

    Before Git is read the revision is the last pass's and the line says Git is being read;
    the problem count is the controller's, for the revision it last reconciled.
    """
    revision = f"rev {board.revision[:10]}" if board.revision else "no revision yet"
    parts = [revision, last_reconcile(board, now), f"{len(board.apps):,} apps"]
    if board.stage == Stage.STORE:
        parts.append("from the store; reading Git…")
    elif board.stage == Stage.PINS:
        parts.append("reading release manifests…")
    elif board.problems:
        parts.append(f"{board.problems} problem(s) in Git: see qrelease validate")
    return " · ".join(parts)


# -- promotion choices (pure, from the board) ---------------------------------------------


def promote_target(board: Board, env: str) -> str:
    """Where a promotion from the selected cell goes: the next environment downstream."""
    environments = board.snapshot.environments
    downstream = [name for name in board.envs if _promote_from(environments, name) == env]
    return downstream[0] if downstream else env


def upstream_version(board: Board, app: str, target: str) -> str | None:
    """What runs Healthy upstream of `target`: the release a promotion would pin by default."""
    upstream = _promote_from(board.snapshot.environments, target)
    return healthy_release(board.row(app, upstream)) if upstream else None


def versions(snapshot: Snapshot, app: str) -> list[str]:
    """Every valid release of an app, newest first."""
    return sorted(snapshot.versions(app), key=version_key, reverse=True)


# -- gate verdicts of releases (the version pickers) --------------------------------------


@dataclass(frozen=True)
class GateVerdict:
    """What the newest result of each gate of one release says, across environments."""

    failed: tuple[str, ...] = ()
    inconclusive: tuple[str, ...] = ()
    passed: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        """True when a gate's newest result is Failed: never proposed, always marked."""
        return bool(self.failed)

    def mark(self) -> str:
        """How a version picker marks the release (empty when nothing is known).

        >>> GateVerdict(failed=("smoke",), passed=("estimate",)).mark()
        '✗ gates failed: smoke'
        >>> GateVerdict(passed=("estimate", "smoke")).mark()
        '✓ gates passed'
        """
        if self.failed:
            return f"✗ gates failed: {', '.join(self.failed)}"
        if self.inconclusive:
            return f"? gates inconclusive: {', '.join(self.inconclusive)}"
        return "✓ gates passed" if self.passed else ""


def gate_verdicts(events_newest_first: Iterable[Event]) -> dict[str, GateVerdict]:
    """Per release, the newest result of each of its gates in any environment.

    A gate that failed in staging and passed later in prod counts as passed: the newest
    run of a gate is its verdict (gates judge the release, not the environment).
    """
    newest: dict[str, dict[str, str]] = defaultdict(dict)
    for event in events_newest_first:
        gate = str(event.details.get("gate", ""))
        if event.action != EventKind.GATE or not event.to_version or not gate:
            continue
        newest[event.to_version].setdefault(gate, event.outcome)
    return {version: _verdict(outcomes) for version, outcomes in newest.items()}


def _verdict(outcomes: Mapping[str, str]) -> GateVerdict:
    def named(outcome: GateOutcome) -> tuple[str, ...]:
        return tuple(sorted(gate for gate, seen in outcomes.items() if seen == outcome))

    return GateVerdict(
        named(GateOutcome.FAILED), named(GateOutcome.INCONCLUSIVE), named(GateOutcome.PASSED)
    )


def _promote_from(environments: Mapping[str, Environment], name: str) -> str | None:
    env = environments.get(name)
    return env.promote_from if env else None


# -- the history screen's columns ---------------------------------------------------------


HISTORY_COLUMNS = ("time", "env", "app", "action", "change", "outcome", "reason", "actor")


def entry_fields(entry: Entry) -> tuple[str, ...]:
    """One timeline entry as the history screen's columns (see HISTORY_COLUMNS)."""
    change = f"{entry.from_version or '–'} → {entry.to_version or '–'}"
    return (
        f"{entry.time:%Y-%m-%d %H:%M:%S}",
        entry.env,
        entry.app,
        entry.action,
        change,
        entry.outcome,
        entry.reason,
        entry.actor,
    )


def row_matches(row: tuple[str, ...], text: str) -> bool:
    """Whether `text` is in any column of the row, ignoring case.

    >>> row_matches(("b", "gate"), " GATE"), row_matches(("a", "deploy"), "gate")
    (True, False)
    """
    return text.strip().lower() in " ".join(row).lower()
