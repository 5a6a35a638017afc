"""Statistics of a release's quantum jobs, and the health verdict `policy.quantum_health` draws.

Pure: jobs and the clock's reading in, values out. The controller computes them from the
jobs it stored for each live release; `/status`, `qrelease status --json` and the TUI show
them; the planner degrades a release whose verdict fails.

Percentiles are nearest-rank over the jobs that have the duration (queue time once a job
began, execution time once it ended); costs are summed per currency as the service
reports them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qrelease.model.environment import QuantumHealth
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.model.types import format_duration

HEALTH_STEP = "quantum jobs"
"""The rollout step a failed quantum-health verdict is recorded under."""


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (None for none).

    >>> percentile([4.0, 1.0, 3.0, 2.0], 0.5), percentile([4.0, 1.0, 3.0, 2.0], 0.95)
    (2.0, 4.0)
    >>> percentile([], 0.5) is None
    True
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(frozen=True)
class JobStats:
    """What one release's jobs came to: counts by status, queue and execution time, cost.

    `submitted` counts every job; `running` those not ended yet. `window_*` count the jobs
    that ended in the quantum-health window (all zero without one).
    """

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    queue_p50: float | None = None
    queue_p95: float | None = None
    execution_p50: float | None = None
    execution_p95: float | None = None
    cost: Mapping[str, float] = field(default_factory=dict)
    window_succeeded: int = 0
    window_failed: int = 0
    window_cancelled: int = 0

    @property
    def window_failure_rate(self) -> float | None:
        """Failed over Succeeded + Failed in the window (None when neither happened)."""
        judged = self.window_succeeded + self.window_failed
        return self.window_failed / judged if judged else None

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values, as `/status` and `status --json` show them."""
        rate = self.window_failure_rate
        return {
            "submitted": self.submitted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "running": self.running,
            "queue_seconds": {"p50": self.queue_p50, "p95": self.queue_p95},
            "execution_seconds": {"p50": self.execution_p50, "p95": self.execution_p95},
            "cost": dict(sorted(self.cost.items())),
            "window": {
                "succeeded": self.window_succeeded,
                "failed": self.window_failed,
                "cancelled": self.window_cancelled,
                "failure_rate": None if rate is None else round(rate, 6),
            },
        }


def job_stats(
    jobs: Iterable[QuantumJob], now: datetime, health: QuantumHealth | None = None
) -> JobStats:
    """The statistics of one release's jobs at `now` (window counts with a quantum_health)."""
    counts = dict.fromkeys(JobStatus, 0)
    queue: list[float] = []
    execution: list[float] = []
    cost: dict[str, float] = {}
    window = dict.fromkeys(JobStatus, 0)
    start = now - health.window if health is not None else None
    for job in jobs:
        counts[job.status] += 1
        if job.queue_seconds is not None:
            queue.append(job.queue_seconds)
        if job.status.ended and job.execution_seconds is not None:
            execution.append(job.execution_seconds)
        if job.cost is not None:
            currency = job.currency or "?"
            cost[currency] = round(cost.get(currency, 0.0) + job.cost, 9)
        ended = job.ended_at or (job.created_at if job.status.ended else None)
        if start is not None and job.status.ended and ended is not None and start < ended <= now:
            window[job.status] += 1
    return JobStats(
        submitted=sum(counts.values()),
        succeeded=counts[JobStatus.SUCCEEDED],
        failed=counts[JobStatus.FAILED],
        cancelled=counts[JobStatus.CANCELLED],
        running=counts[JobStatus.WAITING] + counts[JobStatus.EXECUTING],
        queue_p50=percentile(queue, 0.5),
        queue_p95=percentile(queue, 0.95),
        execution_p50=percentile(execution, 0.5),
        execution_p95=percentile(execution, 0.95),
        cost=cost,
        window_succeeded=window[JobStatus.SUCCEEDED],
        window_failed=window[JobStatus.FAILED],
        window_cancelled=window[JobStatus.CANCELLED],
    )


def health_problem(stats: JobStats, health: QuantumHealth) -> str | None:
    """Why the release's jobs make it Degraded, or None while they do not (or too few ended).

    >>> from datetime import timedelta
    >>> policy = QuantumHealth(max_failure_rate=0.2, min_jobs=10, window=timedelta(minutes=30))
    >>> print(health_problem(JobStats(window_succeeded=7, window_failed=3), policy))
    3 of 10 quantum jobs failed in the last 30m (30%, over the limit of 20%)
    >>> health_problem(JobStats(window_succeeded=2, window_failed=3), policy) is None
    True
    """
    judged = stats.window_succeeded + stats.window_failed
    rate = stats.window_failure_rate
    if judged < health.min_jobs or rate is None or rate <= health.max_failure_rate:
        return None
    return (
        f"{stats.window_failed} of {judged} quantum jobs failed in the last"
        f" {format_duration(health.window)} ({rate:.0%}, over the limit of"
        f" {health.max_failure_rate:.0%})"
    )


def by_release(jobs: Iterable[QuantumJob]) -> dict[tuple[str, str, str], list[QuantumJob]]:
    """Jobs grouped by (env, app, version)."""
    grouped: dict[tuple[str, str, str], list[QuantumJob]] = {}
    for job in jobs:
        grouped.setdefault((job.env, job.app, job.version), []).append(job)
    return grouped
