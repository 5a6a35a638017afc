"""The engine with in-memory deployer and quantum fakes, a real git repo and a real store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine, PassReport
from qrelease.model.vocabulary import ActionKind, Availability, Health, Rollout, Sync
from qrelease.planning.planner import Retry
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import StateStore, open_store
from tests.helpers.gitops import GitOpsRepo

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ALL = {
    ("dev", "bell-service"),
    ("dev", "qrng"),
    ("staging", "bell-service"),
    ("staging", "qrng"),
    ("prod", "bell-service"),
    ("prod", "qrng"),
}


class Rig:
    """An engine over fakes, rebuilt per pass like a restarted controller would be."""

    def __init__(self, repo: GitOpsRepo, state: Path) -> None:
        self.repo = repo
        self.deployer = MemoryDeployer()
        self.quantum = MemoryQuantum()
        self.store = open_store(state)
        self.git = GitRepo(repo.path)
        self.now = T0
        backends = Backends(lambda env: self.deployer, lambda env: self.quantum)
        self.engine = Engine(self.git, self.store, backends, clock=lambda: self.now)

    def close(self) -> None:
        self.store.close()
        self.git.close()

    def state(self, env: str, app: str):
        state = self.store.get_observed(env, app)
        assert state is not None
        return state

    def soaked(self) -> None:
        """Move the clock past every soak of the example environments (the longest is 1h)."""
        self.now += timedelta(hours=2)

    def pin(self, env: str, app: str, version: str) -> str:
        path = f"releases/{env}.yaml"
        lines = [
            f"  {app}: {version}" if line.startswith(f"  {app}: ") else line
            for line in self.repo.read(path).splitlines()
        ]
        self.repo.write(path, "\n".join(lines) + "\n")
        return self.repo.commit(f"pin {app} {version} in {env}")


def outcomes(report: PassReport) -> dict[tuple[str, str], Rollout]:
    """The rollout outcome of every (env, app) the pass rolled out."""
    return {app.key: app.outcome for app in report.apps if app.outcome in ROLLED_OUT}


ROLLED_OUT = (Rollout.SUCCEEDED, Rollout.FAILED)


@pytest.fixture
def rig(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(example_repo, tmp_path / "state")
    yield rig
    rig.close()


def test_first_pass_brings_everything_healthy(rig: Rig) -> None:
    result = rig.engine.reconcile()
    assert outcomes(result) == dict.fromkeys(ALL, Rollout.SUCCEEDED)
    for env, app in ALL:
        state = rig.state(env, app)
        assert (state.sync, state.health) == (Sync.SYNCED, Health.HEALTHY)
        assert state.availability == Availability.AVAILABLE
    actions = [e.action for e in rig.store.events(env="dev", app="qrng")]
    assert actions == ["gate", "gate", "gate", "install", "switch", "deploy"]
    assert rig.store.verify().ok
    lock = rig.deployer.lock("dev", "qrng", "0.2.0")
    assert lock is not None and lock.revision == rig.repo.head and lock.qir_sha256


def test_second_pass_with_nothing_new_does_no_work(rig: Rig) -> None:
    rig.engine.reconcile()
    gates, installs, events = (
        len(rig.quantum.calls),
        rig.deployer.install_count,
        rig.store.count_events(),
    )
    before = len(rig.deployer.calls)
    result = rig.engine.reconcile()
    assert {a.kind for a in result.plan.actions} == {ActionKind.NOOP}
    assert len(rig.quantum.calls) == gates and rig.deployer.install_count == installs
    assert rig.store.count_events() == events
    assert set(rig.deployer.methods_called()[before:]) == {"observe"}


def test_failing_gate_keeps_the_running_release_and_others_unaffected(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.quantum.failing_programs["manifests/qrng/programs/qrng.qs"] = "UseOfDynamicBool at 3:5"
    rig.pin("prod", "qrng", "0.2.0")
    rig.pin("prod", "bell-service", "1.1.0")
    result = rig.engine.reconcile()
    assert outcomes(result)[("prod", "qrng")] == Rollout.FAILED
    assert outcomes(result)[("prod", "bell-service")] == Rollout.SUCCEEDED
    state = rig.state("prod", "qrng")
    assert state.deployed == "0.1.0" and state.sync == Sync.OUT_OF_SYNC
    assert "UseOfDynamicBool" in state.message
    assert rig.deployer.lock("prod", "qrng", "0.2.0") is None  # nothing installed


def test_unhealthy_release_rolls_back_and_is_not_retried_in_a_loop(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.deployer.unhealthy.add("1.1.0")
    rig.pin("prod", "bell-service", "1.1.0")
    # pre-switch check catches it in the release; make it pass there and fail once live
    rig.deployer.unhealthy.discard("1.1.0")
    original = rig.deployer.check_health

    def live_fails(env, manifest, *, current):
        result = original(env, manifest, current=current)
        if current and manifest.version == "1.1.0":
            return type(result)(False, "self-check exited 3")
        return result

    rig.deployer.check_health = live_fails  # type: ignore[method-assign]
    result = rig.engine.reconcile()
    assert outcomes(result)[("prod", "bell-service")] == Rollout.FAILED
    state = rig.state("prod", "bell-service")
    assert (state.deployed, state.health, state.rollout) == (
        "1.0.0",
        Health.HEALTHY,
        Rollout.FAILED,
    )
    assert "self-check exited 3" in state.message and "rolled back to 1.0.0" in state.message
    assert [e.action for e in rig.store.events(env="prod", app="bell-service")][-3:] == [
        "switch",
        "auto-rollback",
        "deploy",
    ]
    installs = rig.deployer.install_count
    again = rig.engine.reconcile()
    assert again.plan.of_kind(ActionKind.HOLD)[0].app == "bell-service"
    assert rig.deployer.install_count == installs
    assert rig.store.verify().ok


def test_health_failure_before_switch_never_goes_live(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.deployer.unhealthy.add("1.1.0")
    rig.pin("prod", "bell-service", "1.1.0")
    rig.engine.reconcile()
    state = rig.state("prod", "bell-service")
    # what runs is still the healthy 1.0.0: the candidate's failure is the rollout's, not health's
    assert (state.deployed, state.health, state.rollout) == (
        "1.0.0",
        Health.HEALTHY,
        Rollout.FAILED,
    )
    assert state.rollout_step == "health" and state.sync == Sync.OUT_OF_SYNC
    assert ("switch", "prod", "bell-service", "1.1.0") not in rig.deployer.calls
    # a new revision is a new chance
    rig.deployer.unhealthy.clear()
    rig.repo.write("README.md", "touched\n")
    rig.repo.commit("unrelated")
    assert outcomes(rig.engine.reconcile())[("prod", "bell-service")] == Rollout.SUCCEEDED


def test_unavailable_target_holds_without_rolling_back(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.quantum.availability["ionq.qpu.aria-1"] = Availability.UNAVAILABLE
    rig.pin("prod", "bell-service", "1.1.0")
    result = rig.engine.reconcile()
    assert result.plan.of_kind(ActionKind.HOLD)[0].key == ("prod", "bell-service")
    state = rig.state("prod", "bell-service")
    assert state.deployed == "1.0.0" and state.health == Health.HEALTHY
    assert "Unavailable" in state.message
    holds = [e for e in rig.store.events(env="prod", app="bell-service") if e.action == "hold"]
    rig.engine.reconcile()
    assert (
        len([e for e in rig.store.events(env="prod", app="bell-service") if e.action == "hold"])
        == len(holds)
        == 1
    )


def test_a_manifest_whose_target_changes_is_judged_on_its_new_target(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.quantum.availability["ionq.qpu.forte-1"] = Availability.UNAVAILABLE
    path = "manifests/bell-service/1.1.0.yaml"
    rig.repo.write(path, rig.repo.read(path).replace("ionq.qpu.aria-1", "ionq.qpu.forte-1"))
    rig.repo.commit("move 1.1.0 to forte")  # same release, new model: new target id
    rig.pin("prod", "bell-service", "1.1.0")
    _snapshot, plan = rig.engine.plan()
    (action,) = [a for a in plan.actions if a.key == ("prod", "bell-service")]
    assert (action.kind, action.availability) == (ActionKind.HOLD, Availability.UNAVAILABLE)


def test_pin_back_to_an_on_disk_release_installs_nothing(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.pin("prod", "bell-service", "1.1.0")
    rig.engine.reconcile()
    installs = rig.deployer.install_count
    rig.pin("prod", "bell-service", "1.0.0")
    assert outcomes(rig.engine.reconcile())[("prod", "bell-service")] == Rollout.SUCCEEDED
    assert rig.deployer.install_count == installs


def test_invalid_manifest_holds_only_that_app(rig: Rig) -> None:
    rig.engine.reconcile()
    path = "manifests/qrng/0.2.0.yaml"
    rig.repo.write(path, rig.repo.read(path).replace("profile: Base", "profile: Basic"))
    rig.repo.commit("break qrng 0.2.0")
    result = rig.engine.reconcile()
    held = {a.key for a in result.plan.of_kind(ActionKind.HOLD)}
    assert held == {("dev", "qrng"), ("staging", "qrng")}
    assert rig.state("dev", "qrng").deployed == "0.2.0"  # still running
    assert "invalid" in rig.state("dev", "qrng").message


def test_recover_records_an_interrupted_step(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.store.put_intent(
        "prod", "qrng", "deploy", {"from": "0.1.0", "to": "0.2.0", "revision": "x"}
    )
    recovered = rig.engine.recover()
    assert [(e.action, e.to_version) for e in recovered] == [("recover", "0.1.0")]
    assert rig.store.pending_intents() == []
    assert rig.store.verify().ok


def interrupted_after_the_switch(rig: Rig) -> None:
    """A rollout of prod/qrng 0.1.0 -> 0.2.0 that switched, then its process died."""
    rig.engine.reconcile()
    rig.pin("prod", "qrng", "0.2.0")
    intent = {"from": "0.1.0", "to": "0.2.0", "revision": "x"}
    rig.store.put_intent("prod", "qrng", "deploy", intent)
    rig.deployer.seed("prod", "qrng", current="0.2.0", on_disk=("0.1.0",))


def test_a_release_left_live_by_an_interrupted_rollout_is_verified_not_rolled_out_again(
    rig: Rig,
) -> None:
    interrupted_after_the_switch(rig)
    before = len(rig.deployer.calls)
    result = rig.engine.reconcile()
    assert [a.key for a in result.plan.of_kind(ActionKind.VERIFY)] == [("prod", "qrng")]
    calls = [c[0] for c in rig.deployer.calls[before:] if c[1:3] == ("prod", "qrng")]
    assert "prepare" not in calls and "switch" not in calls and "check_health" in calls
    state = rig.state("prod", "qrng")
    assert (state.deployed, state.health, state.rollout) == (
        "0.2.0",
        Health.HEALTHY,
        Rollout.SUCCEEDED,
    )
    trail = [
        (e.action, e.from_version, e.to_version, e.outcome)
        for e in rig.store.events(env="prod", app="qrng")
    ][-2:]
    assert trail == [
        ("recover", "0.1.0", "0.2.0", "Recovered"),
        ("deploy", "0.1.0", "0.2.0", "Healthy"),
    ]
    assert rig.engine.reconcile().plan.changes == []  # settled


def test_a_release_left_live_that_fails_its_check_is_switched_back(rig: Rig) -> None:
    interrupted_after_the_switch(rig)
    rig.deployer.unhealthy.add("0.2.0")
    rig.engine.reconcile()
    state = rig.state("prod", "qrng")
    assert (state.deployed, state.rollout, state.failed_version) == (
        "0.1.0",
        Rollout.FAILED,
        "0.2.0",
    )
    assert ("switch", "prod", "qrng", "0.1.0") in rig.deployer.calls
    actions = [e.action for e in rig.store.events(env="prod", app="qrng")][-3:]
    assert actions == ["recover", "auto-rollback", "deploy"]
    assert rig.engine.reconcile().plan.changes == []  # held: the failure waits for a new pin


def test_removed_app_is_out_of_sync_not_removed(rig: Rig) -> None:
    rig.engine.reconcile()
    dev = rig.repo.read("releases/dev.yaml").replace("  qrng: 0.2.0\n", "")
    rig.repo.write("releases/dev.yaml", dev)
    rig.repo.commit("drop qrng from dev")
    rig.engine.reconcile()
    state = rig.state("dev", "qrng")
    assert state.sync == Sync.OUT_OF_SYNC and "policy.prune" in state.message
    assert ("remove", "dev", "qrng") not in rig.deployer.calls
    rig.repo.write(
        "releases/dev.yaml",
        dev.replace("  auto_rollback: true\n", "  auto_rollback: true\n  prune: true\n"),
    )
    rig.repo.commit("prune dev")
    rig.engine.reconcile()
    assert ("remove", "dev", "qrng") in rig.deployer.calls
    assert rig.store.get_observed("dev", "qrng") is None


def test_parallel_rollouts_keep_one_valid_chain(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    rig = Rig(example_repo, tmp_path / "state")
    rig.engine.concurrency = 3
    try:
        result = rig.engine.reconcile()
        assert outcomes(result) == dict.fromkeys(ALL, Rollout.SUCCEEDED)
        assert rig.store.verify().ok
        for env, app in ALL:
            steps = [e.action for e in rig.store.events(env=env, app=app)]
            assert steps == ["gate", "gate", "gate", "install", "switch", "deploy"]
        assert rig.store.pending_intents() == []
    finally:
        rig.close()


def test_plan_previews_come_from_deployers_that_can_tell(rig: Rig) -> None:
    from qrelease.deployers.base import DeployError

    class PreviewingDeployer(MemoryDeployer):
        def what_if(self, env, manifest):  # type: ignore[no-untyped-def]
            if manifest.app == "qrng":
                raise DeployError("ARM said no")
            return [f"Modify Microsoft.Web/sites/{manifest.app}-{env.environment}"]

    rig.deployer = PreviewingDeployer()
    snapshot, the_plan = rig.engine.plan()
    previews = rig.engine.previews(snapshot, the_plan)
    assert previews[("dev", "bell-service")] == ["Modify Microsoft.Web/sites/bell-service-dev"]
    assert previews[("dev", "qrng")] == ["what-if failed: ARM said no"]
    rig.deployer = MemoryDeployer()
    assert rig.engine.previews(*rig.engine.plan()) == {}


def test_a_typo_row_disappears_once_the_pin_is_fixed(rig: Rig) -> None:
    rig.engine.reconcile()
    dev = rig.repo.read("releases/dev.yaml")
    rig.repo.write(
        "releases/dev.yaml", dev.replace("  qrng: 0.2.0\n", "  qrng: 0.2.0\n  bell-servce: 1.2.0\n")
    )
    rig.repo.commit("typo")
    typo = rig.engine.reconcile()
    row = rig.state("dev", "bell-servce")
    assert (row.rollout, row.health) == (Rollout.HELD, Health.MISSING)
    assert "no manifest manifests/bell-servce/1.2.0.yaml" in row.message
    assert not typo.converged
    rig.repo.write("releases/dev.yaml", dev)
    rig.repo.commit("fix the typo")
    fixed = rig.engine.reconcile()
    assert rig.store.get_observed("dev", "bell-servce") is None
    assert ("dev", "bell-servce") not in {row.key for row in fixed.rows}
    forgotten = rig.store.last_event("dev", "bell-servce")
    assert forgotten is not None and (forgotten.action, forgotten.outcome) == ("prune", "Forgotten")
    assert ("remove", "dev", "bell-servce") not in rig.deployer.calls  # nothing was deployed
    assert fixed.converged


def test_the_target_shown_is_never_a_failed_attempts(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    path = "manifests/bell-service/1.3.0.yaml"
    text = rig.repo.read("manifests/bell-service/1.1.0.yaml").replace("1.1.0", "1.3.0")
    rig.repo.write(path, text.replace("ionq.qpu.aria-1", "ionq.qpu.aria-9"))
    rig.repo.commit("bell-service 1.3.0 on aria-9")
    rig.quantum.failing_programs["manifests/bell-service/programs/bell.qs"] = "unknown target"
    rig.pin("prod", "bell-service", "1.3.0")
    rig.engine.reconcile()
    assert rig.state("prod", "bell-service").target == "ionq.qpu.aria-9"  # what is wanted
    rig.pin("prod", "bell-service", "9.9.9")
    rig.engine.reconcile()
    state = rig.state("prod", "bell-service")
    assert (state.deployed, state.target) == ("1.0.0", "ionq.simulator")  # what runs


def test_a_transient_failure_is_retried_with_backoff_and_says_so(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.deployer.unreachable.add("1.1.0")
    rig.pin("prod", "bell-service", "1.1.0")
    first = rig.engine.reconcile()
    state = rig.state("prod", "bell-service")
    start = rig.now
    assert outcomes(first)[("prod", "bell-service")] == Rollout.FAILED and not first.converged
    assert state.retry_at == start + timedelta(seconds=30) and state.attempts == 1
    assert "retrying at 11:00:30 UTC (attempt 1)" in state.message
    assert first.next_retry_at == state.retry_at
    installs = rig.deployer.install_count
    rig.now = start + timedelta(seconds=10)
    assert ("prod", "bell-service") not in outcomes(rig.engine.reconcile())  # not yet due
    assert rig.deployer.install_count == installs
    rig.now = start + timedelta(seconds=31)
    again = rig.engine.reconcile()
    assert rig.state("prod", "bell-service").attempts == 2
    assert rig.state("prod", "bell-service").retry_at == rig.now + timedelta(seconds=60)
    rig.deployer.unreachable.clear()  # the wheel source is back
    fixed = rig.engine.reconcile(retry=Retry.TRANSIENT)  # what `qrelease reconcile` asks for
    assert outcomes(again)[("prod", "bell-service")] == Rollout.FAILED
    assert outcomes(fixed)[("prod", "bell-service")] == Rollout.SUCCEEDED and fixed.converged


def test_a_deterministic_failure_waits_for_a_new_revision_or_an_explicit_retry(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.deployer.fail_install.add("1.1.0")
    rig.pin("prod", "bell-service", "1.1.0")
    rig.engine.reconcile()
    state = rig.state("prod", "bell-service")
    assert state.retry_at is None and state.message.endswith(
        "waiting for a new revision or `qrelease reconcile --retry`"
    )
    rig.now += timedelta(hours=1)
    assert rig.engine.reconcile(retry=Retry.TRANSIENT).converged is False
    assert rig.deployer.install_count == 7  # six first installs and one failed attempt
    rig.deployer.fail_install.clear()
    assert rig.engine.reconcile(retry=Retry.ALL).converged


class CountingStore:
    """A store that counts the calls the engine makes, to show what an idle pass costs."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if callable(attribute):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return attribute(*args, **kwargs)

            return counted
        return attribute


def test_an_idle_pass_reads_every_row_once_and_writes_nothing(rig: Rig) -> None:
    rig.engine.reconcile()
    counting = CountingStore(rig.store)
    rig.engine.store = counting  # type: ignore[assignment]
    events = rig.store.count_events()
    report = rig.engine.reconcile()
    assert counting.calls["observed_by_key"] == 1
    assert counting.calls["get_observed"] == 0 and counting.calls["iter_events"] == 0
    assert counting.calls["put_observed"] == counting.calls["put_observed_many"] == 0
    assert rig.store.count_events() == events and report.converged
    assert report.events[0] > report.events[1]  # an empty range: nothing appended


def test_a_new_revision_reuses_what_deployers_reported_and_a_fresh_pass_finds_drift(
    rig: Rig,
) -> None:
    rig.engine.reconcile()
    rig.soaked()  # prod's soak (1h) has passed for what staging runs
    rig.engine.reconcile(fresh=False)  # asks again only about what the first pass deployed
    rig.deployer.drift[("dev", "qrng")] = "qrelease.lock.json is missing"  # edited by hand
    before = len(rig.deployer.calls)
    rig.pin("prod", "bell-service", "1.1.0")
    revision_pass = rig.engine.reconcile(fresh=False)
    assert [c for c in rig.deployer.calls[before:] if c[0] == "observe"] == []
    assert outcomes(revision_pass) == {("prod", "bell-service"): Rollout.SUCCEEDED}
    resync = rig.engine.reconcile(fresh=True)
    assert outcomes(resync) == {("dev", "qrng"): Rollout.SUCCEEDED}  # the repair
    (repair,) = [app for app in resync.apps if app.key == ("dev", "qrng")]
    assert repair.row is not None and repair.row.sync == Sync.SYNCED
    after = len(rig.deployer.calls)
    rig.engine.reconcile(fresh=False)  # keys the engine acted on are asked again
    observed = {c[1:] for c in rig.deployer.calls[after:] if c[0] == "observe"}
    assert observed == {("dev", "qrng")}
