"""Observe: what Git asks for in the environments a pass covers, and what is known of each.

The store's rows are read once per pass; each pinned app is observed through its
environment's deployer and its target's availability is asked once per (backend, target).
Nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from qrelease.deployers.base import Deployer
from qrelease.engine.backends import Backends
from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability
from qrelease.planning.planner import Desired, Seen
from qrelease.source.loader import Snapshot


@dataclass(frozen=True)
class Observation:
    """What one pass knows before it decides: the pins in scope and what is seen of each key."""

    environments: Mapping[str, Environment]
    desired: tuple[Desired, ...]
    seen: Mapping[tuple[str, str], Seen]


class Observer:
    """Observes pins for passes; remembers each manifest's target id across passes.

    The loader hands the same model objects to every pass until their file changes, so a
    manifest's target id is kept by the manifest's identity (each entry holds its manifest,
    so the id stays that manifest's): reading three nested models of each of thousands of
    manifests each pass costs more than the rest of the lookup together.
    """

    def __init__(self, backends: Backends) -> None:
        self._backends = backends
        self._targets: dict[int, tuple[ReleaseManifest, str]] = {}

    def observe(
        self,
        snapshot: Snapshot,
        stored: Mapping[tuple[str, str], ObservedState],
        env_filter: str | None,
    ) -> Observation:
        """Every pin of the selected environments, plus every recorded key no pin names."""
        environments = selected(snapshot.environments, env_filter)
        desired = tuple(desired_pins(snapshot, environments))
        availability = _AvailabilityCache(self._backends, self._targets)
        deployers: dict[str, Deployer] = {}
        seen: dict[tuple[str, str], Seen] = {}
        for item in desired:
            env, key = item.env, (item.env.environment, item.app)
            deployer = deployers.get(key[0]) or deployers.setdefault(
                key[0], self._backends.deployer_for(env)
            )
            observed = deployer.observe(env, item.app)
            status = availability.of(env, item.manifest)
            seen[key] = Seen(stored.get(key), observed.current, observed.drift, *status)
        self._targets = availability.used  # only the manifests of this pass stay referenced
        gone = sorted(k for k in stored if k not in seen and env_filter in (None, k[0]))
        for key in gone:  # recorded once, no longer pinned: observed for the prune
            env = environments.get(key[0]) or Environment(environment=key[0])
            observed = self._backends.deployer_for(env).observe(env, key[1])
            seen[key] = Seen(
                stored.get(key), observed.current, observed.drift, Availability.UNKNOWN, ""
            )
        return Observation(environments, desired, seen)


class _AvailabilityCache:
    """Target status looked up once per (backend kind, target) in a pass."""

    def __init__(self, backends: Backends, targets: dict[int, tuple[ReleaseManifest, str]]) -> None:
        self._backends = backends
        self._seen: dict[tuple[object, str], tuple[Availability, str]] = {}
        self._by_env: dict[tuple[str, str], tuple[Availability, str]] = {}
        self._known = targets
        self.used: dict[int, tuple[ReleaseManifest, str]] = {}

    def of(self, env: Environment, manifest: ReleaseManifest | None) -> tuple[Availability, str]:
        if manifest is None:
            return (Availability.UNKNOWN, "")
        known = self._known.get(id(manifest)) or (manifest, manifest.quantum.target.id)
        self.used[id(manifest)] = known
        near = (env.environment, known[1])
        if near not in self._by_env:
            key = (env.quantum, known[1])  # frozen models hash by value: envs sharing a backend
            if key not in self._seen:
                status = self._backends.quantum_for(env).target_status(known[1])
                self._seen[key] = (status.availability, status.message)
            self._by_env[near] = self._seen[key]
        return self._by_env[near]


def environment_of(snapshot: Snapshot, name: str) -> Environment:
    """An environment of the snapshot (a bare one when its file is gone or invalid)."""
    return snapshot.environments.get(name) or Environment(environment=name)


def selected(environments: Mapping[str, Environment], only: str | None) -> dict[str, Environment]:
    """The environments a pass covers."""
    return {name: env for name, env in environments.items() if only in (None, name)}


def desired_pins(snapshot: Snapshot, environments: Mapping[str, Environment]) -> Iterator[Desired]:
    """Every pin of the given environments, with the loader's problem when it is not valid."""
    for name, env in sorted(environments.items()):
        for app, version in sorted(env.apps.items()):
            manifest = snapshot.manifest(app, version)
            problem = snapshot.pin_problems.get((name, app))
            yield Desired(env, app, version, manifest, str(problem.message) if problem else "")


def broken_environments(snapshot: Snapshot, only: str | None) -> dict[str, str]:
    """Environments whose file is invalid, with why: their recorded apps are held."""
    return {
        name: f"{error.path} is invalid: {error}"
        for name, error in snapshot.broken_envs.items()
        if only in (None, name)
    }
