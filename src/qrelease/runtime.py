"""Wiring: the concrete store, deployers and quantum backends an environment file asks for.

Backends for Azure are imported only when an environment uses them, so the CLI and the
daemon start without loading the Azure SDKs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qrelease.deployers.base import Deployer
from qrelease.engine import Backends, Engine, Progress
from qrelease.model.environment import Environment
from qrelease.quantum.base import QuantumBackend
from qrelease.source.repo import GitRepo
from qrelease.store.sqlite import Store

DB_NAME = "qrelease.db"


class LocalBackends:
    """One venv deployer and one qdk backend shared by every local environment."""

    def __init__(self, state_dir: Path) -> None:
        from qrelease.deployers.venv import VenvDeployer

        self.state_dir = state_dir
        self.venv = VenvDeployer(state_dir)
        self._qdk: QuantumBackend | None = None

    def deployer_for(self, env: Environment) -> Deployer:
        """The deployer of an environment's classical side."""
        if env.classical.kind != "venv":
            raise NotImplementedError(f"classical kind {env.classical.kind!r} is not available")
        return self.venv

    def quantum_for(self, env: Environment) -> QuantumBackend:
        """The backend of an environment's quantum side (qdk loads on first use)."""
        if env.quantum.kind != "local":
            raise NotImplementedError(f"quantum kind {env.quantum.kind!r} is not available")
        if self._qdk is None:
            from qrelease.quantum.qdk import QdkBackend

            self._qdk = QdkBackend()
        return self._qdk

    def backends(self) -> Backends:
        """The engine's view of these backends."""
        return Backends(deployer_for=self.deployer_for, quantum_for=self.quantum_for)

    def recover(self) -> None:
        """Clean up what an interrupted install or switch left on disk."""
        self.venv.recover()


def open_store(state_dir: Path) -> Store:
    """The state dir's SQLite store (created on first use)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return Store.open(state_dir / DB_NAME)


@contextmanager
def engine(
    repo: GitRepo, state_dir: Path, progress: Progress | None = None, concurrency: int = 1
) -> Iterator[Engine]:
    """An engine over the local backends, with the store closed afterwards."""
    local = LocalBackends(state_dir)
    local.recover()
    store = open_store(state_dir)
    try:
        yield Engine(
            repo, store, local.backends(), progress=progress or _quiet, concurrency=concurrency
        )
    finally:
        store.close()


def _quiet(env: str, app: str, step: str) -> None:
    """Progress sink that discards."""
