"""Job statistics and the quantum-health verdict: pure, with the clock's reading passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qrelease.model.environment import QuantumHealth
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.planning.jobs import by_release, health_problem, job_stats

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = QuantumHealth(max_failure_rate=0.2, min_jobs=10, window=timedelta(minutes=30))


def job(
    index: int,
    status: JobStatus,
    *,
    ended_ago: timedelta | None = timedelta(minutes=5),
    queue: float = 10.0,
    run: float = 20.0,
    cost: float | None = 0.5,
) -> QuantumJob:
    ended = None if ended_ago is None else NOW - ended_ago
    began = None if ended is None else ended - timedelta(seconds=run)
    created = (began or NOW) - timedelta(seconds=queue)
    return QuantumJob(
        env="prod",
        job_id=f"j{index}",
        app="bell",
        version="1.0.0",
        status=status,
        created_at=created,
        began_at=began,
        ended_at=ended,
        cost=cost if ended is not None else None,
        currency="USD",
    )


def test_counts_percentiles_and_cost() -> None:
    jobs = [job(i, JobStatus.SUCCEEDED, queue=float(i + 1)) for i in range(18)]
    jobs += [job(18, JobStatus.FAILED, queue=100.0), job(19, JobStatus.CANCELLED, cost=None)]
    jobs.append(job(20, JobStatus.WAITING, ended_ago=None))

    stats = job_stats(jobs, NOW)

    assert (stats.submitted, stats.succeeded, stats.failed) == (21, 18, 1)
    assert (stats.cancelled, stats.running) == (1, 1)
    assert (stats.queue_p50, stats.queue_p95) == (10.0, 18.0)  # nearest rank of 20 queue times
    assert (stats.execution_p50, stats.execution_p95) == (20.0, 20.0)
    assert stats.cost == {"USD": 9.5}
    assert stats.window_failure_rate is None  # no quantum_health: no window


def test_only_jobs_that_ended_in_the_window_are_judged() -> None:
    recent = [job(i, JobStatus.SUCCEEDED) for i in range(8)]
    recent += [job(8, JobStatus.FAILED), job(9, JobStatus.FAILED)]
    old = [job(10 + i, JobStatus.FAILED, ended_ago=timedelta(hours=1)) for i in range(20)]
    cancelled = [job(40 + i, JobStatus.CANCELLED) for i in range(20)]

    stats = job_stats(recent + old + cancelled, NOW, POLICY)

    assert (stats.window_succeeded, stats.window_failed, stats.window_cancelled) == (8, 2, 20)
    assert stats.window_failure_rate == pytest.approx(0.2)
    assert health_problem(stats, POLICY) is None  # at the limit is not over it


@pytest.mark.parametrize(
    ("succeeded", "failed", "degraded"),
    [(7, 3, True), (2, 7, False), (9, 1, False), (0, 10, True)],
)
def test_the_verdict_needs_enough_jobs_and_a_rate_over_the_limit(
    succeeded: int, failed: int, degraded: bool
) -> None:
    jobs = [job(i, JobStatus.SUCCEEDED) for i in range(succeeded)]
    jobs += [job(100 + i, JobStatus.FAILED) for i in range(failed)]
    problem = health_problem(job_stats(jobs, NOW, POLICY), POLICY)
    assert (problem is not None) == degraded
    if degraded:
        assert problem is not None and f"{failed} of {succeeded + failed} quantum jobs" in problem


def test_as_json_and_grouping_by_release() -> None:
    jobs = [job(1, JobStatus.SUCCEEDED), job(2, JobStatus.FAILED)]
    other = QuantumJob(**{**vars_of(jobs[0]), "job_id": "x", "version": "1.1.0"})
    grouped = by_release([*jobs, other])
    assert sorted(grouped) == [("prod", "bell", "1.0.0"), ("prod", "bell", "1.1.0")]
    shown = job_stats(jobs, NOW, POLICY).as_json()
    assert shown["window"] == {"succeeded": 1, "failed": 1, "cancelled": 0, "failure_rate": 0.5}
    assert shown["cost"] == {"USD": 1.0}


def vars_of(value: QuantumJob) -> dict[str, object]:
    return {name: getattr(value, name) for name in QuantumJob.__slots__}
