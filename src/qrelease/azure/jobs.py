"""Reading a workspace's job list incrementally: the cursor, and a job record as a QuantumJob.

No SDK here: `quantum.py` (the one azure.quantum importer) lists and gets the jobs and
hands their plain records to these functions.

The service lists a workspace's jobs filtered by creation date (`CreationTime ge
2025-11-24`, the filter the SDK itself writes) and ordered by creation time, `skip` and
`top` paging through them. New jobs only ever join the end of that order, so a `JobCursor`
(a date, and how many jobs created since were read) says where the next read starts. Each
read re-reads `OVERLAP` jobs before that point, deduplicated by id in the store, so a job
deleted meanwhile (which shifts the order) costs nothing. When one read spans a date
change, the cursor moves to the newest date, keeping the skip small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from qrelease.model.jobs import JobCursor, JobStatus, QuantumJob, release_of

OVERLAP = 20
"""Jobs re-read before the cursor on every read (deduplicated by id)."""


def first_cursor(now: datetime, backfill: timedelta) -> JobCursor:
    """Where reading starts for an environment read for the first time.

    >>> from datetime import UTC
    >>> first_cursor(datetime(2026, 3, 2, 1, tzinfo=UTC), timedelta(hours=2))
    JobCursor(since='2026-03-01', offset=0)
    """
    return JobCursor((now - backfill).date().isoformat())


def start_of(cursor: JobCursor) -> tuple[str, int]:
    """The listing's filter and how many jobs it skips for a read from `cursor`.

    >>> start_of(JobCursor("2026-03-01", 45))
    ('CreationTime ge 2026-03-01', 25)
    """
    return f"CreationTime ge {date.fromisoformat(cursor.since).isoformat()}", max(
        cursor.offset - OVERLAP, 0
    )


def advanced(cursor: JobCursor, skip: int, created: Sequence[datetime]) -> JobCursor:
    """The cursor after reading the jobs created at `created` (listing order) from `skip`.

    >>> from datetime import UTC
    >>> day = lambda d, h: datetime(2026, 3, d, h, tzinfo=UTC)
    >>> advanced(JobCursor("2026-03-01", 30), 10, [day(1, 9), day(1, 10)])
    JobCursor(since='2026-03-01', offset=30)
    >>> advanced(JobCursor("2026-03-01", 30), 10, [day(1, 9)] * 25)
    JobCursor(since='2026-03-01', offset=35)
    >>> advanced(JobCursor("2026-03-01", 30), 10, [day(1, 9), day(2, 1), day(2, 3)])
    JobCursor(since='2026-03-02', offset=2)
    """
    offset = max(cursor.offset, skip + len(created))
    if not created:
        return JobCursor(cursor.since, offset)
    newest = created[-1].date()
    if created[0].date() < newest:  # every job of the newest date was read in this listing
        return JobCursor(newest.isoformat(), sum(1 for c in created if c.date() == newest))
    return JobCursor(cursor.since, offset)


def parse_time(value: object) -> datetime | None:
    """A service timestamp (RFC 3339) as an aware datetime, None when absent or unreadable.

    >>> parse_time("2025-11-24T12:00:05Z")
    datetime.datetime(2025, 11, 24, 12, 0, 5, tzinfo=datetime.timezone.utc)
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def job_of(record: Mapping[str, Any], env: str) -> QuantumJob | None:
    """A job record (the service's JobDetails, as plain JSON) as this environment's job.

    None unless its tags name a release of `env` (other environments' jobs, jobs of other
    tools and the controller's own verification jobs are not a release's jobs) and it has
    an id and a creation time.
    """
    release = release_of(record.get("tags") or [])
    created = parse_time(record.get("creationTime"))
    job_id = record.get("id")
    if release is None or release[0] != env or created is None or not job_id:
        return None
    _, app, version = release
    status = JobStatus.parse(record.get("status"))
    ended = parse_time(record.get("endExecutionTime"))
    if status is JobStatus.CANCELLED and ended is None:
        ended = parse_time(record.get("cancellationTime"))
    cost, currency = _cost(record.get("costEstimate"))
    return QuantumJob(
        env=env,
        job_id=str(job_id),
        app=app,
        version=version,
        status=status,
        created_at=created,
        target=str(record.get("target") or ""),
        began_at=parse_time(record.get("beginExecutionTime")),
        ended_at=ended if status.ended else None,
        cost=cost,
        currency=currency,
    )


def vanished(job: QuantumJob, now: datetime) -> QuantumJob:
    """A job the service no longer has (deleted): it ended, Cancelled, now."""
    return QuantumJob(
        env=job.env,
        job_id=job.job_id,
        app=job.app,
        version=job.version,
        status=JobStatus.CANCELLED,
        created_at=job.created_at,
        target=job.target,
        began_at=job.began_at,
        ended_at=now,
        cost=job.cost,
        currency=job.currency,
    )


def _cost(estimate: object) -> tuple[float | None, str | None]:
    """(total, currency) of a job's `costEstimate`, (None, None) when it reports none."""
    if not isinstance(estimate, Mapping):
        return None, None
    total = estimate.get("estimatedTotal")
    if not isinstance(total, int | float) or isinstance(total, bool):
        return None, None
    currency = estimate.get("currencyCode")
    return float(total), str(currency) if isinstance(currency, str) and currency else None
