"""Checks of what runs after a rollout: bake, and verifying what an interrupted rollout left.

`policy.bake` keeps a new release under watch after the rollout: each check that passes
moves the next one on, the last one ends the bake (and starts the soak the next
environment waits for), and a check that fails switches back to the release that ran
before (with `auto_rollback`) and holds the release at this revision.

A rollout interrupted after its switch (a crash, or a replica killed and its environment
taken over) left the new release live with its health unknown. The next pass does not roll
it out again: it runs the live health check it missed, records the rollout's outcome
(`deploy`, Healthy) and, when the check fails, switches back as a failed bake does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from qrelease.engine.backends import Backends
from qrelease.engine.record import Recorder, draft
from qrelease.engine.report import AppReport
from qrelease.engine.rollout import switch_back
from qrelease.model.environment import Environment
from qrelease.model.events import Event
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import EventKind, EventOutcome, Failure, Health, Rollout, Sync
from qrelease.planning.jobs import HEALTH_STEP
from qrelease.planning.planner import Action
from qrelease.planning.status import Outcome, baked, baking, failed, row_of, verified
from qrelease.source.loader import Snapshot


def bake_check(
    action: Action,
    env: Environment,
    snapshot: Snapshot,
    state: ObservedState,
    backends: Backends,
    recorder: Recorder,
    clock: Callable[[], datetime],
) -> AppReport:
    """Run one bake check of what runs and record what it means."""
    assert action.manifest is not None  # the planner only bakes a valid, live release
    deployer = backends.deployer_for(env)
    health = deployer.check_health(env, action.manifest, current=True)
    now = clock()
    if health.ok:
        after = baked(state, env.policy.bake, now) if env.policy.bake else baked_now(state, now)
        done = after.bake_until is None
        events = [
            draft(action, EventKind.BAKE, EventOutcome.HEALTHY, snapshot.revision, "bake ended")
        ]
        appended = recorder.commit(after, events if done else [])
        outcome, reason = (Rollout.SUCCEEDED, "") if done else (None, "")
    else:
        reason = f"health check failed during the bake: {health.message}"
        after, appended = _failed_live(
            action, env, snapshot, state, backends, recorder, clock, "bake", reason, EventKind.BAKE
        )
        outcome = Rollout.FAILED
    return AppReport(
        action.env,
        action.app,
        action.kind,
        action.from_version,
        action.to_version,
        outcome,
        "bake",
        reason,
        row_of(after),
        events=tuple(event.seq for event in appended),
    )


def verify_live(
    action: Action,
    env: Environment,
    snapshot: Snapshot,
    state: ObservedState,
    backends: Backends,
    recorder: Recorder,
    clock: Callable[[], datetime],
) -> AppReport:
    """The live health check an interrupted rollout missed, and the rollout's outcome."""
    assert action.manifest is not None  # the planner only verifies a valid, live release
    health = backends.deployer_for(env).check_health(env, action.manifest, current=True)
    step = "health check (live)"
    if health.ok:
        now = clock()
        after = verified(state, now)
        if env.policy.bake:  # it went live without its bake: watch it now
            after = baking(after, env.policy.bake, state.previous, now)
        reason = "verified after an interrupted rollout"
        details = {"verified": True, "health": health.message}
        event = draft(
            action, EventKind.DEPLOY, EventOutcome.HEALTHY, snapshot.revision, reason, details
        )
        event = event.model_copy(update={"from_version": state.previous})
        appended = recorder.commit(after, [event])
        outcome = Rollout.SUCCEEDED
    else:
        reason = f"health check failed after an interrupted rollout: {health.message}"
        after, appended = _failed_live(
            action, env, snapshot, state, backends, recorder, clock, step, reason, EventKind.DEPLOY
        )
        outcome = Rollout.FAILED
    return AppReport(
        action.env,
        action.app,
        action.kind,
        state.previous,
        action.to_version,
        outcome,
        step,
        reason,
        row_of(after),
        events=tuple(event.seq for event in appended),
    )


def quantum_degrade(
    action: Action,
    env: Environment,
    snapshot: Snapshot,
    state: ObservedState,
    backends: Backends,
    recorder: Recorder,
    clock: Callable[[], datetime],
) -> AppReport:
    """The live release's quantum jobs fail too often: it is Degraded, as if its health
    check had failed, and with `auto_rollback` switched back to the release before it."""
    previous = state.previous or went_live_from(recorder, action)
    live = state.model_copy(update={"previous": previous})
    reason = f"quantum jobs failing: {action.reason}"
    after, appended = _failed_live(
        action,
        env,
        snapshot,
        live,
        backends,
        recorder,
        clock,
        HEALTH_STEP,
        reason,
        EventKind.QUANTUM_HEALTH,
    )
    return AppReport(
        action.env,
        action.app,
        action.kind,
        action.from_version,
        action.to_version,
        Rollout.FAILED,
        HEALTH_STEP,
        after.rollout_reason,
        row_of(after),
        events=tuple(event.seq for event in appended),
    )


def went_live_from(recorder: Recorder, action: Action) -> str | None:
    """The release that ran before the live one, from the audit event of its rollout."""
    for event in recorder.store.iter_events(
        env=action.env, app=action.app, actions=[str(EventKind.DEPLOY)], descending=True
    ):
        if event.outcome == EventOutcome.HEALTHY and event.to_version == action.to_version:
            return event.from_version
    return None


def _failed_live(
    action: Action,
    env: Environment,
    snapshot: Snapshot,
    state: ObservedState,
    backends: Backends,
    recorder: Recorder,
    clock: Callable[[], datetime],
    step: str,
    reason: str,
    kind: EventKind,
) -> tuple[ObservedState, list[Event]]:
    """What runs failed its health check: switch back to `state.previous` when allowed."""
    deployer = backends.deployer_for(env)
    previous = state.previous
    events = []
    live, live_health = action.to_version, Health.DEGRADED
    if env.policy.auto_rollback and previous:
        live = previous
        live_health = switch_back(deployer, env, snapshot, action.app, previous, Health.UNKNOWN)
        restored = EventOutcome.RESTORED if live_health == Health.HEALTHY else EventOutcome.DEGRADED
        details = {"restored": previous, "health": str(live_health)}
        events.append(
            draft(action, EventKind.AUTO_ROLLBACK, restored, snapshot.revision, reason, details)
        )
        reason += f"; rolled back to {previous}"
    result = Outcome(
        step, reason, Failure.DETERMINISTIC, live, live_health, went_live=live == action.to_version
    )
    after = failed(state, state, result, snapshot.revision, clock())
    if live != action.to_version:  # switched back: what runs is no longer what Git asks for
        after = after.model_copy(update={"sync": Sync.OUT_OF_SYNC})
    events.append(draft(action, kind, EventOutcome.FAILED, snapshot.revision, reason))
    return after, recorder.commit(after, events)


def baked_now(state: ObservedState, now: datetime) -> ObservedState:
    """The environment no longer bakes (its policy changed): the bake ends with this check."""
    return state.model_copy(
        update={
            "rollout": Rollout.SUCCEEDED,
            "rollout_step": "",
            "message": "",
            "healthy_since": now,
            "bake_until": None,
            "retry_at": None,
        }
    )
