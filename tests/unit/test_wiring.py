"""Wiring: which backend serves which environment, as the CLI and the daemon get them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qrelease.model.environment import Environment
from qrelease.wiring import LocalBackends

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
