"""The job monitor over a fake JobReader (our own Protocol) and the in-memory store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine.backends import Backends
from qrelease.engine.monitor import (
    CURSOR_KEY,
    JobMonitor,
    MonitorSettings,
    live_jobs_json,
    verdicts,
)
from qrelease.model.environment import Environment
from qrelease.model.jobs import JobCursor, JobStatus, QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.quantum.base import JobRead
from qrelease.quantum.memory import MemoryQuantum
from qrelease.store import open_store
from tests.helpers.clock import ManualClock

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
AZURE = {
    "kind": "azure",
    "subscription": "s",
    "resource_group": "rg",
    "workspace": "ws",
    "location": "eastus",
}


def environment(name: str = "prod", **policy: object) -> Environment:
    return Environment.model_validate(
        {"environment": name, "quantum": AZURE, "policy": policy, "apps": {"bell": "1.0.0"}}
    )


def job(index: int, status: JobStatus = JobStatus.SUCCEEDED, app: str = "bell") -> QuantumJob:
    created = NOW - timedelta(minutes=10) + timedelta(seconds=index)
    ended = created + timedelta(seconds=30) if status.ended else None
    return QuantumJob("prod", f"j{index}", app, "1.0.0", status, created, ended_at=ended)


class FakeReader:
    """A workspace's job list in order; reads from the cursor's offset, refreshes by id."""

    def __init__(self, jobs: list[QuantumJob]) -> None:
        self.listing = jobs
        self.now: dict[str, QuantumJob] = {}
        self.fail: str | None = None

    def read_jobs(self, cursor: JobCursor, limit: int) -> JobRead:
        if self.fail:
            raise RuntimeError(self.fail)
        page = self.listing[cursor.offset : cursor.offset + limit]
        return JobRead(page, JobCursor(cursor.since, cursor.offset + len(page)), len(page))

    def refresh_jobs(self, jobs: Sequence[QuantumJob], now: datetime) -> list[QuantumJob]:
        return [self.now.get(job.job_id, job) for job in jobs]


def monitor(reader: FakeReader, max_jobs: int = 100) -> tuple[JobMonitor, ManualClock]:
    clock = ManualClock(NOW)
    backends = Backends(
        lambda env: MemoryDeployer(), lambda env: MemoryQuantum(), jobs_for=lambda env: reader
    )
    settings = MonitorSettings(max_jobs=max_jobs, max_refresh=10)
    return JobMonitor(open_store("memory:"), backends, clock, settings), clock


def test_a_poll_keeps_the_environments_apps_jobs_and_moves_the_cursor() -> None:
    reader = FakeReader([job(0), job(1, JobStatus.FAILED), job(2, app="someone-else"), job(3)])
    jobs, _ = monitor(reader, max_jobs=3)

    first = jobs.poll([environment(), Environment(environment="dev")])  # dev: local, not read
    second = jobs.poll([environment()])

    assert [c.job.job_id for c in first.changes] == ["j0", "j1"]
    assert all(c.submitted and c.ended for c in first.changes)
    assert [c.job.job_id for c in second.changes] == ["j3"]
    assert [j.job_id for j in jobs.store.jobs("prod")] == ["j0", "j1", "j3"]
    assert jobs.store.get_meta(CURSOR_KEY + "prod") == '{"offset": 4, "since": "2026-04-30"}'
    assert (first.listed, first.errors) == ({"prod": 3}, {})


def test_open_jobs_are_refreshed_and_counted_once_when_they_end() -> None:
    reader = FakeReader([job(0, JobStatus.EXECUTING)])
    jobs, _ = monitor(reader)
    jobs.poll([environment()])
    assert jobs.poll([environment()]).changes == ()  # nothing new, nothing written
    reader.now["j0"] = replace(job(0), status=JobStatus.FAILED)

    ended = jobs.poll([environment()]).changes

    assert [(c.job.status, c.submitted, c.ended) for c in ended] == [
        (JobStatus.FAILED, False, True)
    ]
    assert jobs.store.open_jobs("prod", 10) == []


def test_a_failing_workspace_is_reported_and_others_still_read() -> None:
    failing, working = FakeReader([]), FakeReader([job(0)])
    failing.fail = "HttpResponseError: 503"
    clock = ManualClock(NOW)
    readers = {"bad": failing, "prod": working}
    backends = Backends(
        lambda env: MemoryDeployer(),
        lambda env: MemoryQuantum(),
        jobs_for=lambda env: readers[env.environment],
    )
    jobs = JobMonitor(open_store("memory:"), backends, clock)

    report = jobs.poll([environment("bad"), environment()])

    assert report.errors == {"bad": "RuntimeError: HttpResponseError: 503"}
    assert [c.job.job_id for c in report.changes] == ["j0"]


def test_verdicts_judge_only_the_desired_live_release_and_stats_show_it() -> None:
    statuses = [JobStatus.SUCCEEDED] * 7 + [JobStatus.FAILED] * 3
    reader = FakeReader([job(i, status) for i, status in enumerate(statuses)])
    jobs, clock = monitor(reader)
    env = environment(quantum_health={"max_failure_rate": 0.2, "min_jobs": 10, "window": "30m"})
    jobs.poll([env])
    live = {("prod", "bell"): ObservedState(env="prod", app="bell", deployed="1.0.0")}
    other = {("prod", "bell"): ObservedState(env="prod", app="bell", deployed="0.9.0")}

    assert verdicts(jobs.store, [env], live, clock())[("prod", "bell")].startswith("3 of 10")
    assert verdicts(jobs.store, [env], other, clock()) == {}
    clock.advance(timedelta(hours=1))  # they ended outside the window
    assert verdicts(jobs.store, [env], live, clock()) == {}
    shown = live_jobs_json(jobs.store, {"prod": env}, live.values(), clock())
    assert shown[("prod", "bell")]["version"] == "1.0.0"
    assert (shown[("prod", "bell")]["submitted"], shown[("prod", "bell")]["failed"]) == (10, 3)
