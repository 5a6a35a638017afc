"""Which deployer, quantum backend and provisioner serve an environment: the engine's only view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qrelease.deployers.base import Deployer, Provisioner
from qrelease.model.environment import Environment
from qrelease.quantum.base import JobReader, QuantumBackend
from qrelease.quantum.cache import GateCache


def no_provisioner(env: Environment) -> Provisioner | None:
    """No environment has quantum infrastructure to deploy."""
    return None


def no_jobs(env: Environment) -> JobReader | None:
    """No environment's quantum jobs are read."""
    return None


@dataclass(frozen=True)
class Backends:
    """Which deployer, quantum backend and infrastructure provisioner serve an environment.

    `provisioner_for` returns None for an environment without `quantum.infrastructure`;
    `jobs_for` returns where an environment's quantum jobs are read (None: nowhere).

    `gate_workers` is how many releases' gates may run side by side (the size of the
    quantum backends' worker pool); `gate_cache` is where those backends keep results by
    content: the engine marks a gate event that repeats a recorded result `reused_from`
    the event that first recorded it.
    """

    deployer_for: Callable[[Environment], Deployer]
    quantum_for: Callable[[Environment], QuantumBackend]
    provisioner_for: Callable[[Environment], Provisioner | None] = no_provisioner
    jobs_for: Callable[[Environment], JobReader | None] = no_jobs
    gate_workers: int = 1
    gate_cache: GateCache | None = None
