"""Watching the quantum jobs live releases submit: read each workspace, keep the jobs, judge them.

For every Azure Quantum environment a pass (or the controller, between passes) covers,
`JobMonitor.poll` reads the workspace's job list from where the last read stopped (at most
`max_jobs` jobs), re-reads up to `max_refresh` stored jobs that had not ended, and stores
the jobs tagged for an app of the environment. Only the lease holder of an environment
polls it: the store refuses a fenced write from anyone else. What changed is returned for
the metrics (`JobChange`), so counters count each job once per controller process.

`verdicts` turns the stored jobs of each desired, live release into the planner's input
under `policy.quantum_health`; `live_job_stats` is the data every surface shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from qrelease.azure.jobs import first_cursor
from qrelease.engine.backends import Backends
from qrelease.model.environment import AzureQuantum, Environment
from qrelease.model.jobs import JobCursor, QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.planning.jobs import JobStats, health_problem, job_stats
from qrelease.quantum.base import JobReader
from qrelease.store.base import JOB_CURSOR_KEY, StateStore

CURSOR_KEY = JOB_CURSOR_KEY


@dataclass(frozen=True)
class MonitorSettings:
    """How much one poll reads per environment, and how long jobs are kept."""

    max_jobs: int = 500
    max_refresh: int = 100
    backfill: timedelta = timedelta(days=1)
    retention: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class JobChange:
    """A job as read now, and as it was stored before (None: first seen)."""

    job: QuantumJob
    before: QuantumJob | None

    @property
    def submitted(self) -> bool:
        """True the first time the job is seen."""
        return self.before is None

    @property
    def ended(self) -> bool:
        """True when the job ended since it was last seen."""
        return self.job.status.ended and (self.before is None or not self.before.status.ended)

    @property
    def began(self) -> bool:
        """True when the job's queue time is known for the first time."""
        return self.job.began_at is not None and (
            self.before is None or self.before.began_at is None
        )


@dataclass(frozen=True)
class MonitorReport:
    """One poll: what changed, how many jobs each environment listed, and what failed."""

    changes: tuple[JobChange, ...] = ()
    listed: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)


def watched(env: Environment) -> bool:
    """True for an environment whose jobs are read: its quantum side is an Azure workspace."""
    return isinstance(env.quantum, AzureQuantum)


class JobMonitor:
    """Reads the workspaces of the environments it is given and stores their releases' jobs."""

    def __init__(
        self,
        store: StateStore,
        backends: Backends,
        clock: Callable[[], datetime],
        settings: MonitorSettings | None = None,
    ) -> None:
        self.store = store
        self.backends = backends
        self.clock = clock
        self.settings = settings or MonitorSettings()

    def poll(self, environments: Iterable[Environment]) -> MonitorReport:
        """Read each watched environment once; one failing never stops the others."""
        changes: list[JobChange] = []
        listed: dict[str, int] = {}
        errors: dict[str, str] = {}
        for env in environments:
            reader = self.backends.jobs_for(env) if watched(env) else None
            if reader is None:
                continue
            name = env.environment
            try:
                count, found = self._poll_one(env, reader)
            except Exception as error:  # the service or the store: reported, retried next poll
                errors[name] = f"{type(error).__name__}: {error}"
                continue
            listed[name] = count
            changes += found
        return MonitorReport(tuple(changes), listed, errors)

    def _poll_one(self, env: Environment, reader: JobReader) -> tuple[int, list[JobChange]]:
        name, now, settings = env.environment, self.clock(), self.settings
        cursor = self._cursor(name, now)
        read = reader.read_jobs(cursor, settings.max_jobs)
        mine = [job for job in read.jobs if job.app in env.apps]
        listed_ids = {job.job_id for job in mine}
        stale = [
            job
            for job in self.store.open_jobs(name, settings.max_refresh)
            if job.job_id not in listed_ids
        ]
        fresh = reader.refresh_jobs(stale, now) if stale else []
        oldest = min((job.created_at for job in mine), default=None)
        before = {job.job_id: job for job in stale}
        if oldest is not None:
            before |= {job.job_id: job for job in self.store.jobs(name, since=oldest)}
        changes = [
            JobChange(job, before.get(job.job_id))
            for job in [*mine, *fresh]
            if before.get(job.job_id) != job
        ]
        with self.store.transaction():
            self.store.put_jobs([change.job for change in changes])
            self.store.set_meta(CURSOR_KEY + name, _cursor_text(read.cursor))
            self.store.prune_jobs(name, now - settings.retention)
        return read.listed, changes

    def _cursor(self, env: str, now: datetime) -> JobCursor:
        """Where the environment's last read stopped (a first read starts `backfill` ago)."""
        text = self.store.get_meta(CURSOR_KEY + env)
        if text is None:
            return first_cursor(now, self.settings.backfill)
        data = json.loads(text)
        return JobCursor(str(data["since"]), int(data["offset"]))


def _cursor_text(cursor: JobCursor) -> str:
    return json.dumps({"since": cursor.since, "offset": cursor.offset}, sort_keys=True)


def verdicts(
    store: StateStore,
    environments: Iterable[Environment],
    observed: Mapping[tuple[str, str], ObservedState],
    now: datetime,
) -> dict[tuple[str, str], str]:
    """Why each desired, live release with `policy.quantum_health` is Degraded by its jobs."""
    problems: dict[tuple[str, str], str] = {}
    for env in environments:
        health = env.policy.quantum_health
        if health is None:
            continue
        for app, version in env.apps.items():
            state = observed.get((env.environment, app))
            if state is None or state.deployed != version:
                continue
            since = now - health.window - timedelta(days=1)  # jobs that may end in the window
            jobs = store.jobs(env.environment, app, version, since=since)
            problem = health_problem(job_stats(jobs, now, health), health)
            if problem is not None:
                problems[(env.environment, app)] = problem
    return problems


def live_job_stats(
    store: StateStore,
    environments: Mapping[str, Environment],
    observed: Iterable[ObservedState],
    now: datetime,
) -> dict[tuple[str, str], JobStats]:
    """The job statistics of the release each watched (environment, app) runs."""
    stats: dict[tuple[str, str], JobStats] = {}
    for state in observed:
        env = environments.get(state.env)
        if env is None or not watched(env) or state.deployed is None:
            continue
        jobs = store.jobs(state.env, state.app, state.deployed)
        stats[state.key] = job_stats(jobs, now, env.policy.quantum_health)
    return stats


def live_jobs_json(
    store: StateStore,
    environments: Mapping[str, Environment],
    observed: Iterable[ObservedState],
    now: datetime,
) -> dict[tuple[str, str], dict[str, Any]]:
    """What every surface shows as a row's `quantum_jobs`: the live version and its stats.

    `/status`, `qrelease status --json` (and `qrelease get` and the TUI's detail pane)
    call this one function, so they agree.
    """
    rows = list(observed)
    deployed = {state.key: state.deployed for state in rows}
    return {
        key: {"version": deployed[key], **stats.as_json()}
        for key, stats in live_job_stats(store, environments, rows, now).items()
    }
