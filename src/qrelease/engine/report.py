"""The typed result of one reconcile pass, and the one finaliser that records and publishes it.

The engine returns a `PassReport`; `Finaliser` alone turns it into the runs row and hands
it to the sinks a caller registered (the daemon's metrics and status view, notifications).
Nothing downstream re-reads the events the engine just wrote or recomputes a status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qrelease.engine.monitor import MonitorReport
from qrelease.model.vocabulary import ActionKind, PassOutcome, Rollout, Sync
from qrelease.planning.planner import Plan
from qrelease.planning.status import StatusRow
from qrelease.quantum.base import GateResult
from qrelease.source.loader import Snapshot
from qrelease.store.base import StateStore

RowSink = Callable[[StatusRow], None]
"""Told every row the pass writes, as it writes it (from rollout threads too)."""


@dataclass(frozen=True, slots=True)
class AppReport:
    """What happened to one (environment, app) in a pass.

    `outcome` is the rollout's (Succeeded, Failed, Held) or None when nothing was rolled
    out; `row` is the row after the pass (None once pruned); `events` are the seqs of the
    audit events the pass appended for this key, in order.
    """

    env: str
    app: str
    action: ActionKind
    from_version: str | None
    to_version: str | None
    outcome: Rollout | None
    step: str
    reason: str
    row: StatusRow | None
    gates: tuple[GateResult, ...] = ()
    events: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """(env, app)."""
        return (self.env, self.app)


@dataclass(frozen=True)
class PassReport:
    """One pass: the revision and plan, each app's report, the rows after, the events appended.

    `events` is the (first, last) seq range the pass appended (first > last when none).
    """

    run_id: int
    revision: str
    snapshot: Snapshot
    plan: Plan
    apps: tuple[AppReport, ...]
    rows: tuple[StatusRow, ...]
    started_at: datetime
    finished_at: datetime
    events: tuple[int, int]
    env_filter: str | None = None
    trigger: str = "manual"
    notes: tuple[str, ...] = field(default_factory=tuple)
    jobs: MonitorReport | None = None
    """The quantum jobs this pass read from the workspaces it covers."""

    @property
    def failed(self) -> list[tuple[str, str]]:
        """The (env, app) whose rollout failed in this pass."""
        return [app.key for app in self.apps if app.outcome == Rollout.FAILED]

    @property
    def pending(self) -> list[StatusRow]:
        """Pinned apps whose desired release is not live and Synced after the pass."""
        return [row for row in self.rows if row.desired is not None and row.sync != Sync.SYNCED]

    @property
    def outcome(self) -> PassOutcome:
        """Failed when a rollout failed or Git has invalid files; else succeeded."""
        if self.failed or self.snapshot.errors:
            return PassOutcome.FAILED
        return PassOutcome.SUCCEEDED

    @property
    def converged(self) -> bool:
        """True when every desired change in scope is live and Git has no invalid files."""
        return not self.pending and not self.snapshot.errors

    @property
    def next_retry_at(self) -> datetime | None:
        """When the earliest transient failure is due for its next attempt."""
        due = [row.retry_at for row in self.rows if row.retry_at is not None]
        return min(due) if due else None

    def gate_outcomes(self) -> list[tuple[str, str]]:
        """(gate, outcome) of every gate the pass ran."""
        return [(gate.gate, str(gate.outcome)) for app in self.apps for gate in app.gates]

    def summary(self) -> dict[str, Any]:
        """The runs row's summary: counts, failures, holds and events appended."""
        first, last = self.events
        return {
            "actions": len(self.plan.actions),
            "changes": len(self.plan.changes),
            "failed": [f"{env}/{app}" for env, app in self.failed],
            "pending": [f"{row.env}/{row.app}" for row in self.pending],
            "errors": len(self.snapshot.errors),
            "events": max(0, last - first + 1),
            "env": self.env_filter,
            "trigger": self.trigger,
        }


ReportSink = Callable[[PassReport], None]
"""Handed every finished pass (metrics, the daemon's view, notifications)."""


class Finaliser:
    """The one place a finished pass is recorded and published."""

    def __init__(self, sinks: Iterable[ReportSink] = ()) -> None:
        self._sinks: Sequence[ReportSink] = tuple(sinks)

    def __call__(self, store: StateStore, report: PassReport) -> None:
        """Finish the runs row, remember the revision, then tell every sink."""
        store.finish_run(
            report.run_id, str(report.outcome), report.summary(), time=report.finished_at
        )
        if report.env_filter is None:
            store.set_meta("last_revision", report.revision)
        for sink in self._sinks:
            sink(report)
