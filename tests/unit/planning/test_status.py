"""Status transitions: what a plan and each rollout outcome make of a row (pure values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import (
    ActionKind,
    Availability,
    Failure,
    Health,
    Rollout,
    Sync,
)
from qrelease.planning.planner import Action
from qrelease.planning.status import (
    MANUAL_RETRY,
    Outcome,
    failed,
    planned,
    recovered,
    row_of,
    status_rows,
    stepped,
    succeeded,
)

REV = "a" * 40
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def manifest(version: str, target: str = "ionq.simulator") -> ReleaseManifest:
    return ReleaseManifest.model_validate(
        {
            "app": "bell",
            "version": version,
            "classical": {"packages": [{"name": "bell", "version": version}]},
            "quantum": {
                "program": "programs/bell.qs",
                "entry": "Bell.Main()",
                "target": {"id": target, "profile": "Base"},
            },
        }
    )


def live(version: str = "1.0.0", target: str = "ionq.simulator") -> ObservedState:
    """A release that runs Healthy, as a successful rollout leaves it."""
    return ObservedState(
        env="dev",
        app="bell",
        desired=version,
        deployed=version,
        sync=Sync.SYNCED,
        health=Health.HEALTHY,
        rollout=Rollout.SUCCEEDED,
        target=target,
        running_target=target,
        healthy_since=NOW - timedelta(hours=1),
    )


def deploy(version: str = "1.1.0", target: str = "ionq.simulator") -> Action:
    return Action(
        ActionKind.DEPLOY,
        "dev",
        "bell",
        "1.0.0",
        version,
        Sync.OUT_OF_SYNC,
        release=manifest(version, target),
        availability=Availability.AVAILABLE,
        rollout=Rollout.RUNNING,
    )


def test_a_planned_deploy_is_progressing_from_the_start() -> None:
    state = planned(deploy(), live(), REV, NOW)
    assert (state.sync, state.health, state.rollout) == (
        Sync.OUT_OF_SYNC,
        Health.PROGRESSING,
        Rollout.RUNNING,
    )
    assert (state.desired, state.deployed, state.revision) == ("1.1.0", "1.0.0", REV)
    step = stepped(state, "install", NOW)
    assert row_of(step).step == "install" and "install" in step.message


def test_a_candidate_failing_before_the_switch_leaves_the_live_release_healthy() -> None:
    before = live()
    state = stepped(planned(deploy(), before, REV, NOW), "health check", NOW)
    outcome = Outcome("health", "health check failed: exit 3", Failure.DETERMINISTIC, "1.0.0")
    after = failed(before, state, outcome, REV, NOW)
    row = row_of(after)
    assert row.summary == "OutOfSync · Healthy · rollout Failed (health)"
    assert after.healthy_since == before.healthy_since  # the soak of what runs goes on
    assert after.message.endswith(MANUAL_RETRY)
    assert (after.failed_version, after.failure, after.retry_at) == (
        "1.1.0",
        Failure.DETERMINISTIC,
        None,
    )


def test_an_auto_rollback_shows_the_health_of_the_restored_release() -> None:
    before = live()
    state = planned(deploy(), before, REV, NOW)
    reason = "unhealthy; rolled back to 1.0.0"
    outcome = Outcome("health", reason, Failure.DETERMINISTIC, "1.0.0", Health.HEALTHY)
    restored = failed(before, state, outcome, REV, NOW)
    assert (restored.deployed, restored.health, restored.rollout) == (
        "1.0.0",
        Health.HEALTHY,
        Rollout.FAILED,
    )


def test_a_release_left_live_without_rollback_is_synced_and_degraded() -> None:
    before = live()
    state = planned(deploy(target="ionq.qpu.aria-1"), before, REV, NOW)
    outcome = Outcome(
        "health",
        "exit 3",
        Failure.DETERMINISTIC,
        "1.1.0",
        Health.DEGRADED,
        "ionq.qpu.aria-1",
        went_live=True,
    )
    after = failed(before, state, outcome, REV, NOW)
    assert (after.sync, after.health, after.deployed) == (Sync.SYNCED, Health.DEGRADED, "1.1.0")
    assert after.running_target == "ionq.qpu.aria-1" and after.healthy_since is None


def test_transient_failures_back_off_per_release_and_revision() -> None:
    before = live()
    state = planned(deploy(), before, REV, NOW)
    outcome = Outcome("install", "Failed to fetch", Failure.TRANSIENT, "1.0.0")
    first = failed(before, state, outcome, REV, NOW)
    assert (first.attempts, first.retry_at) == (1, NOW + timedelta(seconds=30))
    assert "retrying at 12:00:30 UTC (attempt 1)" in first.message
    second = failed(first, planned(deploy(), first, REV, NOW), outcome, REV, NOW)
    assert (second.attempts, second.retry_at) == (2, NOW + timedelta(seconds=60))
    other_revision = failed(
        second, planned(deploy(), second, "b" * 40, NOW), outcome, "b" * 40, NOW
    )
    assert other_revision.attempts == 1
    assert row_of(first).retry_at == first.retry_at


def test_the_target_shown_is_the_desired_releases_else_the_running_ones() -> None:
    before = live(target="ionq.simulator")
    attempt = planned(deploy(target="ionq.qpu.aria-9"), before, REV, NOW)
    outcome = Outcome("gates", "unknown target", Failure.DETERMINISTIC, "1.0.0")
    after_failure = failed(before, attempt, outcome, REV, NOW)
    assert after_failure.target == "ionq.qpu.aria-9"
    no_manifest = Action(
        ActionKind.HOLD,
        "dev",
        "bell",
        "1.0.0",
        "9.9.9",
        Sync.OUT_OF_SYNC,
        "no manifest manifests/bell/9.9.9.yaml",
        rollout=Rollout.HELD,
    )
    held = planned(no_manifest, after_failure, "b" * 40, NOW)
    assert held.target == "ionq.simulator"  # neither the failed attempt's nor a guess
    assert (held.rollout, held.health, held.message) == (
        Rollout.HELD,
        Health.HEALTHY,
        "no manifest manifests/bell/9.9.9.yaml",
    )


def test_success_clears_the_failure_and_keeps_the_soak_of_a_repaired_release() -> None:
    before = live("1.1.0")
    repair = Action(
        ActionKind.DEPLOY,
        "dev",
        "bell",
        "1.1.0",
        "1.1.0",
        Sync.OUT_OF_SYNC,
        "repair: lock file missing",
        manifest("1.1.0"),
        Availability.AVAILABLE,
        Rollout.RUNNING,
    )
    state = planned(repair, before, REV, NOW)
    after = succeeded(state, manifest("1.1.0"), NOW, "c" * 64, 100)
    assert (after.sync, after.health, after.rollout, after.message) == (
        Sync.SYNCED,
        Health.HEALTHY,
        Rollout.SUCCEEDED,
        "",
    )
    assert after.healthy_since == before.healthy_since
    upgraded = succeeded(planned(deploy(), live(), REV, NOW), manifest("1.1.0"), NOW, None, None)
    assert upgraded.healthy_since == NOW


def test_pinning_back_the_running_release_forgets_the_other_failure() -> None:
    before = live()
    failing = failed(
        before,
        planned(deploy(), before, REV, NOW),
        Outcome("install", "boom", Failure.DETERMINISTIC, "1.0.0"),
        REV,
        NOW,
    )
    back = Action(ActionKind.NOOP, "dev", "bell", "1.0.0", "1.0.0", Sync.SYNCED)
    state = planned(back, failing, "b" * 40, NOW)
    assert (state.sync, state.health, state.message, state.failed_version) == (
        Sync.SYNCED,
        Health.HEALTHY,
        "",
        None,
    )


def test_recovery_knows_what_runs_not_how_it_is() -> None:
    state = recovered(live(), "dev", "bell", "1.0.0", "deploy", NOW)
    assert (state.health, state.rollout, state.deployed) == (
        Health.UNKNOWN,
        Rollout.FAILED,
        "1.0.0",
    )


def test_status_rows_add_a_pending_row_for_each_pin_no_pass_recorded() -> None:
    rows = status_rows(
        [live()], {("dev", "bell"): ("1.0.0", None), ("prod", "bell"): ("1.0.0", "t")}, REV
    )
    assert [row.key for row in rows] == [("dev", "bell"), ("prod", "bell")]
    pending = rows[1]
    assert (pending.sync, pending.health, pending.target) == (Sync.UNKNOWN, Health.UNKNOWN, "t")
    assert pending.message == f"not reconciled yet (Git is at {REV[:12]})"


def test_a_pin_git_moved_since_the_last_pass_shows_as_not_reconciled_yet() -> None:
    (moved,) = status_rows([live("1.0.0")], {("dev", "bell"): ("1.1.0", "t2")}, REV)
    assert (moved.desired, moved.deployed, moved.sync, moved.health) == (
        "1.1.0",
        "1.0.0",
        Sync.OUT_OF_SYNC,
        Health.HEALTHY,
    )
    assert moved.message == f"Git at {REV[:12]} pins 1.1.0: not reconciled yet"
    recorded = live("1.0.0").model_copy(update={"desired": "1.1.0", "sync": Sync.OUT_OF_SYNC})
    (back,) = status_rows([recorded], {("dev", "bell"): ("1.0.0", None)}, REV)
    assert back.sync == Sync.UNKNOWN  # only a pass can tell whether what runs has drifted


def test_a_repair_that_fails_stays_out_of_sync_as_the_planner_decided() -> None:
    before = live("1.1.0")
    repair = Action(
        ActionKind.DEPLOY,
        "dev",
        "bell",
        "1.1.0",
        "1.1.0",
        Sync.OUT_OF_SYNC,
        "repair: lock file missing",
        manifest("1.1.0"),
        Availability.AVAILABLE,
        Rollout.RUNNING,
    )
    outcome = Outcome("gates", "profile gate Failed", Failure.DETERMINISTIC, "1.1.0")
    after = failed(before, planned(repair, before, REV, NOW), outcome, REV, NOW)
    assert (after.sync, after.deployed, after.desired) == (Sync.OUT_OF_SYNC, "1.1.0", "1.1.0")
