"""Wiring: the one place that builds the store, the backends, the engine and the promoter.

The CLI, the daemon and the TUI all get their concrete pieces here, so a state dir means
the same store and the same backends to each of them. Backends for Azure are imported
only when an environment uses them, so the CLI and the daemon start without the SDKs, and
the engine and the promoter only when one is built, so `qrelease status` (which only opens
the store) does not pay for them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from qrelease.config import ControllerConfig
from qrelease.model.environment import AzureQuantum, Environment
from qrelease.source.private import private_dir, private_file
from qrelease.store import DB_NAME, StateStore, open_parse_cache, open_store

if TYPE_CHECKING:
    from qrelease.azure.arm import ArmDeployer
    from qrelease.azure.quantum import AzureQuantumBackend
    from qrelease.deployers.base import Deployer, Provisioner
    from qrelease.deployers.venv import Wheelhouse
    from qrelease.engine import Backends, Engine, ReportSink, RowSink
    from qrelease.promotion.promote import Promoter
    from qrelease.quantum.base import JobReader, QuantumBackend
    from qrelease.quantum.cache import GateCache
    from qrelease.quantum.sandbox import GateLimits
    from qrelease.source.repo import GitRepo
    from qrelease.source.signatures import TrustedKeys

_HEAD = "HEAD"

TemplateReader = Callable[[str], bytes | None]
BackendsFactory = Callable[[Path], "Backends"]
"""Builds the backends of a state dir (tests hand the daemon fakes through this)."""


@dataclass(frozen=True)
class GateQueue:
    """Gates as jobs in the shared store (`[gates] queue`): the store's URL (None: the
    state dir's SQLite), who asks (`name`, in each job's record) and how long a job may wait
    for a worker before the asker runs it itself."""

    state_dir: Path
    store_url: str | None
    name: str
    claim_after: timedelta = timedelta(seconds=10)
    heartbeat: timedelta = timedelta(seconds=5)
    stale: timedelta = timedelta(seconds=30)

    def connect(self) -> StateStore:
        """A handle of the queue's store for the calling thread (the caller closes it)."""
        return open_state(self.state_dir, self.store_url)


def gate_queue(config: ControllerConfig, store_url: str | None, name: str) -> GateQueue | None:
    """The gate queue `[gates] queue` asks for, or None."""
    if not config.gates.queue:
        return None
    gates = config.gates
    return GateQueue(
        config.state_dir, store_url, name, gates.claim_after, gates.heartbeat, gates.stale
    )


class LocalBackends:
    """The backends each environment asks for, created on first use and shared.

    Local environments share one venv deployer and one qdk backend, whose gates run on a
    pool of `gate_limits.workers` sandboxed workers and are kept by content in
    `<state>/cache/gates/`, so a release's gates run once for every environment and pass
    (the shared cache also learns from the engine which audit event first recorded each
    result). ARM environments share
    one ARM deployer, which reads templates through `read_template` (a repo path -> bytes at
    the revision being reconciled) and also deploys the quantum infrastructure of every
    environment that names one. Each Azure Quantum environment gets its own backend,
    which runs the local qdk gates through the shared qdk backend. `allowed_sources` is the
    config's `[sources] allow`: package sources outside the state dir venvs may install from.
    With a `gate_queue`, gates the cache cannot answer become jobs for `qrelease worker`s.
    `wheelhouse` fills state-dir wheel directories before installs (the bundled examples).
    """

    def __init__(
        self,
        state_dir: Path,
        read_template: TemplateReader | None = None,
        gate_limits: GateLimits | None = None,
        allowed_sources: Sequence[str] = (),
        gate_queue: GateQueue | None = None,
        wheelhouse: Wheelhouse | None = None,
    ) -> None:
        from qrelease.deployers.venv import VenvDeployer
        from qrelease.quantum.cache import GateCache
        from qrelease.quantum.sandbox import GateLimits

        self.state_dir = state_dir
        self.gate_limits = gate_limits or GateLimits(workers=os.cpu_count() or 1)
        self.gate_cache: GateCache = GateCache(state_dir / "cache" / "gates")
        self.venv = VenvDeployer(state_dir, allowed_sources=allowed_sources, wheelhouse=wheelhouse)
        self.read_template = read_template or _no_templates
        self.gate_queue = gate_queue
        self._qdk: QuantumBackend | None = None
        self._arm: ArmDeployer | None = None
        self._azure: dict[str, tuple[AzureQuantum, AzureQuantumBackend]] = {}
        self._lock = threading.Lock()

    def deployer_for(self, env: Environment) -> Deployer:
        """The deployer of an environment's classical side."""
        if env.classical.kind == "venv":
            return self.venv
        return self._arm_deployer()

    def provisioner_for(self, env: Environment) -> Provisioner | None:
        """Who deploys the environment's quantum infrastructure (None when it names none)."""
        if not isinstance(env.quantum, AzureQuantum) or not env.quantum.infrastructure:
            return None
        return self._arm_deployer()

    def _arm_deployer(self) -> ArmDeployer:
        with self._lock:
            if self._arm is None:
                from qrelease.azure.arm import ArmDeployer

                self._arm = ArmDeployer(self.read_template)
            return self._arm

    def quantum_for(self, env: Environment) -> QuantumBackend:
        """The backend of an environment's quantum side (SDKs load on first use)."""
        with self._lock:
            if isinstance(env.quantum, AzureQuantum):
                return self._azure_backend(env, env.quantum)
            return self._local_qdk()

    def jobs_for(self, env: Environment) -> JobReader | None:
        """Where an environment's quantum jobs are read: its Azure Quantum workspace."""
        with self._lock:
            if isinstance(env.quantum, AzureQuantum):
                return self._azure_backend(env, env.quantum)
            return None

    def _local_qdk(self) -> QuantumBackend:
        if self._qdk is None:
            from qrelease.quantum.qdk import QdkBackend
            from qrelease.quantum.sandbox import GatePool

            pool = GatePool(self.gate_limits)
            runner = None
            if self.gate_queue is not None:
                from qrelease.gatequeue import QueuedGates

                queue = self.gate_queue
                here = QdkBackend(pool)  # runs a job no worker claimed in time
                runner = QueuedGates(
                    here,
                    queue,
                    queue.name,
                    claim_after=queue.claim_after,
                    stale=queue.stale,
                    heartbeat=queue.heartbeat,
                )
            self._qdk = QdkBackend(pool, cache=self.gate_cache, runner=runner)
        return self._qdk

    def _azure_backend(self, env: Environment, settings: AzureQuantum) -> AzureQuantumBackend:
        known = self._azure.get(env.environment)
        if known is not None and known[0] == settings:
            return known[1]
        from qrelease.azure.quantum import AzureQuantumBackend

        backend = AzureQuantumBackend(
            settings, environment=env.environment, local=self._local_qdk()
        )
        self._azure[env.environment] = (settings, backend)
        return backend

    def backends(self) -> Backends:
        """The engine's view of these backends."""
        from qrelease.engine import Backends

        return Backends(
            deployer_for=self.deployer_for,
            quantum_for=self.quantum_for,
            provisioner_for=self.provisioner_for,
            jobs_for=self.jobs_for,
            gate_workers=self.gate_limits.workers,
            gate_cache=self.gate_cache,
        )


def _no_templates(path: str) -> bytes | None:
    """Template reader for callers that have no repository at hand."""
    from qrelease.deployers.base import DeployError

    raise DeployError(f"cannot read {path}: no GitOps repository was given to the ARM deployer")


def local_backends(
    state_dir: Path,
    read_template: TemplateReader | None = None,
    gate_limits: GateLimits | None = None,
    allowed_sources: Sequence[str] = (),
    gate_queue: GateQueue | None = None,
    wheelhouse: Wheelhouse | None = None,
) -> Backends:
    """The real backends of a state dir whose lock the caller holds.

    What an interrupted install or switch left on disk is cleaned up first, which is only
    safe for the process that may deploy into the state dir.
    """
    local = LocalBackends(
        state_dir, read_template, gate_limits, allowed_sources, gate_queue, wheelhouse
    )
    local.venv.recover()
    return local.backends()


def open_state(state_dir: Path, store_url: str | None = None) -> StateStore:
    """The store at `store_url` (the --store flag or `[store] url`), else the state dir's.

    The state dir's SQLite file is created readable by its owner only.
    """
    if store_url is not None:
        return open_store(store_url)
    private_dir(state_dir)
    private_file(state_dir / DB_NAME)  # SQLite gives its -wal and -shm files the same mode
    for companion in state_dir.glob(f"{DB_NAME}-*"):  # left 0644 by an older qrelease
        private_file(companion, create=False)
    return open_store(state_dir)


@contextmanager
def engine(
    repo: GitRepo,
    state_dir: Path,
    *,
    deploying: bool = False,
    on_row: RowSink | None = None,
    concurrency: int = 1,
    sinks: Iterable[ReportSink] = (),
    keys: TrustedKeys | None = None,
    allowed_sources: Sequence[str] = (),
    store_url: str | None = None,
    gate_limits: GateLimits | None = None,
    gate_queue: GateQueue | None = None,
    wheelhouse: Wheelhouse | None = None,
) -> Iterator[Engine]:
    """An engine over the local backends, with the store closed afterwards.

    `deploying` is for callers that hold the state dir's lock: only they may clean up what
    an interrupted install left behind. Planning never touches the disk.
    """
    read_template: TemplateReader = lambda path: repo.show_file(_HEAD, path)  # noqa: E731
    if deploying:
        backends = local_backends(
            state_dir, read_template, gate_limits, allowed_sources, gate_queue, wheelhouse
        )
    else:
        backends = LocalBackends(state_dir, read_template).backends()  # plans install nothing
    from qrelease.engine import Engine

    store = open_state(state_dir, store_url)
    cache = open_parse_cache(state_dir)
    try:
        yield Engine(
            repo,
            store,
            backends,
            on_row=on_row,
            concurrency=concurrency,
            sinks=sinks,
            trusted_keys=keys,
            parse_cache=cache,
        )
    finally:
        cache.close()
        store.close()


def promoter(
    location: str,
    state_dir: Path,
    store: StateStore,
    *,
    branch: str = "main",
    clock: Callable[[], datetime] | None = None,
    quantum_for: Callable[[Environment], QuantumBackend] | None = None,
    trusted_keys: TrustedKeys | None = None,
) -> Promoter:
    """A promoter over a GitOps repo and a state dir's store, judging targets as the CLI does."""
    from qrelease.engine import utcnow
    from qrelease.promotion.promote import Promoter

    judge = quantum_for or LocalBackends(state_dir).quantum_for
    return Promoter(
        location, state_dir, store, judge, clock or utcnow, branch, trusted_keys=trusted_keys
    )


def trusted_keys(config: ControllerConfig) -> TrustedKeys | None:
    """The keys of signed-commit verification, when the config names any."""
    from qrelease.source.signatures import TrustedKeys

    keys = TrustedKeys(config.verify.trusted_keys, config.verify.gpg_home)
    return keys if keys.enabled else None
