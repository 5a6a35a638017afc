"""The status table: desired state from Git merged with what the store last observed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from qrelease.model.environment import Environment
from qrelease.model.events import ObservedState
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.status import Availability, Health, Sync


@dataclass(frozen=True)
class StatusRow:
    """One (environment, app) as `qrelease status` shows it."""

    env: str
    app: str
    desired: str | None
    deployed: str | None
    sync: Sync
    health: Health
    target: str | None
    availability: Availability
    message: str
    revision: str | None

    def as_json(self) -> dict[str, Any]:
        """The row as plain JSON values."""
        return {
            key: (str(value) if value is not None else None) for key, value in asdict(self).items()
        }


def status_rows(
    revision: str,
    environments: Mapping[str, Environment],
    manifests: Mapping[tuple[str, str], ReleaseManifest],
    observed: Iterable[ObservedState],
) -> list[StatusRow]:
    """Every pinned or deployed (environment, app), sorted, with its sync computed from Git."""
    seen = {(state.env, state.app): state for state in observed}
    keys = set(seen) | {(name, app) for name, env in environments.items() for app in env.apps}
    return [_row(revision, key, environments, manifests, seen.get(key)) for key in sorted(keys)]


def _row(
    revision: str,
    key: tuple[str, str],
    environments: Mapping[str, Environment],
    manifests: Mapping[tuple[str, str], ReleaseManifest],
    state: ObservedState | None,
) -> StatusRow:
    env_name, app = key
    env = environments.get(env_name)
    desired = env.apps.get(app) if env else None
    deployed = state.deployed if state else None
    manifest = manifests.get((app, desired)) if desired else None
    target = manifest.quantum.target.id if manifest else (state.target if state else None)
    sync = Sync.SYNCED if desired is not None and desired == deployed else Sync.OUT_OF_SYNC
    if state is None:
        return StatusRow(
            env_name,
            app,
            desired,
            None,
            sync,
            Health.MISSING,
            target,
            Availability.UNKNOWN,
            "not deployed yet",
            revision,
        )
    return StatusRow(
        env_name,
        app,
        desired,
        deployed,
        sync,
        state.health,
        target,
        state.availability,
        state.message,
        state.revision,
    )
