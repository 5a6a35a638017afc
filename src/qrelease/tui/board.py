"""The board: the apps × environments picture and how each cell reads, as pure values.

Nothing here does I/O: a `Board` is built from a snapshot and observed states the data
layer already read, so the matrix, the defaults the dialogs propose, and the history
columns are decided by functions tests can call with plain values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from qrelease.history import Entry
from qrelease.model.environment import Environment
from qrelease.model.observed import ObservedState
from qrelease.model.types import format_duration, version_key
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.status import StatusRow, status_rows
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
LEGEND = (
    "✓ synced ↻ out of sync │ ● healthy ◐ progressing ✗ degraded ○ missing ‖ suspended"
    " │ rollout » running ! failed … held │ target △ degraded ⊘ down ◇ unknown"
)


# -- the matrix ---------------------------------------------------------------------------


def environment_order(environments: Mapping[str, Environment]) -> tuple[str, ...]:
    """Environments in promotion order: each right after the one it promotes from.

    Chains stay contiguous (depth first), siblings go by name, and environments caught in a
    cycle (which validation reports) come last.
    """
    children: dict[str | None, list[str]] = defaultdict(list)
    for name in sorted(environments):
        parent = environments[name].promote_from
        children[parent if parent in environments else None].append(name)
    order: list[str] = []
    stack = list(reversed(children[None]))
    while stack:
        name = stack.pop()
        order.append(name)
        stack.extend(reversed(children[name]))
    return (*order, *sorted(set(environments) - set(order)))


def cell_parts(row: StatusRow) -> tuple[str, str, str, str, str]:
    """A cell's versions (`deployed → desired` when they differ) and its four glyphs.

    Sync, health, the last rollout (nothing when it succeeded) and the target, whose
    glyph is empty while it is Available and while nothing is deployed (availability is
    only known for what runs).
    """
    versions = row.deployed or "–"
    if row.desired != row.deployed:
        versions += f" → {row.desired or '–'}"
    target = AVAILABILITY_GLYPHS[row.availability] if row.deployed else ""
    return (
        versions,
        SYNC_GLYPHS[row.sync],
        HEALTH_GLYPHS[row.health],
        ROLLOUT_GLYPHS[row.rollout],
        target,
    )


def cell_text(row: StatusRow | None) -> str:
    """A matrix cell that reads without colour: versions, then sync, health, rollout, target.

    >>> row = StatusRow("dev", "a", "1.1.0", "1.0.0", Sync.OUT_OF_SYNC, Health.HEALTHY,
    ...                 Rollout.FAILED, "install", "t", Availability.UNAVAILABLE, "", None)
    >>> cell_text(row)
    '1.0.0 → 1.1.0 ↻●!⊘'
    """
    if row is None:
        return "·"
    versions, sync, health, rollout, target = cell_parts(row)
    return f"{versions} {sync}{health}{rollout}{target}"


@dataclass(frozen=True, eq=False)
class Board:
    """Git's desired state at one revision joined with what the store last observed."""

    snapshot: Snapshot
    envs: tuple[str, ...]
    apps: tuple[str, ...]
    rows: Mapping[tuple[str, str], StatusRow]
    last_run: Run | None
    complete: bool = True
    """False while only the pins are read: no manifests, so no targets, versions or details."""

    @property
    def revision(self) -> str:
        """The commit the desired state was read from."""
        return self.snapshot.revision

    def row(self, app: str, env: str) -> StatusRow | None:
        """The status of one cell, if the app is pinned or deployed there."""
        return self.rows.get((app, env))

    def same_shape(self, other: Board) -> bool:
        """True when both have the same apps and environments, so cells can be patched."""
        return self.apps == other.apps and self.envs == other.envs

    def same_as(self, other: Board) -> bool:
        """True when nothing a screen shows differs."""
        return (
            self.revision == other.revision
            and self.complete == other.complete
            and self.last_run == other.last_run
            and self.rows == other.rows
        )

    def changed_cells(self, older: Board) -> list[tuple[str, str]]:
        """The (app, env) cells whose status differs from `older`'s."""
        keys = set(self.rows) | set(older.rows)
        return sorted(key for key in keys if self.rows.get(key) != older.rows.get(key))


def build_board(
    snapshot: Snapshot,
    observed: Iterable[ObservedState],
    last_run: Run | None,
    *,
    complete: bool = True,
) -> Board:
    """The matrix of every pinned or deployed (app, env), environments in promotion order."""
    status = status_rows(observed, snapshot.pins(), snapshot.revision)
    ordered = environment_order(snapshot.environments)
    extra = sorted({row.env for row in status} - set(ordered))
    return Board(
        snapshot=snapshot,
        envs=(*ordered, *extra),
        apps=tuple(sorted({row.app for row in status})),
        rows={(row.app, row.env): row for row in status},
        last_run=last_run,
        complete=complete,
    )


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
    """The status line: revision, last reconcile, size, and how many files Git has wrong."""
    parts = [f"rev {board.revision[:10]}", last_reconcile(board, now), f"{len(board.apps)} apps"]
    if not board.complete:
        parts.append("reading release manifests…")
    elif board.snapshot.errors:
        parts.append(f"{len(board.snapshot.errors)} problem(s) in Git: see qrelease validate")
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


def versions(board: Board, app: str) -> list[str]:
    """Every valid release of an app, newest first."""
    return sorted(board.snapshot.versions(app), key=version_key, reverse=True)


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


def filter_rows(rows: Iterable[tuple[str, ...]], text: str) -> list[tuple[str, ...]]:
    """The rows with `text` in any column, ignoring case.

    >>> filter_rows([("a", "deploy"), ("b", "gate")], " GATE")
    [('b', 'gate')]
    """
    needle = text.strip().lower()
    return [row for row in rows if needle in " ".join(row).lower()]
