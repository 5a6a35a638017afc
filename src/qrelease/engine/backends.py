"""Which deployer and quantum backend serve an environment: the engine's only view of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qrelease.deployers.base import Deployer
from qrelease.model.environment import Environment
from qrelease.quantum.base import QuantumBackend
from qrelease.quantum.cache import GateCache


@dataclass(frozen=True)
class Backends:
    """Which deployer and quantum backend serve an environment.

    `gate_workers` is how many releases' gates may run side by side (the size of the
    quantum backends' worker pool); `gate_cache` is where those backends keep results by
    content: the engine marks a gate event that repeats a recorded result `reused_from`
    the event that first recorded it.
    """

    deployer_for: Callable[[Environment], Deployer]
    quantum_for: Callable[[Environment], QuantumBackend]
    gate_workers: int = 1
    gate_cache: GateCache | None = None
