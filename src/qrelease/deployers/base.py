"""The deployer Protocol and the release lock file every deployer writes.

The engine drives a deployer in fixed steps: prepare (install, idempotent) -> check health
-> switch (atomic) -> check health of what is now current -> maybe switch back. A deployer
may name the prepare and switch steps as its platform does (`StepNames`: ARM validates and
deploys), and may provision an environment's quantum infrastructure (`Provisioner`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest


@dataclass(frozen=True)
class ReleaseLock:
    """What a deployed release pins, written as `qrelease.lock.json` inside the release.

    The example apps read it at run time: it is how the quantum component travels with
    the classical one. Fields: app, env, version, revision, target_id, profile, entry (the
    Q# entry, the Qiskit circuit's name, empty for OpenQASM), program (repo path),
    qir_sha256, deployed_at (ISO 8601 UTC).
    """

    app: str
    env: str
    version: str
    revision: str
    target_id: str
    profile: str
    entry: str
    program: str
    qir_sha256: str
    deployed_at: str


class Observed(NamedTuple):
    """What a deployer finds on its side for one (environment, app).

    `drift`: what runs differs from what was deployed (the engine repairs it). `error`: the
    deployer could not find out what runs (`current` is then only the last version it saw,
    if any); the engine acts on nothing it cannot see. A named tuple: every pass observes
    every pinned app, thousands at a time.
    """

    current: str | None
    on_disk: tuple[str, ...] = ()
    drift: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A release ready to switch to; `installed` is False when it was already on disk."""

    version: str
    installed: bool


@dataclass(frozen=True)
class HealthResult:
    """The outcome of a health command."""

    ok: bool
    message: str


class DeployError(Exception):
    """An install or switch failed; the message says why and names the release.

    `transient` is True when trying again later can succeed without any change in Git:
    a package index, wheel source or cloud API that could not be reached.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Deployer(Protocol):
    """Installs releases of the classical packages and switches which one is live."""

    def observe(self, env: Environment, app: str) -> Observed:
        """What is current and on disk for this app in this environment."""
        ...

    def prepare(
        self, env: Environment, manifest: ReleaseManifest, lock: ReleaseLock, qir: str
    ) -> Prepared:
        """Install the release if it is not complete on disk; never touches what is live."""
        ...

    def check_health(
        self, env: Environment, manifest: ReleaseManifest, *, current: bool
    ) -> HealthResult:
        """Run the manifest's health command in the release (or in `current` when asked)."""
        ...

    def switch(self, env: Environment, app: str, version: str) -> None:
        """Make `version` live atomically; it must have been prepared."""
        ...

    def retire(self, env: Environment, app: str, keep: int) -> list[str]:
        """Remove on-disk releases beyond the newest `keep` (never the live one)."""
        ...

    def remove(self, env: Environment, app: str) -> None:
        """Take an app out of the environment entirely (prune)."""
        ...


@dataclass(frozen=True)
class StepNames:
    """What a deployer's platform calls the prepare and switch steps, for status and errors.

    >>> StepNames()
    StepNames(prepare='install', switch='switch')
    """

    prepare: str = "install"
    switch: str = "switch"


def step_names(deployer: object) -> StepNames:
    """The deployer's own step names (its `step_names` attribute), else install and switch."""
    names = getattr(deployer, "step_names", None)
    return names if isinstance(names, StepNames) else StepNames()


@dataclass(frozen=True)
class InfrastructureResult:
    """What provisioning an environment's quantum infrastructure did: deployed or not, and why.

    `deployment` and `resource_group` name the ARM deployment, `sha256` is the digest of
    its template and parameters, `outputs` are the deployment's outputs.
    """

    deployed: bool
    deployment: str
    resource_group: str
    sha256: str
    outputs: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class Provisioner(Protocol):
    """Deploys an environment's quantum infrastructure (`quantum.infrastructure`)."""

    def ensure_quantum_infrastructure(self, env: Environment) -> InfrastructureResult:
        """Deploy the template when it or its parameters changed; raise DeployError on failure."""
        ...


@runtime_checkable
class Remembering(Protocol):
    """A deployer that keeps what it observed, with a cheap change signal per app.

    Its `observe` re-reads an app only when the signal moved; the engine asks it to forget
    everything before a full drift check (a resync) and to save what it knows after a pass,
    so the next process starts warm.
    """

    def forget_observed(self) -> None:
        """Re-read every app on its next observe."""
        ...

    def save_observed(self) -> None:
        """Keep what was observed for later processes (best effort: never raises)."""
        ...


@runtime_checkable
class Previewer(Protocol):
    """A deployer that can say what a deploy would change without changing it (ARM what-if)."""

    def what_if(self, env: Environment, manifest: ReleaseManifest) -> list[str]:
        """One line per change the release would make."""
        ...
