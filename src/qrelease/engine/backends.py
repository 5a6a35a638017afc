"""Which deployer, quantum backend and provisioner serve an environment: the engine's only view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qrelease.deployers.base import Deployer, Provisioner
from qrelease.model.environment import Environment
from qrelease.quantum.base import QuantumBackend


def no_provisioner(env: Environment) -> Provisioner | None:
    """No environment has quantum infrastructure to deploy."""
    return None


@dataclass(frozen=True)
class Backends:
    """Which deployer, quantum backend and infrastructure provisioner serve an environment.

    `provisioner_for` returns None for an environment without `quantum.infrastructure`.
    """

    deployer_for: Callable[[Environment], Deployer]
    quantum_for: Callable[[Environment], QuantumBackend]
    provisioner_for: Callable[[Environment], Provisioner | None] = no_provisioner
