"""The pure planner: every decision rule, with values in and values out."""

from __future__ import annotations

from qrelease.model.environment import Environment
from qrelease.model.events import ObservedState
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.status import ActionKind, Availability, Health, Sync, worst
from qrelease.planning.planner import Desired, Seen, decide, plan

REV = "a" * 40


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
    action = decide(REV, desired(), Seen(current="1.0.0", availability=Availability.AVAILABLE))
    assert (action.kind, action.from_version, action.to_version) == (
        ActionKind.DEPLOY,
        "1.0.0",
        "1.1.0",
    )
    assert action.sync == Sync.OUT_OF_SYNC


def test_live_pin_is_a_noop() -> None:
    action = decide(REV, desired(), Seen(current="1.1.0"))
    assert action.kind == ActionKind.NOOP and action.sync == Sync.SYNCED


def test_drift_redeploys_the_same_version() -> None:
    action = decide(REV, desired(), Seen(current="1.1.0", drift="lock file missing"))
    assert action.kind == ActionKind.DEPLOY and "lock file missing" in action.reason


def test_invalid_release_is_held_and_live_one_kept() -> None:
    action = decide(REV, desired(valid=False), Seen(current="1.0.0"))
    assert action.kind == ActionKind.HOLD and action.reason == "bad manifest"


def test_unavailable_target_holds_and_never_rolls_back() -> None:
    seen = Seen(
        current="1.0.0", availability=Availability.UNAVAILABLE, availability_message="outage"
    )
    action = decide(REV, desired(), seen)
    assert action.kind == ActionKind.HOLD
    assert "ionq.simulator is Unavailable: outage" in action.reason
    degraded = decide(REV, desired(), Seen(current="1.0.0", availability=Availability.DEGRADED))
    assert degraded.kind == ActionKind.HOLD
    # an outage never turns a healthy running release into a deploy or a prune
    assert (
        decide(REV, desired(), Seen(current="1.1.0", availability=Availability.UNAVAILABLE)).kind
        == ActionKind.NOOP
    )


def test_failed_release_is_not_retried_at_the_same_revision() -> None:
    state = ObservedState(
        env="dev", app="bell", failed_version="1.1.0", failed_revision=REV, message="health"
    )
    seen = Seen(state=state, current="1.0.0")
    assert decide(REV, desired(), seen).kind == ActionKind.HOLD
    assert decide(REV, desired(), seen, retry=True).kind == ActionKind.DEPLOY
    assert decide("b" * 40, desired(), seen).kind == ActionKind.DEPLOY


def test_removed_app_is_out_of_sync_unless_prune() -> None:
    seen = {("dev", "old"): Seen(current="0.1.0")}
    kept = plan(REV, [], seen, {"dev": env()})
    assert kept.actions[0].kind == ActionKind.NOOP and kept.actions[0].sync == Sync.OUT_OF_SYNC
    assert "policy.prune" in kept.actions[0].reason
    pruned = plan(REV, [], seen, {"dev": env(prune=True)})
    assert pruned.actions[0].kind == ActionKind.PRUNE


def test_broken_environment_file_holds_its_apps() -> None:
    seen = {("dev", "bell"): Seen(current="1.0.0")}
    held = plan(REV, [], seen, {}, broken={"dev": "releases/dev.yaml is invalid"})
    assert held.actions[0].kind == ActionKind.HOLD


def test_plan_is_sorted_and_lists_changes() -> None:
    other = Desired(env(), "alpha", "1.1.0", manifest(), "")
    result = plan(REV, [desired(), other], {("dev", "bell"): Seen(current="1.1.0")}, {"dev": env()})
    assert [a.app for a in result.actions] == ["alpha", "bell"]
    assert [a.app for a in result.changes] == ["alpha"]


def test_health_order_worst_wins() -> None:
    assert worst([Health.HEALTHY, Health.SUSPENDED]) == Health.SUSPENDED
    assert worst([Health.MISSING, Health.PROGRESSING]) == Health.MISSING
    assert worst([Health.DEGRADED, Health.UNKNOWN]) == Health.UNKNOWN
    assert worst([]) == Health.HEALTHY


def test_live_release_unverified_after_a_crash_is_verified_again() -> None:
    state = ObservedState(env="dev", app="bell", deployed="1.1.0", health=Health.UNKNOWN)
    action = decide(REV, desired(), Seen(state=state, current="1.1.0"))
    assert action.kind == ActionKind.DEPLOY and "interrupted" in action.reason
