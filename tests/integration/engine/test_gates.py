"""The plan's gates on a pool of real qdk workers, and results reused across environments."""

from __future__ import annotations

import os

os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")

from pathlib import Path

import pytest

from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.vocabulary import Rollout
from qrelease.quantum.cache import GateCache
from qrelease.quantum.qdk import QdkBackend
from qrelease.quantum.sandbox import GateLimits, GatePool
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from tests.helpers.gitops import GitOpsRepo, relaxed

pytestmark = pytest.mark.slow


def test_gates_run_on_the_pool_and_are_reused_across_environments_and_passes(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    for env in ("staging", "prod"):
        path = f"releases/{env}.yaml"
        example_repo.write(path, relaxed(example_repo.read(path)))
    example_repo.commit("no soak or windows: the test runs on the real clock")
    pool = GatePool(GateLimits(seconds=120, workers=2))
    cache = GateCache(tmp_path / "cache")
    qdk = QdkBackend(pool, cache=cache)
    deployer = MemoryDeployer()
    backends = Backends(lambda env: deployer, lambda env: qdk, gate_workers=2, gate_cache=cache)
    store, git = open_store(tmp_path / "state"), GitRepo(example_repo.path)
    try:
        engine = Engine(git, store, backends)
        first = engine.reconcile()
        assert {app.outcome for app in first.apps} == {Rollout.SUCCEEDED}
        assert pool.started == 2  # both workers of the pool ran gates
        # qrng 0.2.0 runs in dev and staging: its gates ran once
        assert qdk.reuse is not None and (qdk.reuse.computed, qdk.reuse.reused) == (5, 1)
        gates = store.events(actions=["gate"])
        dev = {e.details["gate"]: e for e in gates if (e.env, e.app) == ("dev", "qrng")}
        staging = [e for e in gates if (e.env, e.app) == ("staging", "qrng")]
        assert len(staging) == 3
        for event in staging:
            origin = dev[event.details["gate"]]
            assert event.details["reused_from"]["seq"] == origin.seq
            assert event.details["cache_key"] == origin.details["cache_key"]
            assert f"(reused from dev/qrng 0.2.0, event {origin.seq})" in event.reason
        # a later pass that puts 0.2.0 into prod runs no gate: all from the cache
        prod = "releases/prod.yaml"
        example_repo.write(prod, example_repo.read(prod).replace("qrng: 0.1.0", "qrng: 0.2.0"))
        example_repo.commit("qrng 0.2.0 in prod")
        second = engine.reconcile()
        assert {a.key: a.outcome for a in second.apps}[("prod", "qrng")] is Rollout.SUCCEEDED
        assert (qdk.reuse.computed, qdk.reuse.reused) == (5, 2)
        prod_gates = [e for e in store.events(actions=["gate"]) if e.env == "prod"][-3:]
        assert all(e.details["reused_from"]["env"] == "dev" for e in prod_gates)
    finally:
        store.close()
        git.close()
        pool.close()
