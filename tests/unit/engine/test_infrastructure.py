"""The pass's quantum infrastructure step, with in-memory fakes, a real git repo and store.

Staging's quantum side is an Azure workspace with an infrastructure template here; the
MemoryProvisioner deploys it when the environment's quantum block changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qrelease.deployers.base import Provisioner
from qrelease.deployers.memory import MemoryDeployer, MemoryProvisioner
from qrelease.engine import Backends, Engine, PassReport
from qrelease.model.environment import Environment
from qrelease.model.vocabulary import Health, Rollout, Sync
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import StateStore, open_store
from tests.helpers.gitops import GitOpsRepo

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
AZURE_QUANTUM = (
    "quantum: {kind: azure, subscription: s-1, resource_group: rg-quantum-staging,"
    " workspace: qws-staging, location: westeurope, infrastructure: infra/quantum.json}"
)


class Rig:
    """An engine over fakes whose staging environment has quantum infrastructure."""

    def __init__(self, repo: GitOpsRepo, state: Path, **engine: Any) -> None:
        self.repo = repo
        self.deployer = MemoryDeployer()
        self.quantum = MemoryQuantum()
        self.provisioner = MemoryProvisioner()
        self.store: StateStore = open_store(state)
        self.git = GitRepo(repo.path)
        backends = Backends(lambda env: self.deployer, lambda env: self.quantum, self.provisioned)
        self.engine = Engine(self.git, self.store, backends, clock=lambda: T0, **engine)

    def provisioned(self, env: Environment) -> Provisioner | None:
        """The provisioner for environments that name a template, as wiring decides."""
        return self.provisioner if getattr(env.quantum, "infrastructure", None) else None

    def close(self) -> None:
        self.store.close()
        self.git.close()

    def events(self, env: str, action: str) -> list[Any]:
        return [e for e in self.store.iter_events(env=env) if e.action == action]

    def edit(self, path: str, old: str, new: str) -> None:
        self.repo.write(path, self.repo.read(path).replace(old, new))
        self.repo.commit(f"edit {path}")


@pytest.fixture
def rig(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[Rig]:
    example_repo.write(
        "releases/staging.yaml",
        example_repo.read("releases/staging.yaml").replace("quantum: {kind: local}", AZURE_QUANTUM),
    )
    example_repo.commit("staging's quantum side on Azure")
    the_rig = Rig(example_repo, tmp_path / "state")
    yield the_rig
    the_rig.close()


def outcomes(report: PassReport, env: str) -> dict[str, Rollout | None]:
    return {app.app: app.outcome for app in report.apps if app.env == env}


def test_the_infrastructure_is_deployed_before_the_environments_gates(rig: Rig) -> None:
    result = rig.engine.reconcile()

    assert rig.provisioner.calls == [("deployed", "staging")]  # local environments: none
    [event] = rig.events("staging", "infrastructure")
    assert (event.app, event.outcome, event.revision) == ("", "Succeeded", result.revision)
    assert event.details["deployment"] == "qrelease-quantum-staging"
    assert event.details["resource_group"] == "rg-quantum-staging"
    assert event.details["outputs"] == ["workspaceEndpoint"]  # names, never values
    assert event.details["sha256"] == rig.provisioner.deployed["staging"]
    first_gate = rig.events("staging", "gate")[0]
    assert event.seq < first_gate.seq
    assert result.events[0] <= event.seq <= result.events[1]  # the pass's own events
    assert set(outcomes(result, "staging").values()) == {Rollout.SUCCEEDED}


def test_an_unchanged_infrastructure_is_not_deployed_again_nor_recorded(rig: Rig) -> None:
    rig.engine.reconcile()

    rig.engine.reconcile()

    assert rig.provisioner.calls == [("deployed", "staging"), ("unchanged", "staging")]
    assert len(rig.events("staging", "infrastructure")) == 1


def test_a_changed_infrastructure_is_deployed_by_the_next_pass(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.edit("releases/staging.yaml", "location: westeurope", "location: northeurope")

    rig.engine.reconcile()

    assert [call[0] for call in rig.provisioner.calls] == ["deployed", "deployed"]
    assert [e.outcome for e in rig.events("staging", "infrastructure")] == ["Succeeded"] * 2


def test_a_failure_holds_that_environments_rollouts_and_no_other(rig: Rig) -> None:
    rig.provisioner.fail["staging"] = "staging: deploying qws failed (ARM: DeploymentFailed: x)"

    result = rig.engine.reconcile()

    assert set(outcomes(result, "staging").values()) == {Rollout.HELD}
    assert set(outcomes(result, "dev").values()) == {Rollout.SUCCEEDED}
    state = rig.store.get_observed("staging", "bell-service")
    assert state is not None
    assert (state.deployed, state.rollout, state.rollout_step) == (None, Rollout.HELD,
                                                                  "infrastructure")  # fmt: skip
    assert state.message == (
        "quantum infrastructure: staging: deploying qws failed (ARM: DeploymentFailed: x)"
    )
    assert not any(path for path in rig.quantum.calls if "staging" in path)
    assert not any(call[1] == "staging" for call in rig.deployer.calls if call[0] == "prepare")
    [event] = rig.events("staging", "infrastructure")
    assert (event.outcome, event.reason) == ("Failed", rig.provisioner.fail["staging"])


def test_the_same_failure_is_recorded_once_and_the_hold_lifts_when_it_is_fixed(rig: Rig) -> None:
    rig.provisioner.fail["staging"] = "staging: ARM unavailable (retried 4 times: HTTP 503)"
    rig.engine.reconcile()
    rig.engine.reconcile()
    holds = len(rig.events("staging", "hold"))

    del rig.provisioner.fail["staging"]
    fixed = rig.engine.reconcile()

    assert [e.outcome for e in rig.events("staging", "infrastructure")] == ["Failed", "Succeeded"]
    assert holds == 2  # one per app, not one per pass
    assert set(outcomes(fixed, "staging").values()) == {Rollout.SUCCEEDED}


def test_an_untrusted_revision_deploys_no_infrastructure(
    example_repo: GitOpsRepo, tmp_path: Path, rig: Rig
) -> None:
    refusing = Rig(example_repo, tmp_path / "other", verify=lambda revision: "not signed")
    try:
        refusing.engine.reconcile()
    finally:
        refusing.close()

    assert refusing.provisioner.calls == []


def test_only_the_environments_of_the_pass_are_provisioned(rig: Rig) -> None:
    rig.engine.reconcile(env_filter="dev")

    assert rig.provisioner.calls == []


# -- what runs, when a deployer cannot tell ----------------------------------------------


def test_an_app_whose_deployer_cannot_read_what_runs_is_held_and_keeps_its_row(rig: Rig) -> None:
    rig.engine.reconcile()
    rig.deployer.unreadable[("dev", "qrng")] = "listing failed (HTTP 404; request id 7)"
    installs = rig.deployer.install_count

    rig.engine.reconcile()
    rig.deployer.unreadable[("dev", "qrng")] = "listing failed (HTTP 404; request id 8)"
    result = rig.engine.reconcile()

    state = rig.store.get_observed("dev", "qrng")
    assert state is not None
    assert state.deployed == "0.2.0"  # the store's word: the live release does not vanish
    assert (state.sync, state.health) == (Sync.UNKNOWN, Health.UNKNOWN)
    assert (state.rollout, state.rollout_step) == (Rollout.HELD, "observe")
    assert state.message == "cannot read what runs: listing failed (HTTP 404; request id 8)"
    assert rig.deployer.install_count == installs
    assert len([e for e in rig.events("dev", "hold") if e.app == "qrng"]) == 1
    assert outcomes(result, "dev")["qrng"] is Rollout.HELD
    del rig.deployer.unreadable[("dev", "qrng")]
    rig.engine.reconcile(fresh=False)  # an error was never kept: the deployer is asked again
    healed = rig.store.get_observed("dev", "qrng")
    assert healed is not None and (healed.sync, healed.health) == (Sync.SYNCED, Health.HEALTHY)
