"""The gates of a whole plan run first, side by side, before anything is installed.

The engine over the in-memory deployer, a quantum fake that logs when its gates run, a
real git repo and a real SQLite store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qrelease.deployers.base import Prepared, ReleaseLock
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.environment import Environment
from qrelease.model.manifest import Quantum, ReleaseManifest
from qrelease.model.vocabulary import Rollout
from qrelease.quantum.base import EstimateSummary, GateReport, ProgramSource
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import StateStore, open_store
from tests.helpers.gitops import GitOpsRepo


@dataclass
class Journal:
    """One log of gate runs and installs, in the order they happened."""

    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


class LoggedQuantum(MemoryQuantum):
    """Gates that pass, log themselves, and (given a barrier) wait for company."""

    def __init__(self, journal: Journal, barrier: threading.Barrier | None = None) -> None:
        super().__init__()
        self.journal = journal
        self.barrier = barrier

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        self.journal.add(f"gates {program.path}")
        if self.barrier is not None:
            self.barrier.wait()  # breaks (and fails the gates) unless a second one comes
        return super().run_gates(program, quantum, baseline)


class LoggedDeployer(MemoryDeployer):
    """The memory deployer, logging each install."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def prepare(
        self, env: Environment, manifest: ReleaseManifest, lock: ReleaseLock, qir: str
    ) -> Prepared:
        self.journal.add(f"install {env.environment}/{manifest.app}")
        return super().prepare(env, manifest, lock, qir)


@dataclass
class Rig:
    engine: Engine
    journal: Journal
    quantum: LoggedQuantum


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[MakeRig]:
    opened: list[tuple[StateStore, GitRepo]] = []

    def make(workers: int, barrier: threading.Barrier | None = None) -> Rig:
        journal = Journal()
        quantum = LoggedQuantum(journal, barrier)
        deployer = LoggedDeployer(journal)
        store = open_store(tmp_path / f"state-{len(opened)}")
        git = GitRepo(example_repo.path)
        opened.append((store, git))
        backends = Backends(lambda env: deployer, lambda env: quantum, gate_workers=workers)
        return Rig(Engine(git, store, backends, concurrency=2), journal, quantum)

    yield make
    for store, git in opened:
        store.close()
        git.close()


def test_every_gate_of_the_plan_runs_before_anything_is_installed(make_rig: MakeRig) -> None:
    rig = make_rig(workers=1)
    report = rig.engine.reconcile()
    assert {app.outcome for app in report.apps} == {Rollout.SUCCEEDED}
    lines = rig.journal.lines
    first_install = next(i for i, line in enumerate(lines) if line.startswith("install"))
    assert all(line.startswith("gates") for line in lines[:first_install])
    assert sum(line.startswith("gates") for line in lines) == 6  # 3 environments x 2 apps
    assert not any(line.startswith("gates") for line in lines[first_install:])


def test_the_gates_run_side_by_side_on_the_pool(make_rig: MakeRig) -> None:
    barrier = threading.Barrier(2, timeout=20)  # gates run one at a time would break it
    rig = make_rig(workers=2, barrier=barrier)
    report = rig.engine.reconcile()
    assert {app.outcome for app in report.apps} == {Rollout.SUCCEEDED}
    assert not barrier.broken


def test_a_release_whose_gates_raise_fails_alone(make_rig: MakeRig) -> None:
    rig = make_rig(workers=2)
    original = rig.quantum.run_gates

    def flaky(
        program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        if "bell_reset" in program.path:
            raise RuntimeError("the gate worker could not start")
        return original(program, quantum, baseline)

    rig.quantum.run_gates = flaky  # type: ignore[method-assign]
    report = rig.engine.reconcile()
    failed = {app.key for app in report.apps if app.outcome is Rollout.FAILED}
    assert failed == {("dev", "bell-service")}  # 1.2.0, the only release of bell_reset.qs
    dev = next(app for app in report.apps if app.key == ("dev", "bell-service"))
    assert "the gate worker could not start" in dev.reason
