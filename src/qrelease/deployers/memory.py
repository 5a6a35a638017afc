"""An in-memory Deployer and Provisioner for unit tests of the engine: same contracts, no disk.

They fake our own boundaries (the Deployer and Provisioner Protocols), never a tool's
internals, so engine tests can run thousands of reconcile passes in milliseconds and then
assert on `calls`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from qrelease.deployers.base import (
    DeployError,
    HealthResult,
    InfrastructureResult,
    Observed,
    Prepared,
    ReleaseLock,
)
from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.types import version_key


@dataclass
class _AppState:
    """What the fake holds for one (environment, app)."""

    current: str | None = None
    releases: dict[str, ReleaseLock | None] = field(default_factory=dict)


@dataclass
class MemoryDeployer:
    """A Deployer keeping releases in dicts.

    `calls` records `(method, env, app, version-or-arg)` tuples in order. Failures are set
    per version: `fail_install` makes prepare raise DeployError (a transient one for the
    versions in `unreachable`, as when a wheel source cannot be reached), `unhealthy` makes
    the health check fail, `drift[(env, app)]` is reported by observe, and
    `unreadable[(env, app)]` makes observe fail with that error (what runs is not told).
    """

    fail_install: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    unhealthy: set[str] = field(default_factory=set)
    drift: dict[tuple[str, str], str] = field(default_factory=dict)
    unreadable: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    install_count: int = 0
    qir: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _apps: dict[tuple[str, str], _AppState] = field(default_factory=dict, init=False, repr=False)

    def seed(
        self, env: str, app: str, *, current: str | None, on_disk: tuple[str, ...] = ()
    ) -> None:
        """Preset what is deployed, as if earlier passes had installed it."""
        state = self._state(env, app)
        for version in (*on_disk, *([current] if current else [])):
            state.releases.setdefault(version, None)
        state.current = current

    def lock(self, env: str, app: str, version: str) -> ReleaseLock | None:
        """The lock a release was prepared with (None when seeded)."""
        return self._state(env, app).releases.get(version)

    def _state(self, env: str, app: str) -> _AppState:
        """The state of one (env, app), created empty on first use."""
        state = self._apps.get((env, app))
        if state is None:
            state = self._apps[(env, app)] = _AppState()
        return state

    def observe(self, env: Environment, app: str) -> Observed:
        """Current and prepared versions, newest last, plus any configured drift."""
        name = env.environment
        self.calls.append(("observe", name, app))
        error = self.unreadable.get((name, app))
        if error is not None:
            return Observed(None, error=error)
        state = self._state(name, app)
        on_disk = tuple(sorted(state.releases, key=version_key))
        return Observed(state.current, on_disk, self.drift.get((name, app)))

    def prepare(
        self, env: Environment, manifest: ReleaseManifest, lock: ReleaseLock, qir: str
    ) -> Prepared:
        """Record the release; installs only when it is not already prepared."""
        name, version = env.environment, manifest.version
        self.calls.append(("prepare", name, manifest.app, version))
        state = self._state(name, manifest.app)
        if version in state.releases:
            return Prepared(version, installed=False)
        self.install_count += 1
        if version in self.unreachable:
            message = f"{manifest.app} {version} in {name}: wheel source unreachable (simulated)"
            raise DeployError(message, transient=True)
        if version in self.fail_install:
            raise DeployError(f"{manifest.app} {version} in {name}: install failed (simulated)")
        state.releases[version] = lock
        self.qir[(name, manifest.app, version)] = qir
        return Prepared(version, installed=True)

    def check_health(
        self, env: Environment, manifest: ReleaseManifest, *, current: bool
    ) -> HealthResult:
        """Healthy unless the checked version is in `unhealthy` or was never prepared."""
        name = env.environment
        state = self._state(name, manifest.app)
        version = state.current if current else manifest.version
        self.calls.append(("check_health", name, manifest.app, str(version), str(current)))
        if version is None or version not in state.releases:
            return HealthResult(False, f"{manifest.app} {version} in {name} is not deployed")
        if version in self.unhealthy:
            return HealthResult(False, f"{manifest.app} {version}: health check failed (simulated)")
        return HealthResult(True, f"{manifest.app} {version}: healthy")

    def switch(self, env: Environment, app: str, version: str) -> None:
        """Make a prepared version current."""
        name = env.environment
        self.calls.append(("switch", name, app, version))
        state = self._state(name, app)
        if version not in state.releases:
            raise DeployError(f"{app} {version} in {name}: not prepared")
        state.current = version

    def retire(self, env: Environment, app: str, keep: int) -> list[str]:
        """Forget prepared versions older than the newest `keep`, never the current one."""
        name = env.environment
        self.calls.append(("retire", name, app, str(keep)))
        state = self._state(name, app)
        versions = sorted(state.releases, key=version_key)
        kept = set(versions[max(0, len(versions) - keep) :])
        retired = [v for v in versions if v not in kept and v != state.current]
        for version in retired:
            del state.releases[version]
        return retired

    def remove(self, env: Environment, app: str) -> None:
        """Forget the app in this environment."""
        self.calls.append(("remove", env.environment, app))
        self._apps.pop((env.environment, app), None)

    def recover(self) -> list[Path]:
        """Nothing is ever left half done in memory."""
        self.calls.append(("recover",))
        return []

    def methods_called(self) -> list[str]:
        """Just the method names from `calls`, in order."""
        return [call[0] for call in self.calls]


@dataclass
class MemoryProvisioner:
    """A Provisioner remembering the digest of each environment's deployed infrastructure.

    The digest covers the environment's whole `quantum` block, so changing the template
    path or any setting counts as a change. `fail[env]` makes provisioning that
    environment raise DeployError with that message. `calls` records `(outcome, env)`:
    "deployed", "unchanged" or "failed".
    """

    fail: dict[str, str] = field(default_factory=dict)
    deployed: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def ensure_quantum_infrastructure(self, env: Environment) -> InfrastructureResult:
        """Deploy (in memory) when the environment's quantum block changed."""
        name = env.environment
        if name in self.fail:
            self.calls.append(("failed", name))
            raise DeployError(self.fail[name])
        digest = hashlib.sha256(env.quantum.model_dump_json().encode()).hexdigest()
        deployment = f"qrelease-quantum-{name}"
        group = str(getattr(env.quantum, "resource_group", ""))
        if self.deployed.get(name) == digest:
            self.calls.append(("unchanged", name))
            return InfrastructureResult(False, deployment, group, digest, message="unchanged")
        self.deployed[name] = digest
        self.calls.append(("deployed", name))
        outputs = {"workspaceEndpoint": "https://quantum.example/"}
        return InfrastructureResult(True, deployment, group, digest, outputs, "deployed")
