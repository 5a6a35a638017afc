"""Bake: a release that just went live has its health checked again, every interval, for a while.

`policy.bake` keeps a new release under watch after the rollout: each check that passes
moves the next one on, the last one ends the bake (and starts the soak the next
environment waits for), and a check that fails switches back to the release that ran
before (with `auto_rollback`) and holds the release at this revision.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from qrelease.engine.backends import Backends
from qrelease.engine.record import Recorder, draft
from qrelease.engine.report import AppReport
from qrelease.engine.rollout import switch_back
from qrelease.model.environment import Environment
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import EventKind, EventOutcome, Failure, Health, Rollout
from qrelease.planning.planner import Action
from qrelease.planning.status import Outcome, baked, failed, row_of
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
        previous = state.previous
        events = []
        live, live_health = action.to_version, Health.DEGRADED
        if env.policy.auto_rollback and previous:
            live = previous
            live_health = switch_back(deployer, env, snapshot, action.app, previous, Health.UNKNOWN)
            restored = (
                EventOutcome.RESTORED if live_health == Health.HEALTHY else EventOutcome.DEGRADED
            )
            details = {"restored": previous, "health": str(live_health)}
            events.append(
                draft(action, EventKind.AUTO_ROLLBACK, restored, snapshot.revision, reason, details)
            )
            reason += f"; rolled back to {previous}"
        result = Outcome(
            "bake",
            reason,
            Failure.DETERMINISTIC,
            live,
            live_health,
            went_live=live == action.to_version,
        )
        after = failed(state, state, result, snapshot.revision, now)
        events.append(draft(action, EventKind.BAKE, EventOutcome.FAILED, snapshot.revision, reason))
        appended = recorder.commit(after, events)
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
