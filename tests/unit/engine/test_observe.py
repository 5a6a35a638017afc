"""Observe between resyncs reads only what moved; the resync still finds drift from outside."""

from __future__ import annotations

from pathlib import Path

from qrelease.deployers.venv import VenvDeployer
from qrelease.engine.backends import Backends
from qrelease.engine.observe import Observer, Scope
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.loader import Loader
from qrelease.source.repo import GitRepo
from tests.helpers.gitops import GitOpsRepo
from tests.helpers.releases import age, lay_out_release, point_current

RUNNING = {"bell-service": "1.2.0", "qrng": "0.2.0"}  # the examples' dev pins


def test_a_hand_swap_is_seen_at_once_and_an_edit_inside_a_release_on_the_resync(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    for app, version in RUNNING.items():
        lay_out_release(state, "dev", app, version)
        lay_out_release(state, "dev", app, "0.1.0")
        point_current(state, "dev", app, version)
    age(state / "envs")
    deployer = VenvDeployer(state)
    observer = Observer(
        Backends(deployer_for=lambda env: deployer, quantum_for=lambda env: MemoryQuantum())
    )
    with GitRepo(example_repo.path) as repo:
        snapshot = Loader(repo).load("HEAD")

    def seen(fresh: bool = False) -> dict[str, tuple[str | None, str | None]]:
        found = observer.observe(snapshot, {}, Scope("dev"), fresh=fresh).seen
        return {app: (found[("dev", app)].current, found[("dev", app)].drift) for app in RUNNING}

    assert seen(fresh=True) == {app: (version, None) for app, version in RUNNING.items()}
    reads = deployer.observed.reads
    assert seen() == {app: (version, None) for app, version in RUNNING.items()}
    assert deployer.observed.reads == reads  # nothing moved: nothing read

    point_current(state, "dev", "qrng", "0.1.0")  # someone switched it by hand
    program = state / "envs/dev/bell-service/releases/1.2.0/program.qir"
    with program.open("r+") as handle:  # and edited a file inside a release, in place
        handle.write("x")
    age(state / "envs")
    assert seen() == {"bell-service": ("1.2.0", None), "qrng": ("0.1.0", None)}
    assert deployer.observed.reads == reads + 1  # only the app that moved was read

    drift = "release 1.2.0: program.qir does not match the lock's qir_sha256"
    assert seen(fresh=True) == {"bell-service": ("1.2.0", drift), "qrng": ("0.1.0", None)}
    assert deployer.observed.reads == reads + 3  # the resync read every app
