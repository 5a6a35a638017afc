"""The pure planner: every decision rule, with values in and values out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import (
    ActionKind,
    Availability,
    Failure,
    Health,
    Rollout,
    Sync,
    worst,
)
from qrelease.planning.planner import Desired, Plan, Retry, Seen, decide, hold_environments, plan

REV = "a" * 40
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def manifest(version: str = "1.1.0") -> ReleaseManifest:
    return ReleaseManifest.model_validate(
        {
            "app": "bell",
            "version": version,
            "classical": {"packages": [{"name": "bell", "version": version}]},
            "quantum": {
                "program": "programs/bell.qs",
                "entry": "Bell.Main()",
                "target": {"id": "ionq.simulator", "profile": "Base"},
            },
        }
    )


def env(prune: bool = False, apps: dict[str, str] | None = None) -> Environment:
    return Environment.model_validate(
        {"environment": "dev", "policy": {"prune": prune}, "apps": apps or {"bell": "1.1.0"}}
    )


def desired(version: str = "1.1.0", valid: bool = True) -> Desired:
    return Desired(env(), "bell", version, manifest(version) if valid else None, "bad manifest")


def test_new_pin_deploys_from_the_live_version() -> None:
    action = decide(
        REV, desired(), Seen(current="1.0.0", availability=Availability.AVAILABLE), now=NOW
    )
    assert (action.kind, action.from_version, action.to_version) == (
        ActionKind.DEPLOY,
        "1.0.0",
        "1.1.0",
    )
    assert action.sync == Sync.OUT_OF_SYNC


def test_live_pin_is_a_noop() -> None:
    action = decide(REV, desired(), Seen(current="1.1.0"), now=NOW)
    assert action.kind == ActionKind.NOOP and action.sync == Sync.SYNCED


def test_drift_redeploys_the_same_version() -> None:
    action = decide(REV, desired(), Seen(current="1.1.0", drift="lock file missing"), now=NOW)
    assert action.kind == ActionKind.DEPLOY and "lock file missing" in action.reason


def test_invalid_release_is_held_and_live_one_kept() -> None:
    action = decide(REV, desired(valid=False), Seen(current="1.0.0"), now=NOW)
    assert action.kind == ActionKind.HOLD and action.reason == "bad manifest"


def test_unavailable_target_holds_and_never_rolls_back() -> None:
    seen = Seen(
        current="1.0.0", availability=Availability.UNAVAILABLE, availability_message="outage"
    )
    action = decide(REV, desired(), seen, now=NOW)
    assert action.kind == ActionKind.HOLD
    assert "ionq.simulator is Unavailable: outage" in action.reason
    degraded = decide(
        REV, desired(), Seen(current="1.0.0", availability=Availability.DEGRADED), now=NOW
    )
    assert degraded.kind == ActionKind.HOLD
    # an outage never turns a healthy running release into a deploy or a prune
    assert (
        decide(
            REV, desired(), Seen(current="1.1.0", availability=Availability.UNAVAILABLE), now=NOW
        ).kind
        == ActionKind.NOOP
    )


def test_failed_release_is_not_retried_at_the_same_revision() -> None:
    state = ObservedState(
        env="dev", app="bell", failed_version="1.1.0", failed_revision=REV, message="health"
    )
    seen = Seen(state=state, current="1.0.0")
    held = decide(REV, desired(), seen, now=NOW)
    assert (held.kind, held.rollout, held.reason) == (ActionKind.HOLD, Rollout.FAILED, "health")
    assert decide(REV, desired(), seen, retry=Retry.TRANSIENT, now=NOW).kind == ActionKind.HOLD
    assert decide(REV, desired(), seen, retry=Retry.ALL, now=NOW).kind == ActionKind.DEPLOY
    assert decide("b" * 40, desired(), seen, now=NOW).kind == ActionKind.DEPLOY


def test_removed_app_is_out_of_sync_unless_prune() -> None:
    seen = {("dev", "old"): Seen(current="0.1.0")}
    kept = plan(REV, [], seen, {"dev": env()}, now=NOW)
    assert kept.actions[0].kind == ActionKind.NOOP and kept.actions[0].sync == Sync.OUT_OF_SYNC
    assert "policy.prune" in kept.actions[0].reason
    pruned = plan(REV, [], seen, {"dev": env(prune=True)}, now=NOW)
    assert pruned.actions[0].kind == ActionKind.PRUNE


def test_broken_environment_file_holds_its_apps() -> None:
    seen = {("dev", "bell"): Seen(current="1.0.0")}
    held = plan(REV, [], seen, {}, broken={"dev": "releases/dev.yaml is invalid"}, now=NOW)
    assert held.actions[0].kind == ActionKind.HOLD


def test_plan_is_sorted_and_lists_changes() -> None:
    other = Desired(env(), "alpha", "1.1.0", manifest(), "")
    result = plan(
        REV, [desired(), other], {("dev", "bell"): Seen(current="1.1.0")}, {"dev": env()}, now=NOW
    )
    assert [a.app for a in result.actions] == ["alpha", "bell"]
    assert [a.app for a in result.changes] == ["alpha"]


def test_health_order_worst_wins() -> None:
    assert worst([Health.HEALTHY, Health.SUSPENDED]) == Health.SUSPENDED
    assert worst([Health.MISSING, Health.PROGRESSING]) == Health.MISSING
    assert worst([Health.DEGRADED, Health.UNKNOWN]) == Health.UNKNOWN
    assert worst([]) == Health.HEALTHY


def test_live_release_unverified_after_a_crash_is_verified_again() -> None:
    state = ObservedState(env="dev", app="bell", deployed="1.1.0", health=Health.UNKNOWN)
    action = decide(REV, desired(), Seen(state=state, current="1.1.0"), now=NOW)
    assert action.kind == ActionKind.VERIFY and "interrupted" in action.reason
    assert action.sync == Sync.SYNCED  # what Git asks for runs; only its health is unknown


def test_a_transient_failure_is_retried_once_its_backoff_is_due() -> None:
    state = ObservedState(
        env="dev",
        app="bell",
        failed_version="1.1.0",
        failed_revision=REV,
        failure=Failure.TRANSIENT,
        attempts=2,
        retry_at=NOW + timedelta(seconds=30),
        message="install failed for 1.1.0: wheel source unreachable; retrying",
    )
    seen = Seen(state=state, current="1.0.0")
    waiting = decide(REV, desired(), seen, now=NOW)
    assert (waiting.kind, waiting.rollout) == (ActionKind.HOLD, Rollout.FAILED)
    assert "wheel source unreachable" in waiting.reason
    due = decide(REV, desired(), seen, now=NOW + timedelta(seconds=30))
    assert (due.kind, due.reason) == (ActionKind.DEPLOY, "retry: attempt 3")
    asked = decide(REV, desired(), seen, retry=Retry.TRANSIENT, now=NOW)
    assert asked.kind == ActionKind.DEPLOY


def test_a_row_with_nothing_deployed_and_no_pin_is_pruned_whatever_the_policy() -> None:
    typo = ObservedState(env="dev", app="bell-servce", desired="1.2.0")
    result = plan(REV, [], {("dev", "bell-servce"): Seen(state=typo)}, {"dev": env()}, now=NOW)
    (action,) = result.actions
    assert (action.kind, action.from_version) == (ActionKind.PRUNE, None)
    assert "not in releases/dev.yaml and nothing deployed" in action.reason


def test_a_broken_environment_keeps_the_desired_version_it_last_had() -> None:
    state = ObservedState(env="dev", app="bell", desired="1.1.0", deployed="1.0.0")
    seen = {("dev", "bell"): Seen(state=state, current="1.0.0")}
    (held,) = plan(REV, [], seen, {}, broken={"dev": "bad"}, now=NOW).actions
    assert (held.kind, held.to_version, held.rollout) == (ActionKind.HOLD, "1.1.0", Rollout.HELD)


def test_an_app_whose_deployer_cannot_tell_what_runs_is_held_as_last_known() -> None:
    stored = ObservedState(env="dev", app="bell", desired="1.0.0", deployed="1.0.0")
    seen = Seen(state=stored, current=None, error="HTTP 404; request id 9")

    action = decide(REV, desired(), seen, now=NOW)

    assert (action.kind, action.from_version, action.to_version) == (
        ActionKind.HOLD,
        "1.0.0",
        "1.1.0",
    )
    assert (action.sync, action.health, action.rollout) == (
        Sync.UNKNOWN,
        Health.UNKNOWN,
        Rollout.HELD,
    )
    assert (action.step, action.reason) == (
        "observe",
        "cannot read what runs: HTTP 404; request id 9",
    )


def test_an_unpinned_app_that_cannot_be_read_is_held_not_pruned() -> None:
    stored = ObservedState(env="dev", app="old", deployed="0.1.0")
    seen = {("dev", "old"): Seen(state=stored, error="HTTP 404")}

    (action,) = plan(REV, [], seen, {"dev": env(prune=True)}, now=NOW).actions

    assert (action.kind, action.from_version, action.step) == (ActionKind.HOLD, "0.1.0", "observe")


def test_holding_environments_holds_only_their_deploys() -> None:
    deploy = decide(REV, desired(), Seen(current="1.0.0"), now=NOW)
    noop = decide(REV, desired(), Seen(current="1.1.0"), now=NOW)
    elsewhere = deploy._replace(env="prod")
    the_plan = Plan(REV, (deploy, noop._replace(app="other"), elsewhere))

    held = hold_environments(the_plan, {"dev": "quantum infrastructure: ARM said no"}, "infra")

    assert [(a.env, a.app, a.kind) for a in held.actions] == [
        ("dev", "bell", ActionKind.HOLD),
        ("dev", "other", ActionKind.NOOP),
        ("prod", "bell", ActionKind.DEPLOY),
    ]
    first = held.actions[0]
    assert (first.rollout, first.step, first.reason) == (
        Rollout.HELD,
        "infra",
        "quantum infrastructure: ARM said no",
    )


def test_a_live_release_whose_quantum_jobs_fail_is_degraded_once() -> None:
    problem = "4 of 12 quantum jobs failed in the last 30m (33%, over the limit of 20%)"
    live = ObservedState(env="dev", app="bell", deployed="1.1.0", health=Health.HEALTHY)
    action = decide(REV, desired(), Seen(state=live, current="1.1.0"), now=NOW, degraded=problem)
    assert (action.kind, action.reason, action.sync) == (ActionKind.DEGRADE, problem, Sync.SYNCED)
    recorded = live.model_copy(update={"failed_version": "1.1.0", "health": Health.DEGRADED})
    again = decide(REV, desired(), Seen(state=recorded, current="1.1.0"), now=NOW, degraded=problem)
    assert again.kind == ActionKind.NOOP  # already recorded: not degraded again every pass


def test_quantum_jobs_never_degrade_a_release_that_is_not_the_desired_live_one() -> None:
    problem = "jobs failing"
    rolled_back = decide(REV, desired(), Seen(current="1.0.0"), now=NOW, degraded=problem)
    assert rolled_back.kind != ActionKind.DEGRADE
    the_plan = plan(REV, [desired()], {("dev", "bell"): Seen(current="1.1.0")}, {}, now=NOW)
    assert the_plan.actions[0].kind == ActionKind.NOOP  # no verdict given: nothing to judge
