"""History tells the story: every event's reason in table, JSON and CSV, one entry per promotion."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from tests.helpers.gitops import GitOpsRepo

GATE_FAILURE = "UseOfDynamicBool at 3:5: a Base target cannot branch on a measurement"


@pytest.fixture
def failed_rollouts(example_repo: GitOpsRepo, tmp_path: Path) -> Path:
    """A state dir whose store holds a gate failure and an auto-rollback in prod."""
    state = tmp_path / "state"
    deployer, quantum = MemoryDeployer(), MemoryQuantum()
    backends = Backends(lambda env: deployer, lambda env: quantum)
    original = deployer.check_health

    def fails_when_live(env, manifest, *, current):  # type: ignore[no-untyped-def]
        result = original(env, manifest, current=current)
        if current and manifest.version == "1.1.0":
            return type(result)(False, "self-check exited 3")
        return result

    now = [datetime(2026, 5, 4, 9, 0, tzinfo=UTC)]  # a Monday: no deny window
    with open_store(state) as store, GitRepo(example_repo.path) as repo:
        engine = Engine(repo, store, backends, clock=lambda: now[0])
        engine.reconcile()  # staging runs 1.1.0 Healthy: prod may take it once soaked
        now[0] += timedelta(hours=2)
        deployer.check_health = fails_when_live  # type: ignore[method-assign]
        prod = example_repo.read("releases/prod.yaml")
        prod = prod.replace("bell-service: 1.0.0", "bell-service: 1.1.0")
        example_repo.write("releases/prod.yaml", prod.replace("qrng: 0.1.0", "qrng: 0.2.0"))
        example_repo.commit("prod: bell-service 1.1.0, qrng 0.2.0")
        quantum.failing_programs["manifests/qrng/programs/qrng.qs"] = GATE_FAILURE
        engine.reconcile()
    return state


def history(repo: GitOpsRepo, state: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["history", "--repo", str(repo.path), "--state", str(state), "--env", "prod", *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_failed_deploys_and_auto_rollbacks_say_why_in_every_format(
    example_repo: GitOpsRepo, failed_rollouts: Path
) -> None:
    rows = json.loads(history(example_repo, failed_rollouts, "--format", "json"))
    failed = {(r["app"], r["action"]): r for r in rows if r["outcome"] == "Failed"}
    assert GATE_FAILURE in failed[("qrng", "deploy")]["reason"]
    assert "self-check exited 3" in failed[("bell-service", "deploy")]["reason"]
    (rollback,) = [r for r in rows if r["action"] == "auto-rollback"]
    assert rollback["outcome"] == "Restored" and "self-check exited 3" in rollback["reason"]
    assert all(
        r["reason"] for r in rows if r["action"] in ("deploy", "gate") and r["outcome"] != "Healthy"
    )
    table = history(example_repo, failed_rollouts)
    assert GATE_FAILURE in table and "self-check exited 3; rolled back to 1.0.0" in table
    parsed = list(
        csv.DictReader(io.StringIO(history(example_repo, failed_rollouts, "--format", "csv")))
    )
    assert any(GATE_FAILURE in row["reason"] for row in parsed if row["outcome"] == "Failed")
