"""Desired state x observed state -> a Plan of one action per (environment, app).

Purely computational: it takes values (the clock's reading among them) and returns values,
so every rule here is a unit test away. The engine supplies what Git says, what the store
remembers and what the deployers and targets report; it alone acts on the result. Sync is
decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import ActionKind, Availability, Failure, Health, Rollout, Sync
from qrelease.planning.policy import Check, failed, next_look

BLOCKING_AVAILABILITY = (Availability.DEGRADED, Availability.UNAVAILABLE)


class Retry(StrEnum):
    """Which failed releases a pass tries again at the revision they failed at.

    `due`: transient failures whose backoff has run out (the controller's passes);
    `transient`: every transient failure now (a pass a person asked for);
    `all`: deterministic failures too (`qrelease reconcile --retry`).
    """

    DUE = "due"
    TRANSIENT = "transient"
    ALL = "all"


class Release(Protocol):
    """A valid release: its target at once, its manifest when asked for.

    A `ReleaseManifest` is one; so is the loader's parse of one, which decodes the manifest
    only then: a pass over 30,000 unchanged pins reads each one's target and no manifest.
    """

    @property
    def target(self) -> str:
        """The id of the target the release is pinned to."""
        ...

    def manifest(self) -> ReleaseManifest | None:
        """The release's manifest."""
        ...


class Desired(NamedTuple):
    """What Git asks for one (environment, app): the pin and its release if valid.

    A named tuple, like `Seen` and `Action`: a pass builds one per pin, thousands at a time.
    """

    env: Environment
    app: str
    version: str
    release: Release | None
    problem: str = ""

    @property
    def manifest(self) -> ReleaseManifest | None:
        """The release's manifest (decoded now if the loader kept it packed)."""
        return self.release.manifest() if self.release is not None else None


class Seen(NamedTuple):
    """What is known of one (environment, app) now: the store's record and the deployer's view.

    `error` says why the deployer could not tell what runs (nothing is then done to the
    app). A named tuple: a pass builds one per pinned app, thousands at a time.
    """

    state: ObservedState | None = None
    current: str | None = None
    drift: str | None = None
    availability: Availability = Availability.UNKNOWN
    availability_message: str = ""
    error: str | None = None


class Action(NamedTuple):
    """The decision for one (environment, app).

    `rollout` is what the decision means for the last-rollout field: Running for a Deploy,
    Held for a new hold, Failed for a release waiting after a failure, None for unchanged.
    A policy hold carries its `checks` and when to judge again (`retry_at`); a suspended
    app's hold says so in `health`. A hold's `step` names its cause in a word or two
    (`suspended`, `invalid`, `target`, `unverified`, `environment`, `observe`,
    `infrastructure`, or the failing check names, comma-separated), as status shows
    `rollout Held (soak,window)` and metrics count.
    """

    kind: ActionKind
    env: str
    app: str
    from_version: str | None
    to_version: str | None
    sync: Sync
    reason: str = ""
    release: Release | None = None
    availability: Availability = Availability.UNKNOWN
    rollout: Rollout | None = None
    retry_at: datetime | None = None
    health: Health | None = None
    checks: tuple[Check, ...] = ()
    step: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(env, app)."""
        return (self.env, self.app)

    @property
    def manifest(self) -> ReleaseManifest | None:
        """The desired release's manifest (decoded now if the loader kept it packed)."""
        return self.release.manifest() if self.release is not None else None


@dataclass(frozen=True)
class Plan:
    """Every action of one pass, in a stable order (environment, then app)."""

    revision: str
    actions: tuple[Action, ...] = field(default_factory=tuple)

    def of_kind(self, kind: ActionKind) -> list[Action]:
        """The actions of one kind."""
        return [action for action in self.actions if action.kind == kind]

    @property
    def changes(self) -> list[Action]:
        """The actions that would change something (a bake or verify check may switch back)."""
        kinds = (
            ActionKind.DEPLOY,
            ActionKind.PRUNE,
            ActionKind.BAKE,
            ActionKind.VERIFY,
            ActionKind.DEGRADE,
        )
        return [a for a in self.actions if a.kind in kinds]


def plan(
    revision: str,
    desired: Iterable[Desired],
    seen: Mapping[tuple[str, str], Seen],
    environments: Mapping[str, Environment],
    *,
    now: datetime,
    retry: Retry = Retry.DUE,
    broken: Mapping[str, str] | None = None,
    verdicts: Mapping[tuple[str, str], Sequence[Check]] | None = None,
    degraded: Mapping[tuple[str, str], str] | None = None,
) -> Plan:
    """Decide for every desired app, and for every recorded app Git no longer asks for.

    `broken` maps environments whose file is invalid to the problem: their apps are held.
    `verdicts` are the policy checks of the pin changes about to be applied. `degraded`
    says why a live release fails a live signal (`policy.quantum_health`).
    """
    judged = verdicts or {}
    failing = degraded or {}
    actions = []
    for d in desired:
        key = (d.env.environment, d.app)
        verdict = judged.get(key, ())
        actions.append(
            decide(
                revision,
                d,
                seen.get(key, Seen()),
                now=now,
                retry=retry,
                verdict=verdict,
                degraded=failing.get(key),
            )
        )
    wanted = {(d.env.environment, d.app) for d in desired}
    for key, observed in seen.items():
        if key in wanted:
            continue
        if broken and key[0] in broken:
            actions.append(_hold(key, observed, broken[key[0]]))
        else:
            actions.append(decide_unwanted(key, observed, environments.get(key[0])))
    return Plan(revision=revision, actions=tuple(sorted(actions, key=lambda a: a.key)))


def hold_environments(the_plan: Plan, reasons: Mapping[str, str], step: str) -> Plan:
    """The same plan with the Deploys of the given environments held, each for its reason.

    What runs elsewhere, prunes and bake checks are untouched: the environment's quantum
    infrastructure failing, say, stops only what would go live on it.
    """
    held = [
        action._replace(
            kind=ActionKind.HOLD, reason=reasons[action.env], rollout=Rollout.HELD, step=step
        )
        if action.kind == ActionKind.DEPLOY and action.env in reasons
        else action
        for action in the_plan.actions
    ]
    return Plan(the_plan.revision, tuple(held))


def only_app(the_plan: Plan, app: str | None) -> Plan:
    """The plan's actions for one app (all of them when `app` is None).

    A pass asked for one app (`qrelease sync --app`) plans everything, so each decision
    is the one a full pass would make, and then carries out this app's alone.
    """
    if app is None:
        return the_plan
    return Plan(the_plan.revision, tuple(a for a in the_plan.actions if a.app == app))


def hold_all(the_plan: Plan, reason: str) -> Plan:
    """The same plan with every change turned into a Hold (an untrusted revision, say)."""
    held = [
        action._replace(
            kind=ActionKind.HOLD, reason=reason, rollout=Rollout.HELD, step="unverified"
        )
        if action.kind in (ActionKind.DEPLOY, ActionKind.PRUNE)
        else action
        for action in the_plan.actions
    ]
    return Plan(the_plan.revision, tuple(held))


def decide(
    revision: str,
    desired: Desired,
    seen: Seen,
    *,
    now: datetime,
    retry: Retry = Retry.DUE,
    verdict: Sequence[Check] = (),
    degraded: str | None = None,
) -> Action:
    """The action for one app an environment file pins (`verdict`: its policy checks;
    `degraded`: why what runs fails its quantum-job health, if it does)."""
    env, app, version = desired.env.environment, desired.app, desired.version
    current = seen.current

    def act(
        kind: ActionKind, sync: Sync, reason: str = "", rollout: Rollout | None = None
    ) -> Action:
        return Action(
            kind,
            env,
            app,
            current,
            version,
            sync,
            reason,
            desired.release,
            seen.availability,
            rollout,
        )

    suspended = desired.env.policy.suspended.get(app)
    if suspended is not None:
        reason = f"suspended: {suspended}" if suspended else "suspended"
        held = act(ActionKind.HOLD, _sync(current, version), reason, Rollout.HELD)
        return held._replace(health=Health.SUSPENDED, step="suspended")
    if desired.release is None:
        reason = desired.problem or "release is invalid"
        held = act(ActionKind.HOLD, _sync(current, version), reason, Rollout.HELD)
        return held._replace(step="invalid")
    if seen.error is not None:
        return _unreadable(act(ActionKind.HOLD, Sync.UNKNOWN), seen)
    unverified = _unverified(seen.state)
    if current == version and seen.drift is None and unverified:
        reason = "verify: an interrupted rollout left this release live; checking its health"
        return act(ActionKind.VERIFY, Sync.SYNCED, reason)
    if current == version and seen.drift is None and not unverified:
        if degraded and not _failed_live(seen.state, version):
            return act(ActionKind.DEGRADE, Sync.SYNCED, degraded)
        if _bake_due(seen.state, now):
            return act(ActionKind.BAKE, Sync.SYNCED, "bake: health check of what runs")
        return act(ActionKind.NOOP, Sync.SYNCED)
    waiting = _waiting(seen.state, version, revision, now, retry)
    if waiting:
        return act(ActionKind.HOLD, Sync.OUT_OF_SYNC, waiting, Rollout.FAILED)
    if seen.availability in BLOCKING_AVAILABILITY:
        target = desired.release.target
        detail = f": {seen.availability_message}" if seen.availability_message else ""
        reason = f"target {target} is {seen.availability}{detail}; rollout on hold"
        held = act(ActionKind.HOLD, Sync.OUT_OF_SYNC, reason, Rollout.HELD)
        return held._replace(step="target")
    stopping = failed(verdict) if current != version else []
    if stopping:
        until = next_look(verdict)
        when = f" (judged again at {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" if until else ""
        reason = (
            "held by policy"
            + when
            + ": "
            + "; ".join(f"{check.name}: {check.detail}" for check in stopping)
        )
        held = act(ActionKind.HOLD, Sync.OUT_OF_SYNC, reason, Rollout.HELD)
        step = ",".join(check.name for check in stopping)
        return held._replace(retry_at=until, checks=tuple(verdict), step=step)
    deploy = act(
        ActionKind.DEPLOY, Sync.OUT_OF_SYNC, _deploy_reason(seen, version), Rollout.RUNNING
    )
    return deploy._replace(checks=tuple(verdict))


def decide_unwanted(key: tuple[str, str], seen: Seen, env: Environment | None) -> Action:
    """The action for a recorded app that no environment file asks for any more.

    With nothing deployed the row is pruned (it only remembered a pin, a typo say); with
    something running it is pruned when the policy says so, else kept OutOfSync.
    """
    env_name, app = key
    if seen.error is not None:
        desired = seen.state.desired if seen.state is not None else None
        return _unreadable(Action(ActionKind.HOLD, *key, None, desired, Sync.UNKNOWN), seen)
    where = f"releases/{env_name}.yaml" if env is not None else f"environment {env_name!r}"
    if seen.current is None:
        reason = f"not in {where} and nothing deployed"
        return Action(ActionKind.PRUNE, env_name, app, None, None, Sync.SYNCED, reason)
    if env is not None and env.policy.prune:
        reason = f"removed from {where}"
        return Action(ActionKind.PRUNE, env_name, app, seen.current, None, Sync.OUT_OF_SYNC, reason)
    reason = f"not in {where}; still running (set policy.prune: true to remove it)"
    return Action(ActionKind.NOOP, env_name, app, seen.current, None, Sync.OUT_OF_SYNC, reason)


def _hold(key: tuple[str, str], seen: Seen, reason: str) -> Action:
    """A recorded app of an environment whose file is broken: what it wanted still stands."""
    desired = seen.state.desired if seen.state is not None else None
    return Action(
        ActionKind.HOLD,
        *key,
        seen.current,
        desired,
        Sync.UNKNOWN,
        reason,
        rollout=Rollout.HELD,
        step="environment",
    )


OBSERVE_STEP = "observe"


def _unreadable(held: Action, seen: Seen) -> Action:
    """A hold of an app whose deployer cannot tell what runs: nothing is done on a guess.

    What runs stays what was last known (the deployer's last sight, else the stored row),
    so the live release never vanishes from status; its health is Unknown.
    """
    running = seen.current
    if running is None and seen.state is not None:
        running = seen.state.deployed
    return held._replace(
        from_version=running,
        reason=f"cannot read what runs: {seen.error}",
        rollout=Rollout.HELD,
        health=Health.UNKNOWN,
        step=OBSERVE_STEP,
    )


def _sync(current: str | None, version: str) -> Sync:
    return Sync.SYNCED if current == version else Sync.OUT_OF_SYNC


def _deploy_reason(seen: Seen, version: str) -> str:
    state = seen.state
    if state is not None and state.failed_version == version and state.attempts:
        return f"retry: attempt {state.attempts + 1}"
    if seen.current == version:
        if seen.drift:
            return f"repair: {seen.drift}"
        return "verify: live after an interrupted deploy"
    return ""


def _waiting(
    state: ObservedState | None, version: str, revision: str, now: datetime, retry: Retry
) -> str:
    """Why this exact release waits after failing at this revision, or '' to try it now."""
    if state is None or state.failed_version != version or state.failed_revision != revision:
        return ""
    if retry == Retry.ALL:
        return ""
    if state.failure == Failure.TRANSIENT:
        due = state.retry_at is None or now >= state.retry_at
        if retry == Retry.TRANSIENT or due:
            return ""
    return state.message or f"{version} failed at this revision"


def _bake_due(state: ObservedState | None, now: datetime) -> bool:
    """True when a release bakes and its next health check (or the end of its bake) is due."""
    if state is None or state.bake_until is None or state.rollout != Rollout.RUNNING:
        return False
    return state.retry_at is None or now >= state.retry_at


def _failed_live(state: ObservedState | None, version: str) -> bool:
    """True when `version` already failed while live here (recorded once, not every pass)."""
    return state is not None and state.failed_version == version


def _unverified(state: ObservedState | None) -> bool:
    """True when a crash interrupted a deploy and nobody has checked what is live since."""
    return state is not None and state.health == Health.UNKNOWN and state.failed_version is None
