"""Desired state x observed state -> a Plan of one action per (environment, app).

Purely computational: it takes values and returns values, so every rule here is a unit
test away. The engine supplies what Git says, what the store remembers and what the
deployers and targets report; it alone acts on the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from qrelease.model.environment import Environment
from qrelease.model.events import ObservedState
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.status import ActionKind, Availability, Health, Sync

BLOCKING_AVAILABILITY = (Availability.DEGRADED, Availability.UNAVAILABLE)


@dataclass(frozen=True)
class Desired:
    """What Git asks for one (environment, app): the pin and its manifest if valid."""

    env: Environment
    app: str
    version: str
    manifest: ReleaseManifest | None
    problem: str = ""


class Seen(NamedTuple):
    """What is known of one (environment, app) now: the store's record and the deployer's view.

    A named tuple: a pass builds one per pinned app, thousands at a time.
    """

    state: ObservedState | None = None
    current: str | None = None
    drift: str | None = None
    availability: Availability = Availability.UNKNOWN
    availability_message: str = ""


@dataclass(frozen=True)
class Action:
    """The decision for one (environment, app)."""

    kind: ActionKind
    env: str
    app: str
    from_version: str | None
    to_version: str | None
    sync: Sync
    reason: str = ""
    manifest: ReleaseManifest | None = None
    availability: Availability = Availability.UNKNOWN

    @property
    def key(self) -> tuple[str, str]:
        """(env, app)."""
        return (self.env, self.app)


@dataclass(frozen=True)
class Plan:
    """Every action of one pass, in a stable order (environment, then app)."""

    revision: str
    actions: tuple[Action, ...] = field(default_factory=tuple)

    def of_kind(self, kind: ActionKind) -> list[Action]:
        """The actions of one kind."""
        return [action for action in self.actions if action.kind == kind]

    @property
    def changes(self) -> list[Action]:
        """The actions that would change something."""
        return [a for a in self.actions if a.kind in (ActionKind.DEPLOY, ActionKind.PRUNE)]


def plan(
    revision: str,
    desired: Iterable[Desired],
    seen: Mapping[tuple[str, str], Seen],
    environments: Mapping[str, Environment],
    retry: bool = False,
    broken: Mapping[str, str] | None = None,
) -> Plan:
    """Decide for every desired app, and for every deployed app Git no longer asks for.

    `broken` maps environments whose file is invalid to the problem: their apps are held.
    """
    actions = [
        decide(revision, d, seen.get((d.env.environment, d.app), Seen()), retry) for d in desired
    ]
    wanted = {(d.env.environment, d.app) for d in desired}
    for key, observed in seen.items():
        if key in wanted or observed.current is None:
            continue
        if broken and key[0] in broken:
            reason = broken[key[0]]
            actions.append(
                Action(ActionKind.HOLD, *key, observed.current, None, Sync.UNKNOWN, reason)
            )
        else:
            actions.append(decide_unwanted(key, observed, environments.get(key[0])))
    return Plan(revision=revision, actions=tuple(sorted(actions, key=lambda a: a.key)))


def hold_all(the_plan: Plan, reason: str) -> Plan:
    """The same plan with every action turned into a Hold (an untrusted revision, say)."""
    held = [replace(action, kind=ActionKind.HOLD, reason=reason) for action in the_plan.actions]
    return Plan(the_plan.revision, tuple(held))


def decide(revision: str, desired: Desired, seen: Seen, retry: bool = False) -> Action:
    """The action for one app an environment file pins."""
    env, app, version = desired.env.environment, desired.app, desired.version
    current = seen.current

    def act(kind: ActionKind, sync: Sync, reason: str = "") -> Action:
        return Action(
            kind, env, app, current, version, sync, reason, desired.manifest, seen.availability
        )

    if desired.manifest is None:
        return act(
            ActionKind.HOLD, _sync(current, version), desired.problem or "release is invalid"
        )
    unverified = _unverified(seen.state)
    if current == version and seen.drift is None and not unverified:
        return act(ActionKind.NOOP, Sync.SYNCED)
    failed = _failed_here(seen.state, version, revision)
    if failed and not retry:
        return act(ActionKind.HOLD, Sync.OUT_OF_SYNC, failed)
    if seen.availability in BLOCKING_AVAILABILITY:
        target = desired.manifest.quantum.target.id
        detail = f": {seen.availability_message}" if seen.availability_message else ""
        reason = f"target {target} is {seen.availability}{detail}; rollout on hold"
        return act(ActionKind.HOLD, Sync.OUT_OF_SYNC, reason)
    reason = ""
    if current == version:
        reason = (
            f"repair: {seen.drift}" if seen.drift else "verify: live after an interrupted deploy"
        )
    return act(ActionKind.DEPLOY, Sync.OUT_OF_SYNC, reason)


def decide_unwanted(key: tuple[str, str], seen: Seen, env: Environment | None) -> Action:
    """The action for a deployed app that no environment file asks for any more."""
    env_name, app = key
    if env is not None and env.policy.prune:
        return Action(
            ActionKind.PRUNE,
            env_name,
            app,
            seen.current,
            None,
            Sync.OUT_OF_SYNC,
            "removed from the environment file",
        )
    where = f"releases/{env_name}.yaml" if env is not None else f"environment {env_name!r}"
    reason = f"not in {where}; still running (set policy.prune: true to remove it)"
    return Action(ActionKind.NOOP, env_name, app, seen.current, None, Sync.OUT_OF_SYNC, reason)


def _sync(current: str | None, version: str) -> Sync:
    return Sync.SYNCED if current == version else Sync.OUT_OF_SYNC


def _failed_here(state: ObservedState | None, version: str, revision: str) -> str:
    """Why this exact release already failed at this revision, or '' when it did not."""
    if state is None or state.failed_version != version or state.failed_revision != revision:
        return ""
    return f"{version} failed at this revision ({state.message}); push a new revision or retry"


def _unverified(state: ObservedState | None) -> bool:
    """True when a crash interrupted a deploy and nobody has checked what is live since."""
    return state is not None and state.health == Health.UNKNOWN and state.failed_version is None
