"""Quantum jobs a live release submitted, as the controller keeps them, and the tags that say so.

An application delivered by qrelease reads its release lock (app, env, version) and tags
every job it submits to its Azure Quantum workspace with them. The controller reads the
workspace's jobs, keeps those tagged for an app of the environment (`QuantumJob`, one row
per job in the store's `quantum_jobs` table) and judges each live release's jobs.

Tags are plain strings on the job (the service's `tags` list):

>>> tags = release_tags("prod", "bell-service", "1.2.0")
>>> tags
['qrelease', 'qrelease.env=prod', 'qrelease.app=bell-service', 'qrelease.version=1.2.0']
>>> release_of(tags + ["team:quantum"])
('prod', 'bell-service', '1.2.0')
>>> release_of(["qrelease", "env:prod"]) is None  # a verification job of the controller
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

TAG = "qrelease"
_ENV, _APP, _VERSION = "qrelease.env=", "qrelease.app=", "qrelease.version="


class JobStatus(StrEnum):
    """Where a job is in its lifecycle, in the service's own words (Azure Quantum's statuses).

    >>> [str(JobStatus.parse(word)) for word in ("Completed", "Finishing", "failed", "?")]
    ['Succeeded', 'Executing', 'Failed', 'Waiting']
    """

    WAITING = "Waiting"
    EXECUTING = "Executing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def ended(self) -> bool:
        """True for Succeeded, Failed and Cancelled: the job will not change any more."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    @classmethod
    def parse(cls, text: object) -> JobStatus:
        """A service status as one of these (an unknown one counts as still waiting)."""
        word = str(text).lower()
        for status in cls:
            if word == status.value.lower():
                return status
        return _ALIASES.get(word, cls.WAITING)


_ALIASES = {
    "completed": JobStatus.SUCCEEDED,
    "finishing": JobStatus.EXECUTING,
    "cancellationrequested": JobStatus.EXECUTING,
    "cancelling": JobStatus.EXECUTING,
}


@dataclass(frozen=True, slots=True)
class QuantumJob:
    """One job of a release, as last read from the service.

    `created_at` is when the service accepted it, `began_at` when it started executing
    (queue time is the difference), `ended_at` when it ended. `cost` is what the service
    reports for it (`costEstimate.estimatedTotal`) in `currency`, None until it says.
    """

    env: str
    job_id: str
    app: str
    version: str
    status: JobStatus
    created_at: datetime
    target: str = ""
    began_at: datetime | None = None
    ended_at: datetime | None = None
    cost: float | None = None
    currency: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(env, job id): the job's identity in the store."""
        return (self.env, self.job_id)

    @property
    def queue_seconds(self) -> float | None:
        """How long it waited before executing (None until it began)."""
        if self.began_at is None:
            return None
        return max((self.began_at - self.created_at).total_seconds(), 0.0)

    @property
    def execution_seconds(self) -> float | None:
        """How long it executed (None until it ended after beginning)."""
        if self.began_at is None or self.ended_at is None:
            return None
        return max((self.ended_at - self.began_at).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class JobCursor:
    """Where reading an environment's workspace jobs continues.

    The service lists jobs filtered by creation date and ordered by creation time; the
    cursor is a creation date (`since`, ISO `YYYY-MM-DD`) and how many jobs created on or
    after it were read already (`offset`). Jobs are only ever appended at the end of that
    order, so the next read skips `offset` of them (less an overlap, deduplicated by id).
    """

    since: str
    offset: int = 0


def release_tags(env: str, app: str, version: str) -> list[str]:
    """The tags a job of `app` `version` running in `env` carries."""
    return [TAG, f"{_ENV}{env}", f"{_APP}{app}", f"{_VERSION}{version}"]


def release_of(tags: Iterable[object]) -> tuple[str, str, str] | None:
    """(env, app, version) from a job's tags, or None unless all three are there."""
    found: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, str):
            continue
        for prefix in (_ENV, _APP, _VERSION):
            if tag.startswith(prefix) and len(tag) > len(prefix):
                found.setdefault(prefix, tag[len(prefix) :])
    if len(found) < 3:
        return None
    return found[_ENV], found[_APP], found[_VERSION]
