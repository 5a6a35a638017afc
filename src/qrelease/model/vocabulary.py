"""Closed vocabularies shared by every layer: sync, health, availability, gates, actions.

Health has an explicit worse-than order so that aggregation is one `max`, the way
Argo CD's gitops-engine compares health with `IsWorse`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Sync(StrEnum):
    """Whether what runs matches what Git asks for."""

    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    """How a deployed release is doing; members are declared best first.

    >>> worst([Health.HEALTHY, Health.DEGRADED, Health.PROGRESSING])
    <Health.DEGRADED: 'Degraded'>
    >>> Health.MISSING.is_worse_than(Health.PROGRESSING)
    True
    """

    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"

    @property
    def rank(self) -> int:
        """Position in the worse-than order (0 is best)."""
        return _HEALTH_ORDER.index(self)

    def is_worse_than(self, other: Health) -> bool:
        """True when this health ranks below `other`."""
        return self.rank > other.rank


_HEALTH_ORDER: tuple[Health, ...] = tuple(Health)


def worst(healths: Iterable[Health]) -> Health:
    """The worst of several healths; Healthy for none."""
    return max(healths, key=lambda health: health.rank, default=Health.HEALTHY)


class Availability(StrEnum):
    """A quantum target's availability: its own axis, never a reason to roll back."""

    AVAILABLE = "Available"
    DEGRADED = "Degraded"
    UNAVAILABLE = "Unavailable"
    UNKNOWN = "Unknown"


class GateOutcome(StrEnum):
    """The typed result of one quantum gate."""

    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    SKIPPED = "Skipped"


class ActionKind(StrEnum):
    """What the planner decided for one (environment, app)."""

    DEPLOY = "Deploy"
    NOOP = "Noop"
    HOLD = "Hold"
    PRUNE = "Prune"
    BAKE = "Bake"
    VERIFY = "Verify"
    DEGRADE = "Degrade"  # what runs fails a live signal (its quantum jobs): switch back


class Rollout(StrEnum):
    """How the last rollout of an (environment, app) went: its own field, beside health.

    Health says how what runs is doing; a candidate that failed its gates or its health
    check never makes a healthy live release Degraded, it makes the rollout Failed.
    """

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RUNNING = "Running"
    HELD = "Held"


class Failure(StrEnum):
    """Whether retrying the same release at the same revision can help.

    Transient failures (a package index or wheel source that cannot be reached, a network
    error) are retried with capped exponential backoff; deterministic ones (a gate, a health
    check, a hash mismatch) wait for a new revision or an explicit retry.
    """

    TRANSIENT = "transient"
    DETERMINISTIC = "deterministic"


class EventKind(StrEnum):
    """What an audit event records (the `action` column of the log)."""

    GATE = "gate"
    INSTALL = "install"
    SWITCH = "switch"
    DEPLOY = "deploy"
    AUTO_ROLLBACK = "auto-rollback"
    HOLD = "hold"
    PRUNE = "prune"
    RECOVER = "recover"
    BAKE = "bake"
    QUANTUM_HEALTH = "quantum-health"  # the live release's quantum jobs failed too often
    INFRASTRUCTURE = "infrastructure"  # an environment's quantum infrastructure (no app)
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    SUSPEND = "suspend"
    RESUME = "resume"


class EventOutcome(StrEnum):
    """How the recorded step ended (the `outcome` column of the log)."""

    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    SKIPPED = "Skipped"
    SUCCEEDED = "Succeeded"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    RESTORED = "Restored"
    HELD = "Held"
    PRUNED = "Pruned"
    FORGOTTEN = "Forgotten"
    RECOVERED = "Recovered"
    COMMITTED = "Committed"
    FORCED = "Forced"


class NotificationKind(StrEnum):
    """What a notification rule can ask to hear about; an audit event may be several at once.

    A hold is always `hold`, and also `approval-needed` when it waits for approvals or
    `target-unavailable` when the quantum target is down.
    """

    DEPLOY_SUCCEEDED = "deploy-succeeded"
    DEPLOY_FAILED = "deploy-failed"
    AUTO_ROLLBACK = "auto-rollback"
    HOLD = "hold"
    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    APPROVAL_NEEDED = "approval-needed"
    GATE_FAILED = "gate-failed"
    TARGET_UNAVAILABLE = "target-unavailable"


class PassOutcome(StrEnum):
    """How a whole reconcile pass ended.

    `succeeded`: every desired change is live and Git was read without problems;
    `failed`: something did not go live or a file is invalid; `error`: the pass itself broke.
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERROR = "error"
