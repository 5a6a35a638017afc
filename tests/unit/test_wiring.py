"""Wiring: which backend serves which environment, as the CLI and the daemon get them."""

from __future__ import annotations

import os

os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")

from datetime import timedelta
from pathlib import Path
from typing import Any

from qrelease.gatequeue import job_key, job_payload
from qrelease.model.environment import Environment
from qrelease.model.manifest import Quantum
from qrelease.quantum.base import ProgramSource
from qrelease.quantum.sandbox import GateLimits
from qrelease.wiring import GateQueue, LocalBackends, open_state
from tests.helpers import PROJECT_ROOT

BELL_PATH = "manifests/bell-service/programs/bell.qs"
BELL = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}

AZURE_QUANTUM = {
    "kind": "azure",
    "subscription": "s-1",
    "resource_group": "rg-quantum",
    "workspace": "qws",
    "location": "westeurope",
}
ARM = {"kind": "arm", "subscription": "s-1", "resource_group": "rg-app", "template": "a.json"}


def environment(quantum: dict[str, Any], classical: dict[str, Any] | None = None) -> Environment:
    fields: dict[str, Any] = {"environment": "e", "quantum": quantum}
    if classical is not None:
        fields["classical"] = classical
    return Environment.model_validate(fields)


def test_only_environments_naming_quantum_infrastructure_are_provisioned(tmp_path: Path) -> None:
    backends = LocalBackends(tmp_path)
    with_template = environment(AZURE_QUANTUM | {"infrastructure": "infra/quantum.json"})

    provisioner = backends.provisioner_for(with_template)

    assert backends.provisioner_for(environment({"kind": "local"})) is None
    assert backends.provisioner_for(environment(AZURE_QUANTUM)) is None
    assert provisioner is not None
    assert provisioner is backends.deployer_for(environment({"kind": "local"}, ARM))  # one ARM
    assert backends.backends().provisioner_for(with_template) is provisioner


def test_with_a_gate_queue_local_gates_are_jobs_in_the_store(tmp_path: Path) -> None:
    """`[gates] queue`: the local qdk backend asks the store; with no worker about and
    `claim_after` 0s the controller claims and runs its own job, and says so."""
    program = ProgramSource(BELL_PATH, (PROJECT_ROOT / BELL_PATH).read_text())
    quantum = Quantum.model_validate(
        {
            "program": "programs/bell.qs",
            "entry": "Bell.Main()",
            "target": {"id": "ionq.simulator", "profile": "Base"},
            "gates": {"smoke": {"shots": 1000, "seed": 3, "expect": BELL}},
        }
    )
    queue = GateQueue(tmp_path, None, "controller-a", claim_after=timedelta(0))
    local = LocalBackends(tmp_path, gate_limits=GateLimits(workers=1), gate_queue=queue)
    backend = local.quantum_for(environment({"kind": "local"}))
    try:
        report = backend.run_gates(program, quantum, None)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()

    assert report.passed, [r.message for r in report.results]
    key = job_key(job_payload(program, quantum, None))
    assert {r.details["gate_job"] for r in report.results} == {key[:16]}
    assert {r.details["worker"] for r in report.results} == {"controller-a"}
    with open_state(tmp_path) as store:
        job = store.get_gate_job(key)
    assert job is not None and (job.state, job.attempts, job.worker) == ("done", 1, "controller-a")
