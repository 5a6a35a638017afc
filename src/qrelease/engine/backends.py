"""Which deployer and quantum backend serve an environment: the engine's only view of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qrelease.deployers.base import Deployer
from qrelease.model.environment import Environment
from qrelease.quantum.base import QuantumBackend


@dataclass(frozen=True)
class Backends:
    """Which deployer and quantum backend serve an environment."""

    deployer_for: Callable[[Environment], Deployer]
    quantum_for: Callable[[Environment], QuantumBackend]
