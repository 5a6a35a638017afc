"""Observed state: the controller's last word on one (environment, app), as the store keeps it.

One row per (environment, app), written by the engine from pure transitions
(`planning/status.py`) and read by every surface through `StatusRow`. Sync is what the
planner decided; health is the health of what runs; the last rollout has its own fields,
so a failed candidate never makes a healthy live release look Degraded.
"""

from __future__ import annotations

from datetime import datetime

from qrelease.model.manifest import Frozen
from qrelease.model.vocabulary import Availability, Failure, Health, Rollout, Sync


class ObservedState(Frozen):
    """The controller's last word on one (environment, app).

    `target` is the target shown: the desired release's when it has a valid manifest,
    else the running release's (`running_target`). `failed_version`/`failed_revision`
    name the last failed attempt, `failure` says whether retrying it can help, and
    `attempts`/`retry_at` pace the retries of a transient failure (and, for a hold or a
    bake, say when the row is looked at again). While a release bakes (`bake_until`), its
    health check runs again every bake interval and a failure switches back to `previous`.
    With several controller replicas, `owner` and `fence` say which replica wrote the row
    under which lease token (None for a single controller).
    """

    env: str
    app: str
    desired: str | None = None
    deployed: str | None = None
    sync: Sync = Sync.UNKNOWN
    health: Health = Health.UNKNOWN
    target: str | None = None
    availability: Availability = Availability.UNKNOWN
    message: str = ""
    revision: str | None = None
    updated_at: datetime | None = None
    healthy_since: datetime | None = None
    failed_version: str | None = None
    failed_revision: str | None = None
    qir_sha256: str | None = None
    physical_qubits: int | None = None
    rollout: Rollout | None = None
    rollout_step: str = ""
    rollout_reason: str = ""
    running_target: str | None = None
    failure: Failure | None = None
    attempts: int = 0
    retry_at: datetime | None = None
    bake_until: datetime | None = None
    previous: str | None = None
    owner: str | None = None
    fence: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(env, app)."""
        return (self.env, self.app)
