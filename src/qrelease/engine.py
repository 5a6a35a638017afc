"""One reconcile pass: the only place that sequences side effects.

Git -> snapshot (desired) + store and deployers (observed) -> pure plan -> for each change:
quantum gates -> install -> health -> atomic switch -> health of what is live -> maybe switch
back. Every step is recorded as an audit event together with the observed state it leads
to, in one store transaction. An intent is written before the first side effect and
cleared with the final record, so a pass after a crash knows what was half done.
Each (environment, app) is isolated: one failure never stops the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qrelease.deployers.base import Deployer, DeployError, Previewer, ReleaseLock
from qrelease.model.environment import Environment
from qrelease.model.events import Event, EventDraft, ObservedState
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.status import ActionKind, Availability, Health, Sync
from qrelease.planning.planner import Action, Desired, Plan, Seen, hold_all, plan
from qrelease.quantum.base import EstimateSummary, GateReport, ProgramSource, QuantumBackend
from qrelease.source.loader import Loader, Snapshot, program_path
from qrelease.source.repo import GitRepo
from qrelease.store.sqlite import Store

Progress = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Backends:
    """Which deployer and quantum backend serve an environment."""

    deployer_for: Callable[[Environment], Deployer]
    quantum_for: Callable[[Environment], QuantumBackend]


@dataclass
class PassResult:
    """What one pass decided and how each change ended."""

    snapshot: Snapshot
    plan: Plan
    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def failed(self) -> list[tuple[str, str]]:
        """The (env, app) whose change did not go live."""
        return [key for key, outcome in self.outcomes.items() if outcome == "Failed"]


class StepFailed(Exception):
    """A rollout step failed; the release does not go live and the reason is recorded."""

    def __init__(self, step: str, message: str, health: Health | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.health = health


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def no_progress(env: str, app: str, step: str) -> None:
    """Progress sink that discards."""


class Engine:
    """Runs reconcile passes for one GitOps repo against one store."""

    def __init__(
        self,
        repo: GitRepo,
        store: Store,
        backends: Backends,
        *,
        clock: Callable[[], datetime] = utcnow,
        progress: Progress = no_progress,
        verify: Callable[[str], str | None] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.repo = repo
        self._main_store = store
        self._local = threading.local()
        self.concurrency = concurrency
        self.backends = backends
        self.loader = Loader(repo)
        self._targets: dict[int, tuple[ReleaseManifest, str]] = {}
        self.clock = clock
        self.progress = progress
        self.verify = verify

    @property
    def store(self) -> Store:
        """This thread's store: rollout workers each hold their own SQLite connection."""
        return getattr(self._local, "store", None) or self._main_store

    # -- planning ---------------------------------------------------------------------

    def plan(
        self, rev: str = "HEAD", env_filter: str | None = None, retry: bool = False
    ) -> tuple[Snapshot, Plan]:
        """Load the desired state and decide, without changing anything."""
        snapshot = self.loader.load(rev)
        environments = _selected(snapshot.environments, env_filter)
        desired = list(_desired(snapshot, environments))
        seen = self._observe(snapshot, environments, desired, env_filter)
        broken = _broken_environments(snapshot, env_filter)
        the_plan = plan(snapshot.revision, desired, seen, environments, retry, broken)
        refusal = self.verify(snapshot.revision) if self.verify else None
        return snapshot, hold_all(the_plan, refusal) if refusal else the_plan

    def _observe(
        self,
        snapshot: Snapshot,
        environments: Mapping[str, Environment],
        desired: list[Desired],
        env_filter: str | None,
    ) -> dict[tuple[str, str], Seen]:
        stored = self.store.observed_by_key()
        availability = _AvailabilityCache(self.backends, self._targets)
        deployers: dict[str, Deployer] = {}
        seen: dict[tuple[str, str], Seen] = {}
        for item in desired:
            env, key = item.env, (item.env.environment, item.app)
            deployer = deployers.get(key[0]) or deployers.setdefault(
                key[0], self.backends.deployer_for(env)
            )
            observed = deployer.observe(env, item.app)
            status = availability.of(env, item.manifest)
            seen[key] = Seen(stored.get(key), observed.current, observed.drift, *status)
        self._targets = availability.used  # only the manifests of this pass stay referenced
        gone = sorted(k for k in stored if k not in seen and env_filter in (None, k[0]))
        for key in gone:  # deployed once, no longer pinned: observed for the prune
            env = environments.get(key[0]) or Environment(environment=key[0])
            observed = self.backends.deployer_for(env).observe(env, key[1])
            seen[key] = Seen(
                stored.get(key), observed.current, observed.drift, Availability.UNKNOWN, ""
            )
        return seen

    def previews(self, snapshot: Snapshot, the_plan: Plan) -> dict[tuple[str, str], list[str]]:
        """What each Deploy would change, for deployers that can tell (ARM what-if)."""
        out: dict[tuple[str, str], list[str]] = {}
        for action in the_plan.of_kind(ActionKind.DEPLOY):
            env = _env(snapshot, action)
            deployer = self.backends.deployer_for(env)
            if action.manifest is None or not isinstance(deployer, Previewer):
                continue
            try:
                out[action.key] = deployer.what_if(env, action.manifest)
            except DeployError as error:
                out[action.key] = [f"what-if failed: {error}"]
        return out

    # -- the pass ---------------------------------------------------------------------

    def reconcile(
        self, rev: str = "HEAD", env_filter: str | None = None, retry: bool = False
    ) -> PassResult:
        """Plan, then carry out every action; one app's failure never stops another's."""
        snapshot = self.loader.load(rev)
        self.recover(snapshot.environments)
        snapshot, the_plan = self.plan(snapshot.revision, env_filter, retry)
        result = PassResult(snapshot, the_plan)
        run_id = self.store.begin_run(snapshot.revision, time=self.clock())
        deploys = [a for a in the_plan.actions if a.kind == ActionKind.DEPLOY]
        for action in the_plan.actions:
            if action.kind != ActionKind.DEPLOY:
                result.outcomes[action.key] = self._apply(action, _env(snapshot, action), snapshot)
        result.outcomes.update(self._deploy_all(deploys, snapshot))
        summary = {
            "actions": len(the_plan.actions),
            "changes": len(the_plan.changes),
            "failed": [f"{e}/{a}" for e, a in result.failed],
            "errors": len(snapshot.errors),
        }
        outcome = "failed" if result.failed or snapshot.errors else "succeeded"
        self.store.finish_run(run_id, outcome, summary, time=self.clock())
        self.store.set_meta("last_revision", snapshot.revision)
        return result

    def _deploy_all(self, deploys: list[Action], snapshot: Snapshot) -> dict[tuple[str, str], str]:
        """Roll out every Deploy, `concurrency` at a time when the store is a file."""
        parallel = self.concurrency > 1 and len(deploys) > 1 and self.store.location != ":memory:"
        if not parallel:
            return {a.key: self._deploy(a, _env(snapshot, a), snapshot) for a in deploys}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="rollout") as pool:
            outcomes = pool.map(lambda action: self._deploy_in_worker(action, snapshot), deploys)
            return {action.key: outcome for action, outcome in zip(deploys, outcomes, strict=True)}

    def _deploy_in_worker(self, action: Action, snapshot: Snapshot) -> str:
        """One rollout on a pool thread, with a store connection of its own."""
        with Store.open(Path(self._main_store.location)) as store:
            self._local.store = store
            try:
                return self._deploy(action, _env(snapshot, action), snapshot)
            finally:
                del self._local.store

    def _apply(self, action: Action, env: Environment, snapshot: Snapshot) -> str:
        if action.kind == ActionKind.DEPLOY:
            return self._deploy(action, env, snapshot)
        if action.kind == ActionKind.PRUNE:
            return self._prune(action, env)
        self._settle(action, snapshot.revision)
        return str(action.kind)

    # -- deploy -----------------------------------------------------------------------

    def _deploy(self, action: Action, env: Environment, snapshot: Snapshot) -> str:
        manifest = action.manifest
        assert manifest is not None  # the planner only deploys valid releases
        payload = {
            "from": action.from_version,
            "to": action.to_version,
            "revision": snapshot.revision,
        }
        intent = self.store.put_intent(action.env, action.app, "deploy", payload, time=self.clock())
        try:
            return self._rollout(action, env, manifest, snapshot, intent)
        except StepFailed as failure:
            self._fail(action, snapshot.revision, failure, intent)
        except DeployError as exc:
            self._fail(action, snapshot.revision, StepFailed("install", str(exc)), intent)
        except Exception as exc:  # an unexpected error must not stop the other apps
            unexpected = StepFailed("error", f"{type(exc).__name__}: {exc}", Health.UNKNOWN)
            self._fail(action, snapshot.revision, unexpected, intent)
        return "Failed"

    def _rollout(
        self,
        action: Action,
        env: Environment,
        manifest: ReleaseManifest,
        snapshot: Snapshot,
        intent: int,
    ) -> str:
        deployer = self.backends.deployer_for(env)
        report = self._gates(action, env, manifest, snapshot)
        lock = self._lock(action, manifest, snapshot.revision, report)
        self._step(action, "install")
        prepared = deployer.prepare(env, manifest, lock, report.qir or "")
        self._event(
            action, "install", snapshot.revision, "Succeeded", {"installed": prepared.installed}
        )
        self._check(deployer, env, manifest, current=False, action=action)
        deployer.switch(env, action.app, manifest.version)
        self._event(action, "switch", snapshot.revision, "Succeeded")
        self._after_switch(action, env, deployer, manifest, snapshot.revision)
        self._succeed(action, snapshot.revision, report, intent)
        kept = env.classical.keep if env.classical.kind == "venv" else 5
        deployer.retire(env, action.app, kept)
        return "Healthy"

    def _gates(
        self, action: Action, env: Environment, manifest: ReleaseManifest, snapshot: Snapshot
    ) -> GateReport:
        self._step(action, "quantum gates")
        path = program_path(manifest.app, manifest.quantum.program)
        source = ProgramSource(path, self.repo.read_blob(snapshot.programs[path]).decode("utf-8"))
        baseline = self._baseline(action)
        report = self.backends.quantum_for(env).run_gates(source, manifest.quantum, baseline)
        for gate in report.results:
            details = {
                "gate": gate.gate,
                "message": gate.message,
                "qir_sha256": report.qir_sha256,
                **gate.details,
            }
            reason = f"{gate.gate}: {gate.message}"
            self._event(action, "gate", snapshot.revision, str(gate.outcome), details, reason)
        if not report.passed:
            failures = "; ".join(
                f"{g.gate} gate {g.outcome}: {g.message}" for g in report.failures()
            )
            raise StepFailed("gates", failures)
        return report

    def _baseline(self, action: Action) -> EstimateSummary | None:
        """The resource estimate of the release running now, from its gate events."""
        if action.from_version is None:
            return None
        for event in self.store.iter_events(
            env=action.env, app=action.app, actions=["gate"], descending=True, limit=200
        ):
            details = event.details
            if event.to_version == action.from_version and "physical_qubits" in details:
                return EstimateSummary(int(details["physical_qubits"]), int(details["runtime_ns"]))
        return None

    def _lock(
        self, action: Action, manifest: ReleaseManifest, revision: str, report: GateReport
    ) -> ReleaseLock:
        target = manifest.quantum.target
        return ReleaseLock(
            app=manifest.app,
            env=action.env,
            version=manifest.version,
            revision=revision,
            target_id=target.id,
            profile=str(target.profile),
            entry=manifest.quantum.entry,
            program=program_path(manifest.app, manifest.quantum.program),
            qir_sha256=report.qir_sha256 or "",
            deployed_at=self.clock().isoformat(),
        )

    def _check(
        self,
        deployer: Deployer,
        env: Environment,
        manifest: ReleaseManifest,
        *,
        current: bool,
        action: Action,
    ) -> None:
        self._step(action, "health check" + (" (live)" if current else ""))
        health = deployer.check_health(env, manifest, current=current)
        if not health.ok:
            raise StepFailed("health", f"health check failed: {health.message}", Health.DEGRADED)

    def _after_switch(
        self,
        action: Action,
        env: Environment,
        deployer: Deployer,
        manifest: ReleaseManifest,
        revision: str,
    ) -> None:
        try:
            self._check(deployer, env, manifest, current=True, action=action)
        except StepFailed as failure:
            previous = action.from_version
            if not (env.policy.auto_rollback and previous):
                raise
            deployer.switch(env, action.app, previous)
            self._event(
                action,
                "auto-rollback",
                revision,
                "Degraded",
                {"reason": failure.message, "restored": previous},
            )
            raise StepFailed(
                "health", f"{failure.message}; rolled back to {previous}", Health.DEGRADED
            ) from None

    # -- recording --------------------------------------------------------------------

    def _succeed(self, action: Action, revision: str, report: GateReport, intent: int) -> None:
        now = self.clock()
        state = self._state(action, revision).model_copy(
            update={
                "deployed": action.to_version,
                "sync": Sync.SYNCED,
                "health": Health.HEALTHY,
                "message": "",
                "healthy_since": now,
                "failed_version": None,
                "failed_revision": None,
                "qir_sha256": report.qir_sha256,
                "physical_qubits": report.estimate.physical_qubits if report.estimate else None,
            }
        )
        with self.store.transaction():
            self.store.put_observed(state)
            self._event(action, "deploy", revision, "Healthy")
            self.store.clear_intent(intent)

    def _fail(self, action: Action, revision: str, failure: StepFailed, intent: int) -> None:
        previous = self.store.get_observed(action.env, action.app)
        health = failure.health or (previous.health if previous else Health.MISSING)
        message = f"{failure.step} failed for {action.to_version}: {failure.message}"
        state = self._state(action, revision).model_copy(
            update={
                "sync": Sync.OUT_OF_SYNC,
                "health": health,
                "message": message,
                "failed_version": action.to_version,
                "failed_revision": revision,
            }
        )
        with self.store.transaction():
            self.store.put_observed(state)
            self._event(
                action,
                "deploy",
                revision,
                "Failed",
                {"step": failure.step, "message": failure.message},
            )
            self.store.clear_intent(intent)
        self.progress(action.env, action.app, message)

    def _settle(self, action: Action, revision: str) -> None:
        """Record a Noop or Hold, adding a hold event only when the reason is new."""
        previous = self.store.get_observed(action.env, action.app)
        update: dict[str, Any] = {"sync": action.sync, "message": action.reason}
        if previous and previous.failed_version and previous.failed_version == action.to_version:
            update["message"] = previous.message  # live but failed its health: keep saying why
        if action.kind == ActionKind.NOOP and _failed_elsewhere(previous, action.to_version):
            update.update(health=Health.HEALTHY, failed_version=None, failed_revision=None)
        state = self._state(action, revision).model_copy(update=update)
        if previous is not None and _same(previous, state):
            return
        new_hold = action.kind == ActionKind.HOLD and (
            previous is None or previous.message != action.reason
        )
        with self.store.transaction():
            self.store.put_observed(state)
            if new_hold:
                self._event(action, "hold", revision, "Held", {"reason": action.reason})

    def _prune(self, action: Action, env: Environment) -> str:
        self._step(action, "prune")
        self.backends.deployer_for(env).remove(env, action.app)
        with self.store.transaction():
            self.store.delete_observed(action.env, action.app)
            self._event(action, "prune", None, "Pruned", {"reason": action.reason})
        return "Pruned"

    def _state(self, action: Action, revision: str) -> ObservedState:
        """The stored state of an app brought up to this pass (desired, target, time)."""
        base = self.store.get_observed(action.env, action.app) or ObservedState(
            env=action.env, app=action.app, health=Health.MISSING
        )
        manifest = action.manifest
        update: dict[str, Any] = {
            "desired": action.to_version,
            "revision": revision,
            "updated_at": self.clock(),
        }
        if action.from_version is not None or base.deployed is None:
            update["deployed"] = action.from_version
        if manifest is not None:
            update["target"] = manifest.quantum.target.id
            update["availability"] = action.availability
        return base.model_copy(update=update)

    def _event(
        self,
        action: Action,
        kind: str,
        revision: str | None,
        outcome: str,
        details: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> Event:
        draft = EventDraft(
            env=action.env,
            app=action.app,
            action=kind,
            from_version=action.from_version,
            to_version=action.to_version,
            revision=revision,
            reason=action.reason if reason is None else reason,
            outcome=outcome,
            details=details or {},
        )
        return self.store.append(draft, time=self.clock())

    def _step(self, action: Action, step: str) -> None:
        self.progress(action.env, action.app, step)

    # -- crash recovery ---------------------------------------------------------------

    def recover(self, environments: Mapping[str, Environment] | None = None) -> list[Event]:
        """Finish the record of any step a crash interrupted, from what is really live."""
        recorded = []
        for intent in self.store.pending_intents():
            known = (environments or {}).get(intent.env)
            env = known or Environment(environment=intent.env)
            live = self.backends.deployer_for(env).observe(env, intent.app).current
            state = self.store.get_observed(intent.env, intent.app) or ObservedState(
                env=intent.env, app=intent.app
            )
            state = state.model_copy(
                update={
                    "deployed": live,
                    "health": Health.UNKNOWN,
                    "message": f"recovered after an interrupted {intent.step}",
                    "updated_at": self.clock(),
                }
            )
            draft = EventDraft(
                env=intent.env,
                app=intent.app,
                action="recover",
                from_version=intent.payload.get("from"),
                to_version=live,
                revision=intent.payload.get("revision"),
                outcome="Recovered",
                details={"interrupted": intent.step, "intended": intent.payload},
            )
            with self.store.transaction():
                self.store.put_observed(state)
                recorded.append(self.store.append(draft, time=self.clock()))
                self.store.clear_intent(intent.id)
        return recorded


class _AvailabilityCache:
    """Target status looked up once per (backend kind, target) in a pass.

    A manifest's target id is remembered by the manifest's identity across passes
    (`targets`, owned by the engine; each entry holds its manifest, so the id stays that
    manifest's): the loader hands the same model objects to every pass until their file
    changes, and reading three nested models of each of thousands of manifests each pass
    costs more than the rest of the lookup together.
    """

    def __init__(self, backends: Backends, targets: dict[int, tuple[ReleaseManifest, str]]) -> None:
        self._backends = backends
        self._seen: dict[tuple[object, str], tuple[Availability, str]] = {}
        self._by_env: dict[tuple[str, str], tuple[Availability, str]] = {}
        self._known = targets
        self.used: dict[int, tuple[ReleaseManifest, str]] = {}

    def of(self, env: Environment, manifest: ReleaseManifest | None) -> tuple[Availability, str]:
        if manifest is None:
            return (Availability.UNKNOWN, "")
        known = self._known.get(id(manifest)) or (manifest, manifest.quantum.target.id)
        self.used[id(manifest)] = known
        near = (env.environment, known[1])
        if near not in self._by_env:
            key = (env.quantum, known[1])  # frozen models hash by value: envs sharing a backend
            if key not in self._seen:
                status = self._backends.quantum_for(env).target_status(known[1])
                self._seen[key] = (status.availability, status.message)
            self._by_env[near] = self._seen[key]
        return self._by_env[near]


def _env(snapshot: Snapshot, action: Action) -> Environment:
    """The action's environment (a bare one when its file is gone or invalid)."""
    return snapshot.environments.get(action.env) or Environment(environment=action.env)


def _selected(environments: Mapping[str, Environment], only: str | None) -> dict[str, Environment]:
    return {name: env for name, env in environments.items() if only in (None, name)}


def _desired(snapshot: Snapshot, environments: Mapping[str, Environment]) -> Iterator[Desired]:
    problems = {(e.path, e.field): e.message for e in snapshot.errors}
    for name, env in sorted(environments.items()):
        path = snapshot.env_paths.get(name, f"releases/{name}.yaml")
        for app, version in sorted(env.apps.items()):
            manifest = snapshot.manifest(app, version)
            yield Desired(env, app, version, manifest, problems.get((path, f"apps.{app}"), ""))


def _broken_environments(snapshot: Snapshot, only: str | None) -> dict[str, str]:
    broken: dict[str, str] = {}
    for error in snapshot.errors:
        parts = error.path.split("/")
        name = parts[-1].rsplit(".", 1)[0]
        if parts[0] == "releases" and name not in snapshot.environments and only in (None, name):
            broken.setdefault(name, f"{error.path} is invalid: {error}")
    return broken


def _same(old: ObservedState, new: ObservedState) -> bool:
    ignore = {"updated_at", "revision"}
    return old.model_dump(exclude=ignore) == new.model_dump(exclude=ignore)


def _failed_elsewhere(state: ObservedState | None, live: str | None) -> bool:
    """True when the stored failure was about a release other than the one now live and wanted."""
    return state is not None and state.failed_version not in (None, live)
