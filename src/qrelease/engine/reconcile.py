"""The Engine: the one owner of a reconcile pass, and the only place that sequences side effects.

Git -> snapshot (desired) + store and deployers (observed) -> pure plan -> each
environment's quantum infrastructure (`infrastructure.py`; a failure holds that
environment's Deploys) -> the plan's rows recorded at once (a row being rolled out is
Progressing from the start) -> prunes -> the quantum gates of every Deploy, side by side,
before anything is installed (`gates.py`) -> every Deploy as ordered steps (`rollout.py`),
`concurrency` at a time -> a `PassReport`, recorded and published by the one `Finaliser`.
Each (environment, app) is isolated: one failure never stops the others. An intent is
written before a rollout's first side effect and cleared with its final record, so a pass
after a crash knows what was half done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from qrelease.deployers.base import DeployError, Previewer
from qrelease.engine import infrastructure
from qrelease.engine.backends import Backends
from qrelease.engine.bake import bake_check, quantum_degrade, verify_live
from qrelease.engine.gates import PreparedGates, ReviewedGates, run_plan_gates
from qrelease.engine.monitor import JobMonitor, MonitorReport, MonitorSettings, verdicts
from qrelease.engine.observe import (
    Observation,
    Observer,
    Scope,
    broken_environments,
    environment_of,
    selected,
)
from qrelease.engine.record import Recorder, draft
from qrelease.engine.report import AppReport, Finaliser, PassReport, ReportSink, RowSink
from qrelease.engine.rollout import STEP_GATES, Deployment
from qrelease.evidence import PolicySources, judge
from qrelease.model.environment import Environment
from qrelease.model.events import Event, EventDraft
from qrelease.model.manifest import share_fields
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import ActionKind, EventKind, EventOutcome, Rollout
from qrelease.planning.planner import (
    OBSERVE_STEP,
    Action,
    Plan,
    Retry,
    hold_all,
    hold_environments,
    only_app,
    plan,
)
from qrelease.planning.policy import Check
from qrelease.planning.status import planned, recovered, row_of, same_row, stepped
from qrelease.source.loader import Loader, Snapshot
from qrelease.source.parsing import BlobCache
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys
from qrelease.store.base import StateStore


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class Engine:
    """Runs reconcile passes for one GitOps repo against one store."""

    def __init__(
        self,
        repo: GitRepo,
        store: StateStore,
        backends: Backends,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_row: RowSink | None = None,
        verify: Callable[[str], str | None] | None = None,
        concurrency: int = 1,
        sinks: Iterable[ReportSink] = (),
        trusted_keys: TrustedKeys | None = None,
        parse_cache: BlobCache | None = None,
        monitor: MonitorSettings | None = None,
    ) -> None:
        self.repo = repo
        self.store = store
        self.backends = backends
        self.clock = clock
        self.on_row = on_row
        self.verify = verify
        self.concurrency = concurrency
        self.trusted_keys = trusted_keys  # signed-commit verification: overrides, approvals
        self.loader = Loader(repo, cache=parse_cache)
        self.finalise = Finaliser(sinks)
        self._observer = Observer(backends)
        self.jobs = JobMonitor(store, backends, clock, monitor)
        self._owned: frozenset[str] | None = None
        self._local = threading.local()
        self._quiet: dict[tuple[str, str], tuple[Action, ObservedState, AppReport]] = {}
        """Keys whose last pass was a Noop that left the row as it was: the same Noop on the
        same row object (the store hands back unchanged rows as they were) is settled as it
        was, without building the row and the report again."""

    # -- planning ---------------------------------------------------------------------

    def plan(
        self,
        rev: str = "HEAD",
        env_filter: str | None = None,
        retry: Retry = Retry.DUE,
        *,
        fresh: bool = False,
        owned: frozenset[str] | None = None,
        app_filter: str | None = None,
    ) -> tuple[Snapshot, Plan]:
        """Load the desired state and decide, without changing anything."""
        snapshot = self.loader.load(rev)
        scope = Scope(env_filter, owned)
        the_plan, _, _ = self._decide(snapshot, scope, retry, self.clock(), fresh)
        return snapshot, only_app(the_plan, app_filter)

    def _decide(
        self,
        snapshot: Snapshot,
        scope: Scope,
        retry: Retry,
        now: datetime,
        fresh: bool,
    ) -> tuple[Plan, Observation, str | None]:
        """The plan, what it was made from, and why the revision is refused (None: trusted)."""
        stored = self.store.observed_by_key()
        observation = self._observer.observe(snapshot, stored, scope, fresh=fresh)
        broken = broken_environments(snapshot, scope)
        covered = selected(snapshot.environments, scope).values()
        the_plan = plan(
            snapshot.revision,
            observation.desired,
            observation.seen,
            observation.environments,
            now=now,
            retry=retry,
            broken=broken,
            verdicts=self._verdicts(snapshot, observation, stored, now),
            degraded=verdicts(self.store, covered, stored, now),
        )
        refusal = self.verify(snapshot.revision) if self.verify else None
        return (hold_all(the_plan, refusal) if refusal else the_plan), observation, refusal

    def _verdicts(
        self,
        snapshot: Snapshot,
        observation: Observation,
        stored: Mapping[tuple[str, str], ObservedState],
        now: datetime,
    ) -> dict[tuple[str, str], list[Check]]:
        """The policy checks of every pin change about to be applied, however it reached Git."""
        sources = PolicySources(
            self.store, self.repo, snapshot.revision, self.trusted_keys, self.loader.known_pins
        )
        verdicts = {}
        for desired in observation.desired:
            env, app = desired.env, desired.app
            key = (env.environment, app)
            running = observation.seen[key].current
            if desired.release is None or running == desired.version:
                continue
            if app in env.policy.suspended:
                continue
            manifest = desired.manifest  # decoded only for a pin about to change
            assert manifest is not None
            upstream = stored.get((env.promote_from, app)) if env.promote_from else None
            verdicts[key] = judge(
                sources,
                snapshot,
                env,
                app,
                manifest,
                running=running,
                upstream_state=upstream,
                availability=observation.seen[key].availability,
                now=now,
            )
        return verdicts

    def previews(self, snapshot: Snapshot, the_plan: Plan) -> dict[tuple[str, str], list[str]]:
        """What each Deploy would change, for deployers that can tell (ARM what-if)."""
        out: dict[tuple[str, str], list[str]] = {}
        for action in the_plan.of_kind(ActionKind.DEPLOY):
            env = environment_of(snapshot, action.env)
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
        self,
        rev: str = "HEAD",
        env_filter: str | None = None,
        retry: Retry = Retry.DUE,
        *,
        trigger: str = "manual",
        fresh: bool = True,
        owned: frozenset[str] | None = None,
        app_filter: str | None = None,
    ) -> PassReport:
        """Plan, record the plan's rows, carry out every action, then finalise the report.

        `fresh` asks every deployer what runs (finding drift); otherwise what they reported
        in earlier passes is reused for the keys the engine has not acted on since.
        `owned` narrows the pass to the environments this replica holds leases for (None:
        a single controller, which owns them all); environments it did not own last pass
        are observed afresh, since another replica may have acted on them meanwhile.
        `app_filter` carries out one app's actions only (the others are left for later).
        """
        snapshot = self.loader.load(rev)
        started = self.clock()
        scope = Scope(env_filter, owned)
        if owned is not None:
            self._observer.forget_environments(owned - (self._owned or frozenset()))
            self._owned = owned
        recovered_events = self.recover(snapshot.environments, Scope(owned=owned))
        jobs = self.jobs.poll(selected(snapshot.environments, scope).values())
        the_plan, observation, refusal = self._decide(snapshot, scope, retry, started, fresh)
        the_plan = only_app(the_plan, app_filter)
        self._observer.forget(action.key for action in the_plan.changes)
        run_id = self.store.begin_run(snapshot.revision, time=started)
        first_seq = self.store.newest_seq() + 1 - len(recovered_events)
        recorder = Recorder(self.store, self.clock, self.on_row)
        if refusal is None:  # nothing of an untrusted revision is deployed, infrastructure neither
            environments = selected(snapshot.environments, scope)
            failed = infrastructure.provision(
                environments, self.backends, recorder, snapshot.revision
            )
            the_plan = hold_environments(the_plan, failed, infrastructure.STEP)
        previous = {key: seen.state for key, seen in observation.seen.items()}
        states, reports = self._record_plan(recorder, the_plan, previous, snapshot.revision)
        for action in the_plan.of_kind(ActionKind.PRUNE):
            reports[action.key] = self._prune(recorder, action, snapshot, previous[action.key])
        for action in the_plan.of_kind(ActionKind.BAKE):
            env = environment_of(snapshot, action.env)
            reports[action.key] = bake_check(
                action, env, snapshot, states[action.key], self.backends, recorder, self.clock
            )
        for action in the_plan.of_kind(ActionKind.VERIFY):
            env = environment_of(snapshot, action.env)
            reports[action.key] = verify_live(
                action, env, snapshot, states[action.key], self.backends, recorder, self.clock
            )
        for action in the_plan.of_kind(ActionKind.DEGRADE):
            env = environment_of(snapshot, action.env)
            reports[action.key] = quantum_degrade(
                action, env, snapshot, states[action.key], self.backends, recorder, self.clock
            )
        deploys = the_plan.of_kind(ActionKind.DEPLOY)
        states |= self._entering_gates(recorder, deploys, states)
        reviewed = ReviewedGates(self.repo, snapshot, self.trusted_keys)
        gates = run_plan_gates(
            deploys, snapshot, self.repo, self.backends, self.store, self.clock(), reviewed
        )
        for app_report in self._deploy_all(deploys, snapshot, previous, states, gates):
            reports[app_report.key] = app_report
        report = PassReport(
            run_id=run_id,
            revision=snapshot.revision,
            snapshot=snapshot,
            plan=the_plan,
            apps=tuple(reports[key] for key in sorted(reports)),
            rows=tuple(r.row for r in (reports[key] for key in sorted(reports)) if r.row),
            started_at=started,
            finished_at=self.clock(),
            events=(first_seq, self.store.newest_seq()),
            env_filter=env_filter,
            trigger=trigger,
            jobs=jobs,
        )
        self.finalise(self.store, report)
        return report

    def watch_jobs(
        self, rev: str = "HEAD", *, owned: frozenset[str] | None = None
    ) -> tuple[MonitorReport, bool, Mapping[str, Environment]]:
        """Read the covered workspaces' jobs between passes: what was read, whether a
        release's jobs now fail its `policy.quantum_health` (a pass should degrade it), and
        the revision's environments."""
        snapshot = self.loader.load(rev)
        environments = selected(snapshot.environments, Scope(None, owned)).values()
        report = self.jobs.poll(environments)
        stored = self.store.observed_by_key()
        failing = verdicts(self.store, environments, stored, self.clock())
        due = any(
            (state := stored.get(key)) is not None and state.failed_version != state.deployed
            for key in failing
        )
        return report, due, snapshot.environments

    def _record_plan(
        self,
        recorder: Recorder,
        the_plan: Plan,
        previous: dict[tuple[str, str], ObservedState | None],
        revision: str,
    ) -> tuple[dict[tuple[str, str], ObservedState], dict[tuple[str, str], AppReport]]:
        """Every row the plan implies, and a hold event for each new hold, in one commit."""
        now = self.clock()
        states: dict[tuple[str, str], ObservedState] = {}
        changed: list[ObservedState] = []
        holds: list[tuple[Action, EventDraft]] = []
        quiet, self._quiet = self._quiet, {}
        reused: dict[tuple[str, str], AppReport] = {}
        for action in the_plan.actions:  # thousands a pass: the key is built once per action
            if action.kind == ActionKind.PRUNE:
                continue
            key = action.key
            before = previous.get(key)
            last = quiet.get(key) if action.kind == ActionKind.NOOP else None
            if last is not None and last[1] is before and last[0] == action:
                states[key], reused[key] = last[1], last[2]
                continue
            state = share_fields(planned(action, before, revision, now))  # thousands kept
            if before is not None and same_row(before, state):
                state = before  # unchanged: nothing written, the row keeps its revision
            else:
                changed.append(state)
            states[key] = state
            if action.rollout == Rollout.HELD and _new_hold(before, action):
                details = {"reason": action.reason, "cause": action.step}
                holds.append(
                    (
                        action,
                        draft(
                            action,
                            EventKind.HOLD,
                            EventOutcome.HELD,
                            revision,
                            action.reason,
                            details,
                        ),
                    )
                )
        appended = recorder.commit_many(changed, [event for _, event in holds])
        seqs = {
            action.key: (event.seq,) for (action, _), event in zip(holds, appended, strict=True)
        }
        reports = {}
        for action in the_plan.actions:
            if action.kind in (ActionKind.NOOP, ActionKind.HOLD):
                key = action.key
                found = reused.get(key)
                reports[key] = found or _settled_report(action, states[key], seqs.get(key, ()))
        for action in the_plan.actions:  # the same Noop on the same row next pass: nothing to do
            if action.kind != ActionKind.NOOP:
                continue
            key = action.key
            kept = states.get(key)
            if kept is not None and kept is previous.get(key):
                self._quiet[key] = (action, kept, reports[key])
        return states, reports

    def _entering_gates(
        self,
        recorder: Recorder,
        deploys: list[Action],
        states: dict[tuple[str, str], ObservedState],
    ) -> dict[tuple[str, str], ObservedState]:
        """Every Deploy's row at its first step, quantum gates, in one commit."""
        now = self.clock()
        stepped_states = {a.key: stepped(states[a.key], STEP_GATES, now) for a in deploys}
        recorder.commit_many(list(stepped_states.values()))
        return stepped_states

    def _deploy_all(
        self,
        deploys: list[Action],
        snapshot: Snapshot,
        previous: dict[tuple[str, str], ObservedState | None],
        states: dict[tuple[str, str], ObservedState],
        gates: Mapping[tuple[str, str], PreparedGates],
    ) -> list[AppReport]:
        """Roll out every Deploy, `concurrency` at a time, each worker on its own connection."""

        def one(action: Action) -> AppReport:
            before, state = previous[action.key], states[action.key]
            return self._deploy(action, snapshot, before, state, gates.get(action.key))

        if self.concurrency <= 1 or len(deploys) <= 1:
            return [one(action) for action in deploys]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="rollout") as pool:
            return list(pool.map(lambda action: self._in_worker(one, action), deploys))

    def _in_worker(self, one: Callable[[Action], AppReport], action: Action) -> AppReport:
        """One rollout on a pool thread, with a store connection of its own."""
        with self.store.connect() as store:
            self._local.store = store
            try:
                return one(action)
            finally:
                del self._local.store

    def _thread_store(self) -> StateStore:
        store: StateStore | None = getattr(self._local, "store", None)
        return store or self.store

    def _deploy(
        self,
        action: Action,
        snapshot: Snapshot,
        before: ObservedState | None,
        state: ObservedState,
        prepared: PreparedGates | None = None,
    ) -> AppReport:
        assert action.manifest is not None  # the planner only deploys valid releases
        deployment = Deployment(
            action=action,
            env=environment_of(snapshot, action.env),
            manifest=action.manifest,
            snapshot=snapshot,
            repo=self.repo,
            backends=self.backends,
            recorder=Recorder(self._thread_store(), self.clock, self.on_row),
            before=before,
            state=state,
            clock=self.clock,
            prepared=prepared,
        )
        return deployment.run()

    def _prune(
        self,
        recorder: Recorder,
        action: Action,
        snapshot: Snapshot,
        before: ObservedState | None,
    ) -> AppReport:
        """Remove an app Git no longer asks for (or forget a row that had nothing deployed)."""
        env = environment_of(snapshot, action.env)
        outcome = EventOutcome.FORGOTTEN
        if action.from_version is not None:
            self.backends.deployer_for(env).remove(env, action.app)
            outcome = EventOutcome.PRUNED
        details = {"reason": action.reason}
        event = draft(action, EventKind.PRUNE, outcome, None, action.reason, details)
        appended = recorder.commit(None, [event], forget=action.key)
        return AppReport(
            action.env,
            action.app,
            action.kind,
            action.from_version,
            None,
            None,
            "",
            action.reason,
            None,
            events=tuple(e.seq for e in appended),
        )

    # -- crash recovery ---------------------------------------------------------------

    def recover(
        self, environments: Mapping[str, Environment] | None = None, scope: Scope | None = None
    ) -> list[Event]:
        """Finish the record of any rollout a crash interrupted, from what is really live.

        Only in the environments the pass covers: with replicas, an intent in an environment
        this replica owns was left by an earlier owner (or an earlier life of this one, as
        passes of one replica never overlap), while one elsewhere may be in flight.
        """
        recorder = Recorder(self.store, self.clock, self.on_row)
        recorded: list[Event] = []
        for intent in self.store.pending_intents():
            if scope is not None and not scope.covers(intent.env):
                continue
            env = (environments or {}).get(intent.env) or Environment(environment=intent.env)
            observed = self.backends.deployer_for(env).observe(env, intent.app)
            if observed.error is not None:
                continue  # what runs is unknown: the intent waits for a pass that can tell
            live = observed.current
            switched = live is not None and live == intent.payload.get("to")
            state = recovered(
                self.store.get_observed(intent.env, intent.app),
                intent.env,
                intent.app,
                live,
                intent.step,
                self.clock(),
                previous=intent.payload.get("from") if switched else None,
            )
            event = EventDraft(
                env=intent.env,
                app=intent.app,
                action=str(EventKind.RECOVER),
                from_version=intent.payload.get("from"),
                to_version=live,
                revision=intent.payload.get("revision"),
                reason=f"a {intent.step} was interrupted; what runs is {live or 'nothing'}",
                outcome=str(EventOutcome.RECOVERED),
                details={"interrupted": intent.step, "intended": intent.payload},
            )
            recorded += recorder.commit(state, [event], intent=intent.id)
            self._observer.forget([(intent.env, intent.app)])
        return recorded


def _new_hold(before: ObservedState | None, action: Action) -> bool:
    """True when this hold was not already recorded for the key.

    A policy hold is the same hold while the same release fails the same checks: its text
    changes every pass (`Healthy in staging for 4m`), and the audit log records the hold
    once, not once per pass. So is a hold because what runs cannot be read (each error
    names its own request id). Any other hold is new when its reason changes.
    """
    if before is None or before.rollout != Rollout.HELD:
        return True
    if action.checks or action.step == OBSERVE_STEP:
        return (before.desired, before.rollout_step) != (action.to_version, action.step)
    return before.rollout_reason != action.reason


def _settled_report(action: Action, state: ObservedState, events: tuple[int, ...]) -> AppReport:
    outcome = Rollout.HELD if action.rollout == Rollout.HELD else None
    if action.rollout == Rollout.FAILED:
        outcome = None  # a failure waiting: nothing was attempted in this pass
    return AppReport(
        action.env,
        action.app,
        action.kind,
        action.from_version,
        action.to_version,
        outcome,
        state.rollout_step,
        action.reason,
        row_of(state),
        events=events,
    )
