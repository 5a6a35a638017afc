"""One rollout, as ordered steps: quantum gates -> install -> health -> switch -> live health.

The install and switch steps go by the deployer's own names for them where it has them
(ARM: validate, deploy), so status and errors say what really failed.

Every check runs before anything changes what is live: the gates and the candidate's own
health check come before the atomic switch. A step that fails raises `StepFailed` carrying
whether a retry can help and what runs afterwards; the rollout then records the failure
once. After a switch, a live health check that fails switches back when the policy allows
and checks the restored release, so health always describes what runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from qrelease.deployers.base import Deployer, DeployError, ReleaseLock, step_names
from qrelease.engine.backends import Backends
from qrelease.engine.gates import PreparedGates, baseline_of, program_of
from qrelease.engine.record import Recorder, draft
from qrelease.engine.report import AppReport
from qrelease.model.environment import Environment
from qrelease.model.events import Event, EventDraft
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import EventKind, EventOutcome, Failure, Health, Rollout
from qrelease.planning.planner import Action
from qrelease.planning.status import Outcome, baking, failed, row_of, stepped, succeeded
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult
from qrelease.source.loader import Snapshot, program_path
from qrelease.source.repo import GitRepo

STEP_GATES = "quantum gates"
STEP_HEALTH = "health check"
STEP_LIVE = "health check (live)"


class StepFailed(Exception):
    """A rollout step failed; the release does not go live (or is switched back)."""

    def __init__(
        self,
        step: str,
        message: str,
        failure: Failure = Failure.DETERMINISTIC,
        *,
        live: str | None = None,
        live_health: Health | None = None,
        live_target: str | None = None,
        switched: bool = False,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.failure = failure
        self.live = live
        self.live_health = live_health
        self.live_target = live_target
        self.switched = switched


@dataclass
class Deployment:
    """Carries one Deploy action through its steps and records how it ended."""

    action: Action
    env: Environment
    manifest: ReleaseManifest
    snapshot: Snapshot
    repo: GitRepo
    backends: Backends
    recorder: Recorder
    before: ObservedState | None
    state: ObservedState
    clock: Callable[[], datetime]
    events: list[Event] = field(default_factory=list)
    gates: tuple[GateResult, ...] = ()
    prepared: PreparedGates | None = None
    """The gate report (or error) of the plan-wide gate phase; None runs the gates here."""

    @property
    def revision(self) -> str:
        """The revision being rolled out."""
        return self.snapshot.revision

    def run(self) -> AppReport:
        """Every step; whatever happens, one final record and a report."""
        intent = self.recorder.intent(self.action, self.revision)
        try:
            report = self._steps()
        except StepFailed as failure:
            return self._fail(failure, intent)
        except DeployError as error:
            kind = Failure.TRANSIENT if error.transient else Failure.DETERMINISTIC
            return self._fail(StepFailed(self.state.rollout_step, str(error), kind), intent)
        except Exception as error:  # an unexpected error must not stop the other apps
            message = f"{type(error).__name__}: {error}"
            return self._fail(StepFailed(self.state.rollout_step or "error", message), intent)
        return self._succeed(report, intent)

    # -- the steps ----------------------------------------------------------------------

    def _steps(self) -> GateReport:
        deployer = self.backends.deployer_for(self.env)
        names = step_names(deployer)
        self._step(STEP_GATES)
        report = self._gates()
        self._step(names.prepare, self._gate_events(report))
        prepared = deployer.prepare(self.env, self.manifest, self._lock(report), report.qir or "")
        installed = self._draft(EventKind.INSTALL, EventOutcome.SUCCEEDED)
        installed = installed.model_copy(update={"details": {"installed": prepared.installed}})
        self._step(STEP_HEALTH, [installed])
        self._check(deployer, current=False)
        self._step(names.switch)
        deployer.switch(self.env, self.action.app, self.manifest.version)
        self._step(STEP_LIVE, [self._draft(EventKind.SWITCH, EventOutcome.SUCCEEDED)])
        self._after_switch(deployer)
        return report

    def _gates(self) -> GateReport:
        report = self.prepared.report if self.prepared is not None else None
        if self.prepared is not None and self.prepared.error is not None:
            raise self.prepared.error
        if report is None:
            source = program_of(self.repo, self.snapshot, self.action)
            quantum = self.backends.quantum_for(self.env)
            report = quantum.run_gates(source, self.manifest.quantum, self._baseline())
        self.gates = report.results
        if not report.passed:
            self._record(self._gate_events(report))
            failures = "; ".join(
                f"{g.gate} gate {g.outcome}: {g.message}" for g in report.failures()
            )
            raise StepFailed("gates", failures)
        return report

    def _gate_events(self, report: GateReport) -> list[EventDraft]:
        drafts = []
        for gate in report.results:
            details = {
                "gate": gate.gate,
                "message": gate.message,
                "qir_sha256": report.qir_sha256,
                **gate.details,
            }
            reason = f"{gate.gate}: {gate.message}"
            event = draft(self.action, EventKind.GATE, gate.outcome, self.revision, reason, details)
            drafts.append(event)
        return drafts

    def _baseline(self) -> EstimateSummary | None:
        """The resource estimate of the release running now, from its newest estimate gate."""
        return baseline_of(self.recorder.store, self.action)

    def _lock(self, report: GateReport) -> ReleaseLock:
        target = self.manifest.quantum.target
        return ReleaseLock(
            app=self.manifest.app,
            env=self.action.env,
            version=self.manifest.version,
            revision=self.revision,
            target_id=target.id,
            profile=str(target.profile),
            entry=self.manifest.quantum.start,
            program=program_path(self.manifest.app, self.manifest.quantum.program),
            qir_sha256=report.qir_sha256 or "",
            deployed_at=self.clock().isoformat(),
        )

    def _check(self, deployer: Deployer, *, current: bool) -> None:
        health = deployer.check_health(self.env, self.manifest, current=current)
        if not health.ok:
            raise StepFailed("health", f"health check failed: {health.message}")

    def _after_switch(self, deployer: Deployer) -> None:
        """Check what is now live; switch back (and check that) when the policy allows."""
        target = self.manifest.quantum.target.id
        try:
            self._check(deployer, current=True)
        except StepFailed as failure:
            previous = self.action.from_version
            if not (self.env.policy.auto_rollback and previous):
                raise StepFailed(
                    "health",
                    failure.message,
                    live=self.manifest.version,
                    live_health=Health.DEGRADED,
                    live_target=target,
                    switched=True,
                ) from None
            fallback = self.before.health if self.before is not None else Health.UNKNOWN
            restored = switch_back(
                deployer, self.env, self.snapshot, self.action.app, previous, fallback
            )
            outcome = EventOutcome.RESTORED if restored == Health.HEALTHY else EventOutcome.DEGRADED
            details = {"restored": previous, "health": str(restored)}
            rollback = self._draft(EventKind.AUTO_ROLLBACK, outcome, failure.message, details)
            self._record([rollback])
            raise StepFailed(
                "health",
                f"{failure.message}; rolled back to {previous}",
                live=previous,
                live_health=restored,
                switched=True,
            ) from None

    # -- recording ----------------------------------------------------------------------

    def _draft(
        self,
        kind: EventKind,
        outcome: EventOutcome,
        reason: str = "",
        details: Mapping[str, object] | None = None,
    ) -> EventDraft:
        return draft(self.action, kind, outcome, self.revision, reason, dict(details or {}))

    def _step(self, step: str, events: list[EventDraft] | None = None) -> None:
        """Record reaching `step` (with the events of the step before) in one commit."""
        self.state = stepped(self.state, step, self.clock())
        self._record(events or [], self.state)

    def _record(self, events: list[EventDraft], state: ObservedState | None = None) -> None:
        cache = self.backends.gate_cache
        appended = self.recorder.commit(state, cache.annotate(events) if cache else events)
        self.events += appended
        if cache is not None:
            cache.record_first(appended)

    def _succeed(self, report: GateReport, intent: int) -> AppReport:
        qubits = report.estimate.physical_qubits if report.estimate else None
        now = self.clock()
        self.state = succeeded(self.state, self.manifest, now, report.qir_sha256, qubits)
        bake = self.env.policy.bake
        if bake is not None:
            self.state = baking(self.state, bake, self.action.from_version, now)
        deployed = self._draft(EventKind.DEPLOY, EventOutcome.HEALTHY, details=self._checks())
        self.events += self.recorder.commit(self.state, [deployed], intent=intent)
        kept = self.env.classical.keep if self.env.classical.kind == "venv" else 5
        self.backends.deployer_for(self.env).retire(self.env, self.action.app, kept)
        return self._report(Rollout.SUCCEEDED, "", "")

    def _fail(self, failure: StepFailed, intent: int) -> AppReport:
        live = failure.live if failure.switched else self.action.from_version
        outcome = Outcome(
            failure.step,
            failure.message,
            failure.failure,
            live,
            failure.live_health,
            failure.live_target,
            went_live=failure.switched and live == self.manifest.version,
        )
        self.state = failed(self.before, self.state, outcome, self.revision, self.clock())
        details = {
            "step": failure.step,
            "message": failure.message,
            "failure": failure.failure,
            **self._checks(),
        }
        event = self._draft(EventKind.DEPLOY, EventOutcome.FAILED, failure.message, details)
        self.events += self.recorder.commit(self.state, [event], intent=intent)
        return self._report(Rollout.FAILED, failure.step, failure.message)

    def _checks(self) -> dict[str, object]:
        """The policy checks the change passed (overrides marked), for the audit log."""
        if not self.action.checks:
            return {}
        return {"checks": [check.render() for check in self.action.checks]}

    def _report(self, outcome: Rollout, step: str, reason: str) -> AppReport:
        action = self.action
        return AppReport(
            action.env,
            action.app,
            action.kind,
            action.from_version,
            action.to_version,
            outcome,
            step,
            reason,
            row_of(self.state),
            self.gates,
            tuple(event.seq for event in self.events),
        )


def switch_back(
    deployer: Deployer,
    env: Environment,
    snapshot: Snapshot,
    app: str,
    previous: str,
    fallback: Health,
) -> Health:
    """Make `previous` live again and say how it is: checked when Git still has its manifest,
    else `fallback` (it ran before and nothing in it changed)."""
    deployer.switch(env, app, previous)
    manifest = snapshot.manifest(app, previous)
    if manifest is None:
        return fallback
    health = deployer.check_health(env, manifest, current=True)
    return Health.HEALTHY if health.ok else Health.DEGRADED
