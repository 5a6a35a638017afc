"""Observe: what Git asks for in the environments a pass covers, and what is known of each.

The store's rows are read once per pass; each pinned app is observed through its
environment's deployer and its target's availability is asked once per (backend, target).
Nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from qrelease.deployers.base import Deployer, Observed, Remembering
from qrelease.engine.backends import Backends
from qrelease.model.environment import Environment
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability
from qrelease.planning.planner import Desired, Seen
from qrelease.source.loader import Snapshot


@dataclass(frozen=True)
class Scope:
    """The environments a pass covers: the one asked for (None: all), within those this
    replica owns (None: a single controller owns all)."""

    env: str | None = None
    owned: frozenset[str] | None = None

    def covers(self, name: str) -> bool:
        """True for an environment the pass covers."""
        return self.env in (None, name) and (self.owned is None or name in self.owned)


@dataclass(frozen=True)
class Observation:
    """What one pass knows before it decides: the pins in scope and what is seen of each key."""

    environments: Mapping[str, Environment]
    desired: tuple[Desired, ...]
    seen: Mapping[tuple[str, str], Seen]


class Observer:
    """Observes pins for passes, keeping what the deployers reported between passes.

    Only the engine changes what is deployed (one process holds the state dir), so what a
    deployer reported stays true until the engine acts on that key: a pass over a new
    revision reuses it, and only a `fresh` pass (a resync, or a pass a person asked for)
    asks every deployer again, which is how drift from outside is found. The engine
    forgets the keys it acted on; an observation that failed is never kept. A deployer
    that keeps its own observations with a change signal (`Remembering`, the venv
    deployer) is asked every pass, since a look at the signal is cheap and catches a
    hand-swapped `current` at once; a `fresh` pass first tells it to forget them all, and
    every pass lets it save them for the next process.
    A manifest's target id is kept by the manifest's identity: the loader hands the same
    model objects to every pass until their file changes, and reading three nested models
    of each of thousands of manifests each pass costs more than the rest of the lookup.
    """

    def __init__(self, backends: Backends) -> None:
        self._backends = backends
        self._live: dict[tuple[str, str], Observed] = {}

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        """Ask the deployers again about these keys next pass (the engine acted on them)."""
        for key in keys:
            self._live.pop(key, None)

    def forget_environments(self, names: Collection[str]) -> None:
        """Ask again about every key of these environments (another replica may have acted)."""
        self.forget([key for key in self._live if key[0] in names])

    def observe(
        self,
        snapshot: Snapshot,
        stored: Mapping[tuple[str, str], ObservedState],
        scope: Scope,
        *,
        fresh: bool = False,
    ) -> Observation:
        """Every pin of the covered environments, plus every recorded key no pin names."""
        environments = selected(snapshot.environments, scope)
        availability = _AvailabilityCache(self._backends)
        known = {} if fresh else self._live
        others = {key: seen for key, seen in self._live.items() if not scope.covers(key[0])}
        live: dict[tuple[str, str], Observed] = others
        desired: list[Desired] = []
        seen: dict[tuple[str, str], Seen] = {}
        release_of, problems = snapshot.release, snapshot.pin_problems  # nothing decoded
        remembering = self._remembering(environments, forget=fresh)
        for name, env in sorted(environments.items()):  # one tight loop: thousands of pins a pass
            deployer: Deployer | None = None
            asks = name in remembering
            statuses: dict[str, tuple[Availability, str]] = {}  # by target id, in this env
            for app, version in sorted(env.apps.items()):
                key = (name, app)
                release = release_of(app, version)
                problem = problems.get(key) if problems else None
                desired.append(
                    Desired(env, app, version, release, problem.message if problem else "")
                )
                observed = None if asks else known.get(key)
                if observed is None:
                    deployer = deployer or self._backends.deployer_for(env)
                    observed = deployer.observe(env, app)
                if observed.error is None:
                    live[key] = observed
                if release is None:
                    status = _UNKNOWN
                else:
                    target = release.target
                    status = statuses.get(target) or _NOT_LOOKED_UP
                    if status is _NOT_LOOKED_UP:
                        status = statuses[target] = availability.of(env, target)
                seen[key] = Seen(
                    stored.get(key), observed.current, observed.drift, *status, observed.error
                )
        gone = sorted(k for k in stored if k not in seen and scope.covers(k[0]))
        for key in gone:  # recorded once, no longer pinned: observed for the prune
            env = environments.get(key[0]) or Environment(environment=key[0])
            observed = known.get(key) or self._backends.deployer_for(env).observe(env, key[1])
            if observed.error is None:
                live[key] = observed
            seen[key] = Seen(
                stored.get(key),
                observed.current,
                observed.drift,
                Availability.UNKNOWN,
                "",
                observed.error,
            )
        self._live = live  # only keys of this pass (and other environments') stay
        for keeper in {id(k): k for k in remembering.values()}.values():
            keeper.save_observed()
        return Observation(environments, tuple(desired), seen)

    def _remembering(
        self, environments: Mapping[str, Environment], *, forget: bool
    ) -> dict[str, Remembering]:
        """The environments whose deployer keeps its own observations (told to forget them)."""
        found: dict[str, Remembering] = {}
        told: set[int] = set()
        for name, env in environments.items():
            deployer = self._backends.deployer_for(env)
            if isinstance(deployer, Remembering):
                found[name] = deployer
                if forget and id(deployer) not in told:
                    deployer.forget_observed()
                    told.add(id(deployer))
        return found


_UNKNOWN = (Availability.UNKNOWN, "")
_NOT_LOOKED_UP = (Availability.UNKNOWN, "not looked up")


class _AvailabilityCache:
    """Target status looked up once per (quantum backend settings, target) in a pass."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends
        self._seen: dict[tuple[object, str], tuple[Availability, str]] = {}

    def of(self, env: Environment, target_id: str) -> tuple[Availability, str]:
        key = (env.quantum, target_id)  # frozen models hash by value: envs sharing a backend
        if key not in self._seen:
            status = self._backends.quantum_for(env).target_status(target_id)
            self._seen[key] = (status.availability, status.message)
        return self._seen[key]


def environment_of(snapshot: Snapshot, name: str) -> Environment:
    """An environment of the snapshot (a bare one when its file is gone or invalid)."""
    return snapshot.environments.get(name) or Environment(environment=name)


def selected(environments: Mapping[str, Environment], scope: Scope) -> dict[str, Environment]:
    """The environments a pass covers."""
    return {name: env for name, env in environments.items() if scope.covers(name)}


def desired_pins(snapshot: Snapshot, environments: Mapping[str, Environment]) -> Iterator[Desired]:
    """Every pin of the given environments, with the loader's problem when it is not valid."""
    for name, env in sorted(environments.items()):
        for app, version in sorted(env.apps.items()):
            release = snapshot.release(app, version)
            problem = snapshot.pin_problems.get((name, app))
            yield Desired(env, app, version, release, str(problem.message) if problem else "")


def broken_environments(snapshot: Snapshot, scope: Scope) -> dict[str, str]:
    """Environments whose file is invalid, with why: their recorded apps are held."""
    return {
        name: f"{error.path} is invalid: {error}"
        for name, error in snapshot.broken_envs.items()
        if scope.covers(name)
    }
