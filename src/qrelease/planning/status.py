"""Status, decided once: how a plan and each rollout step change an (environment, app)'s row.

The engine records what these pure transitions return and every surface (CLI `status`,
`/status`, the TUI) renders the same `StatusRow`s from it, so nothing re-derives sync or
health on its own. Sync is the planner's; health is the health of what runs (Progressing
while a rollout runs); the last rollout has its own field with its step and reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from qrelease.model.environment import Bake
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import (
    ActionKind,
    Availability,
    Failure,
    Health,
    Rollout,
    Sync,
)
from qrelease.planning.planner import Action

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(minutes=10)
MANUAL_RETRY = "waiting for a new revision or `qrelease reconcile --retry`"


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One (environment, app) as every surface shows it.

    >>> row = StatusRow("dev", "a", "1.1.0", "1.0.0", Sync.OUT_OF_SYNC, Health.HEALTHY,
    ...                 Rollout.FAILED, "install", "t", Availability.AVAILABLE, "", None)
    >>> row.summary
    'OutOfSync · Healthy · rollout Failed (install)'
    """

    env: str
    app: str
    desired: str | None
    deployed: str | None
    sync: Sync
    health: Health
    rollout: Rollout | None
    step: str
    target: str | None
    availability: Availability
    message: str
    revision: str | None
    retry_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(env, app)."""
        return (self.env, self.app)

    @property
    def summary(self) -> str:
        """Sync, health and the last rollout in one phrase."""
        text = f"{self.sync} · {self.health}"
        if self.rollout is not None:
            text += f" · rollout {self.rollout}" + (f" ({self.step})" if self.step else "")
        return text

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusRow:
        """A row read back from `as_json` (the controller's API streams rows this way)."""
        retry_at = data.get("retry_at")
        return cls(
            env=str(data["env"]),
            app=str(data["app"]),
            desired=data.get("desired"),
            deployed=data.get("deployed"),
            sync=Sync(data["sync"]),
            health=Health(data["health"]),
            rollout=Rollout(data["rollout"]) if data.get("rollout") else None,
            step=str(data.get("step") or ""),
            target=data.get("target"),
            availability=Availability(data["availability"]),
            message=str(data.get("message") or ""),
            revision=data.get("revision"),
            retry_at=datetime.fromisoformat(retry_at) if retry_at else None,
        )

    def as_json(self) -> dict[str, Any]:
        """The row as plain JSON values (the `status --json` and `/status` row)."""
        out: dict[str, Any] = {}
        for key in _ROW_FIELDS:  # not `asdict`: it deep-copies every value (30,000 rows: 0.7 s)
            value = getattr(self, key)
            if isinstance(value, datetime):
                out[key] = value.isoformat()
            elif isinstance(value, str):
                out[key] = str(value)  # an enum member as its plain value
            else:
                out[key] = value
        return out


_ROW_FIELDS = tuple(f.name for f in fields(StatusRow))


def row_of(state: ObservedState) -> StatusRow:
    """The row a recorded state shows."""
    return StatusRow(
        state.env,
        state.app,
        state.desired,
        state.deployed,
        state.sync,
        state.health,
        state.rollout,
        state.rollout_step,
        state.target,
        state.availability,
        state.message,
        state.revision,
        _retry_at(state),
    )


def _retry_at(state: ObservedState) -> datetime | None:
    """When the row is looked at again by itself: a transient failure's retry, a policy hold's
    next judgement, a bake's next health check."""
    if state.rollout == Rollout.HELD or state.failure == Failure.TRANSIENT or state.bake_until:
        return state.retry_at
    return None


def pending_row(env: str, app: str, desired: str, revision: str, target: str | None) -> StatusRow:
    """A pin Git has that no pass has reconciled yet: nothing is known of it."""
    return StatusRow(
        env,
        app,
        desired,
        None,
        Sync.UNKNOWN,
        Health.UNKNOWN,
        None,
        "",
        target,
        Availability.UNKNOWN,
        f"not reconciled yet (Git is at {revision[:12]})",
        None,
    )


def status_rows(
    recorded: Iterable[ObservedState],
    pins: Mapping[tuple[str, str], tuple[str, str | None]] | None = None,
    revision: str = "",
) -> list[StatusRow]:
    """Recorded rows, with what Git pins now that no pass has reconciled yet.

    `pins` maps (env, app) to (version, target) at `revision`. A pin with no recorded row
    gets a pending row; a recorded row whose desired release Git has since changed says
    so: the new desired release, OutOfSync when it is not what runs (Unknown when it is,
    as only a pass can tell), health and the last rollout as recorded.
    """
    return pinned_rows(recorded_rows(recorded), pins, revision)


def recorded_rows(recorded: Iterable[ObservedState]) -> dict[tuple[str, str], StatusRow]:
    """The row of each recorded state, by (env, app)."""
    return {state.key: row_of(state) for state in recorded}


def pinned_rows(
    recorded: Mapping[tuple[str, str], StatusRow],
    pins: Mapping[tuple[str, str], tuple[str, str | None]] | None = None,
    revision: str = "",
) -> list[StatusRow]:
    """`status_rows` from the recorded states' rows, already made (a screen that polls keeps
    them while the store has not moved: ten thousand apps' rows take a third of a second)."""
    rows = dict(recorded)
    for key, (version, target) in (pins or {}).items():
        row = rows.get(key)
        if row is None:
            rows[key] = pending_row(*key, version, revision, target)
        elif row.desired != version:
            rows[key] = _pin_moved(row, version, target, revision)
    return [rows[key] for key in sorted(rows)]


def _pin_moved(row: StatusRow, version: str, target: str | None, revision: str) -> StatusRow:
    """A recorded row whose pin Git has moved since the pass that recorded it."""
    return replace(
        row,
        desired=version,
        sync=Sync.OUT_OF_SYNC if version != row.deployed else Sync.UNKNOWN,
        target=target or row.target,
        message=f"Git at {revision[:12]} pins {version}: not reconciled yet",
    )


# -- transitions ------------------------------------------------------------------------


def planned(
    action: Action, previous: ObservedState | None, revision: str, now: datetime
) -> ObservedState:
    """The row the plan makes of one (env, app), before any rollout step runs."""
    base = previous or ObservedState(env=action.env, app=action.app)
    release = action.release  # its target only: a pass plans thousands of unchanged pins
    running = action.from_version
    update: dict[str, Any] = {
        "desired": action.to_version,
        "deployed": running,
        "sync": action.sync,
        "revision": revision,
        "updated_at": now,
        "target": release.target if release is not None else base.running_target,
        "health": _running_health(base, running),
    }
    if release is not None:
        update["availability"] = action.availability
    if running is None:
        update["running_target"] = None
    if action.kind == ActionKind.DEPLOY:
        reason = action.reason
        doing = f"rolling out {action.to_version}" + (f" ({reason})" if reason else "")
        update.update(
            health=Health.PROGRESSING,
            rollout=Rollout.RUNNING,
            rollout_step="",
            rollout_reason=reason,
            message=doing,
        )
    elif action.kind == ActionKind.HOLD and action.rollout == Rollout.HELD:
        update.update(rollout=Rollout.HELD, rollout_step=action.step, rollout_reason=action.reason)
        update.update(message=action.reason, retry_at=action.retry_at)
        if action.health is not None:
            update["health"] = action.health
    elif action.kind == ActionKind.HOLD:
        update["message"] = action.reason  # a failure waiting: the rollout stays Failed
    elif action.kind == ActionKind.VERIFY:
        update.update(rollout_step="health check (live)", message=action.reason)
    elif action.kind == ActionKind.DEGRADE:
        update.update(message=action.reason)
    elif action.kind == ActionKind.NOOP:
        update.update(_settled(action, base))
    return base.model_copy(update=update)


def baking(state: ObservedState, bake: Bake, previous: str | None, now: datetime) -> ObservedState:
    """The release went live and healthy; it bakes now, its health checked every interval.

    Soak downstream counts from the end of the bake, so `healthy_since` waits for it.
    """
    until = now + bake.duration
    return state.model_copy(
        update={
            "rollout": Rollout.RUNNING,
            "rollout_step": "bake",
            "message": f"baking until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
            "healthy_since": None,
            "bake_until": until,
            "retry_at": min(now + bake.interval, until),
            "previous": previous,
        }
    )


def baked(state: ObservedState, bake: Bake, now: datetime) -> ObservedState:
    """One more healthy check: still baking, or done (soak starts now)."""
    if state.bake_until is not None and now < state.bake_until:
        return state.model_copy(
            update={"retry_at": min(now + bake.interval, state.bake_until), "updated_at": now}
        )
    return state.model_copy(
        update={
            "rollout": Rollout.SUCCEEDED,
            "rollout_step": "",
            "message": "",
            "healthy_since": now,
            "bake_until": None,
            "retry_at": None,
            "updated_at": now,
        }
    )


def stepped(state: ObservedState, step: str, now: datetime) -> ObservedState:
    """A running rollout reached `step`."""
    message = f"rolling out {state.desired}: {step}"
    return state.model_copy(update={"rollout_step": step, "message": message, "updated_at": now})


def succeeded(
    state: ObservedState,
    manifest: ReleaseManifest,
    now: datetime,
    qir_sha256: str | None,
    physical_qubits: int | None,
) -> ObservedState:
    """The desired release is live and healthy."""
    same_release = state.deployed == manifest.version and state.healthy_since is not None
    return state.model_copy(
        update={
            "deployed": manifest.version,
            "sync": Sync.SYNCED,
            "health": Health.HEALTHY,
            "rollout": Rollout.SUCCEEDED,
            "rollout_step": "",
            "rollout_reason": "",
            "message": "",
            "healthy_since": state.healthy_since if same_release else now,
            "updated_at": now,
            "target": manifest.quantum.target.id,
            "running_target": manifest.quantum.target.id,
            "failed_version": None,
            "failed_revision": None,
            "failure": None,
            "attempts": 0,
            "retry_at": None,
            "qir_sha256": qir_sha256,
            "physical_qubits": physical_qubits,
        }
    )


@dataclass(frozen=True)
class Outcome:
    """How a failed rollout left things: which step, why, whether a retry can help, what runs.

    `live` is the version running afterwards and `live_health` its health when the rollout
    learnt it (after a switch, or a switch back); None keeps what ran before. `went_live`
    says the desired release was switched to and stays live (no rollback).
    """

    step: str
    reason: str
    failure: Failure
    live: str | None
    live_health: Health | None = None
    live_target: str | None = None
    went_live: bool = False


def failed(
    before: ObservedState | None,
    state: ObservedState,
    outcome: Outcome,
    revision: str,
    now: datetime,
) -> ObservedState:
    """The rollout toward `state.desired` failed; `before` is the row before this pass."""
    version = state.desired
    again = before is not None and (before.failed_version, before.failed_revision) == (
        version,
        revision,
    )
    attempts = (before.attempts if again and before else 0) + 1
    retry_at = now + retry_delay(attempts) if outcome.failure == Failure.TRANSIENT else None
    health = outcome.live_health
    if health is None:
        health = _running_health(before or state, outcome.live)
    then = f"retrying at {retry_at:%H:%M:%S} UTC (attempt {attempts})" if retry_at else MANUAL_RETRY
    update: dict[str, Any] = {
        "deployed": outcome.live,
        "sync": Sync.SYNCED if outcome.went_live else state.sync,
        "health": health,
        "rollout": Rollout.FAILED,
        "rollout_step": outcome.step,
        "rollout_reason": outcome.reason,
        "message": f"{outcome.step} failed for {version}: {outcome.reason}; {then}",
        "updated_at": now,
        "failed_version": version,
        "failed_revision": revision,
        "failure": outcome.failure,
        "attempts": attempts,
        "retry_at": retry_at,
    }
    if outcome.live_target is not None:
        update["running_target"] = outcome.live_target
    if outcome.live is None:
        update["running_target"] = None
    if outcome.live != (before.deployed if before else None) or health != Health.HEALTHY:
        update["healthy_since"] = None
    update.update(bake_until=None, previous=None)
    return state.model_copy(update=update)


def recovered(
    state: ObservedState | None,
    env: str,
    app: str,
    live: str | None,
    step: str,
    now: datetime,
    previous: str | None = None,
) -> ObservedState:
    """A crash cut a rollout short: what runs is known, its health is not.

    `previous` is the release that ran before, when the interrupted rollout had already
    switched: the check that verifies the new one switches back to it if that fails.
    """
    base = state or ObservedState(env=env, app=app)
    return base.model_copy(
        update={
            "deployed": live,
            "health": Health.UNKNOWN,
            "rollout": Rollout.FAILED,
            "rollout_step": step,
            "rollout_reason": "interrupted",
            "message": f"recovered after an interrupted {step}",
            "updated_at": now,
            "healthy_since": None,
            "previous": previous,
        }
    )


def verified(state: ObservedState, now: datetime) -> ObservedState:
    """The release an interrupted rollout left live passed its health check: it is live."""
    return state.model_copy(
        update={
            "health": Health.HEALTHY,
            "sync": Sync.SYNCED,
            "rollout": Rollout.SUCCEEDED,
            "rollout_step": "",
            "rollout_reason": "verified after an interrupted rollout",
            "message": "",
            "updated_at": now,
            "healthy_since": now,
            "failed_version": None,
            "failed_revision": None,
            "failure": None,
            "attempts": 0,
            "retry_at": None,
            "previous": None,
        }
    )


def retry_delay(attempts: int) -> timedelta:
    """The wait before retrying a transient failure after `attempts` tries: doubling, capped.

    >>> [retry_delay(n).total_seconds() for n in (1, 2, 3, 10)]
    [30.0, 60.0, 120.0, 600.0]
    """
    grown: timedelta = RETRY_BASE * 2 ** min(max(attempts - 1, 0), 16)
    return min(grown, RETRY_CAP)


def same_row(old: ObservedState, new: ObservedState) -> bool:
    """True when nothing but the pass's revision and time differ (nothing to write)."""
    ignore = {"updated_at", "revision"}
    return old.model_dump(exclude=ignore) == new.model_dump(exclude=ignore)


def _settled(action: Action, base: ObservedState) -> dict[str, Any]:
    """A Noop: an unwanted app says why it still runs; a wanted one forgets other failures."""
    if action.to_version is None:
        return {"message": action.reason}
    if base.failed_version is not None and base.failed_version != action.to_version:
        return {
            "message": "",
            "failed_version": None,
            "failed_revision": None,
            "failure": None,
            "attempts": 0,
            "retry_at": None,
        }
    if base.failed_version == action.to_version:
        return {}  # live but failed its health check: keep saying why
    if base.rollout == Rollout.HELD:  # Git asks for what runs again: nothing is held any more
        return {"message": "", "rollout": None, "rollout_reason": "", "retry_at": None}
    return {"message": ""}


def _running_health(base: ObservedState, running: str | None) -> Health:
    """The health of what runs, as last known: Missing when nothing does."""
    if running is None:
        return Health.MISSING
    if base.deployed != running or base.health in (Health.MISSING, Health.PROGRESSING):
        return Health.UNKNOWN
    return base.health
