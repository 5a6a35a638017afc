"""Wiring: the concrete store, deployers and quantum backends an environment file asks for.

Backends for Azure are imported only when an environment uses them, so the CLI and the
daemon start without loading the Azure SDKs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from qrelease.deployers.base import Deployer, DeployError
from qrelease.engine import Backends, Engine, Progress, no_progress
from qrelease.model.environment import AzureQuantum, Environment
from qrelease.quantum.base import QuantumBackend
from qrelease.quantum.sandbox import GateLimits
from qrelease.source.repo import GitRepo
from qrelease.store.sqlite import Store

DB_NAME = "qrelease.db"
_HEAD = "HEAD"


TemplateReader = Callable[[str], bytes | None]


class LocalBackends:
    """The backends each environment asks for, created on first use and shared.

    Local environments share one venv deployer and one qdk backend. ARM environments share
    one ARM deployer, which reads templates through `read_template` (a repo path -> bytes at
    the revision being reconciled). Each Azure Quantum environment gets its own backend,
    which runs the local qdk gates through the shared qdk backend.
    """

    def __init__(
        self,
        state_dir: Path,
        read_template: TemplateReader | None = None,
        gate_limits: GateLimits | None = None,
    ) -> None:
        from qrelease.deployers.venv import VenvDeployer

        self.state_dir = state_dir
        self.gate_limits = gate_limits
        self.venv = VenvDeployer(state_dir)
        self.read_template = read_template or _no_templates
        self._qdk: QuantumBackend | None = None
        self._arm: Deployer | None = None
        self._azure: dict[str, tuple[AzureQuantum, QuantumBackend]] = {}
        self._lock = threading.Lock()

    def deployer_for(self, env: Environment) -> Deployer:
        """The deployer of an environment's classical side."""
        if env.classical.kind == "venv":
            return self.venv
        with self._lock:
            if self._arm is None:
                from qrelease.deployers.arm import ArmDeployer

                self._arm = ArmDeployer(self.read_template)
            return self._arm

    def quantum_for(self, env: Environment) -> QuantumBackend:
        """The backend of an environment's quantum side (SDKs load on first use)."""
        with self._lock:
            if isinstance(env.quantum, AzureQuantum):
                return self._azure_backend(env, env.quantum)
            return self._local_qdk()

    def _local_qdk(self) -> QuantumBackend:
        if self._qdk is None:
            from qrelease.quantum.qdk import QdkBackend
            from qrelease.quantum.sandbox import GateSandbox

            limits = self.gate_limits
            self._qdk = QdkBackend(GateSandbox(limits) if limits else None)
        return self._qdk

    def _azure_backend(self, env: Environment, settings: AzureQuantum) -> QuantumBackend:
        known = self._azure.get(env.environment)
        if known is not None and known[0] == settings:
            return known[1]
        from qrelease.quantum.azure import AzureQuantumBackend

        backend = AzureQuantumBackend(
            settings, environment=env.environment, local=self._local_qdk()
        )
        self._azure[env.environment] = (settings, backend)
        return backend

    def backends(self) -> Backends:
        """The engine's view of these backends."""
        return Backends(deployer_for=self.deployer_for, quantum_for=self.quantum_for)

    def recover(self) -> None:
        """Clean up what an interrupted install or switch left on disk."""
        self.venv.recover()


def _no_templates(path: str) -> bytes | None:
    """Template reader for callers that have no repository at hand."""
    raise DeployError(f"cannot read {path}: no GitOps repository was given to the ARM deployer")


def open_store(state_dir: Path) -> Store:
    """The state dir's SQLite store (created on first use)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return Store.open(state_dir / DB_NAME)


@contextmanager
def engine(
    repo: GitRepo, state_dir: Path, progress: Progress | None = None, concurrency: int = 1
) -> Iterator[Engine]:
    """An engine over the local backends, with the store closed afterwards."""
    local = LocalBackends(state_dir, lambda path: repo.show_file(_HEAD, path))
    local.recover()
    store = open_store(state_dir)
    try:
        yield Engine(
            repo, store, local.backends(), progress=progress or no_progress, concurrency=concurrency
        )
    finally:
        store.close()
