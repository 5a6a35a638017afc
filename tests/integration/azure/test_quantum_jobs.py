"""Reading the jobs live releases submit, with the real azure-quantum SDK against the loopback
workspace: paging, the incremental cursor, tags, refreshes and jobs that vanish."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.credentials import AzureKeyCredential

from qrelease.azure.common import RetrySettings
from qrelease.azure.jobs import OVERLAP, first_cursor
from qrelease.azure.quantum import AzureQuantumBackend
from qrelease.model.environment import AzureQuantum
from qrelease.model.jobs import JobCursor, JobStatus, release_tags
from qrelease.quantum.memory import MemoryQuantum
from tests.helpers.azure import LoopbackServer, QuantumFake

KEY = "jobs-test-key"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST = RetrySettings(
    attempts=2, backoff_seconds=0.01, backoff_max_seconds=0.02, connect_timeout=2, read_timeout=2
)


@pytest.fixture
def fake() -> Iterator[QuantumFake]:
    workspace = QuantumFake(api_key=KEY)
    workspace.set_target("ionq.simulator")
    with LoopbackServer(workspace):
        yield workspace


@pytest.fixture
def backend(fake: QuantumFake) -> Iterator[AzureQuantumBackend]:
    settings = AzureQuantum(
        kind="azure",
        subscription="00000000-0000-0000-0000-0000000000b2",
        resource_group="rg-quantum",
        workspace="ws-prod",
        location="eastus",
    )
    made = AzureQuantumBackend(
        settings,
        environment="prod",
        credential=AzureKeyCredential(KEY),
        endpoint=fake.base_url,
        local=MemoryQuantum(),
        retry=FAST,
    )
    yield made
    made.close()


def plant(fake: QuantumFake, count: int, start: int = 0, **fields: object) -> None:
    """`count` Succeeded jobs of prod bell-service 1.0.0, one a minute from T0 + start."""
    for index in range(start, start + count):
        created = T0 + timedelta(minutes=index)
        defaults: dict[str, object] = {
            "created": created,
            "tags": release_tags("prod", "bell-service", "1.0.0"),
            "began": created + timedelta(seconds=30),
            "ended": created + timedelta(seconds=40),
            "cost": 0.5,
        }
        fake.add_job(f"job-{index:04d}", **(defaults | fields))  # type: ignore[arg-type]


def test_a_read_pages_through_the_list_and_keeps_only_this_environments_jobs(
    fake: QuantumFake, backend: AzureQuantumBackend
) -> None:
    plant(fake, 150)
    fake.add_job("other-env", created=T0, tags=release_tags("dev", "bell-service", "1.0.0"))
    fake.add_job("verification", created=T0, tags=["qrelease", "env:prod"])
    fake.add_job("untagged", created=T0)

    read = backend.read_jobs(first_cursor(T0, timedelta(days=1)), limit=500)

    assert read.listed == 153
    assert len(read.jobs) == 150
    assert fake.count("GET", r"/jobs$") == 2  # 100 a page, the second through nextLink
    job = read.jobs[0]
    assert (job.env, job.app, job.version, job.status) == (
        "prod",
        "bell-service",
        "1.0.0",
        JobStatus.SUCCEEDED,
    )
    assert (job.queue_seconds, job.execution_seconds, job.cost, job.currency) == (
        30.0,
        10.0,
        0.5,
        "USD",
    )
    assert read.cursor == JobCursor("2026-03-01", 153)


def test_reads_are_bounded_and_continue_where_they_stopped(
    fake: QuantumFake, backend: AzureQuantumBackend
) -> None:
    plant(fake, 120)
    first = backend.read_jobs(JobCursor("2026-03-02"), limit=50)
    second = backend.read_jobs(first.cursor, limit=50)
    third = backend.read_jobs(second.cursor, limit=50)
    plant(fake, 5, start=120)
    fourth = backend.read_jobs(third.cursor, limit=50)

    # each read starts OVERLAP jobs before where the last one stopped
    assert [r.cursor.offset for r in (first, second, third, fourth)] == [50, 80, 110, 125]
    assert [len(r.jobs) for r in (first, second, third, fourth)] == [50, 50, 50, 35]
    seen = {job.job_id for r in (first, second, third, fourth) for job in r.jobs}
    assert seen == {f"job-{index:04d}" for index in range(125)}  # none missed
    assert fake.requests[-1].query["skip"] == str(110 - OVERLAP)
    assert fake.requests[-1].query["filter"] == "CreationTime ge 2026-03-02"


def test_a_read_across_midnight_moves_the_cursor_to_the_new_day(
    fake: QuantumFake, backend: AzureQuantumBackend
) -> None:
    late = datetime(2026, 3, 2, 23, 58, tzinfo=UTC)
    for index, minutes in enumerate((0, 1, 3, 4)):
        created = late + timedelta(minutes=minutes)
        fake.add_job(f"m{index}", created=created, tags=release_tags("prod", "a", "1.0.0"))

    read = backend.read_jobs(JobCursor("2026-03-02"), limit=10)

    assert read.cursor == JobCursor("2026-03-03", 2)
    again = backend.read_jobs(read.cursor, limit=10)
    assert fake.requests[-1].query["filter"] == "CreationTime ge 2026-03-03"
    assert {job.job_id for job in again.jobs} == {"m2", "m3"}


def test_refresh_follows_jobs_to_their_end_and_a_deleted_job_is_cancelled(
    fake: QuantumFake, backend: AzureQuantumBackend
) -> None:
    tags = release_tags("prod", "bell-service", "1.0.0")
    fake.add_job("running", created=T0, status="Executing", tags=tags, began=T0)
    fake.add_job("gone", created=T0, status="Waiting", tags=tags)
    read = backend.read_jobs(JobCursor("2026-03-02"), limit=10)
    assert {job.status for job in read.jobs} == {JobStatus.EXECUTING, JobStatus.WAITING}
    fake.update_job(
        "running",
        status="Failed",
        endExecutionTime=T0 + timedelta(minutes=2),
        costEstimate={"currencyCode": "EUR", "estimatedTotal": 1.25},
    )
    del fake.jobs["gone"]
    later = T0 + timedelta(minutes=5)

    fresh = {job.job_id: job for job in backend.refresh_jobs(read.jobs, later)}

    assert fresh["running"].status == JobStatus.FAILED
    assert (fresh["running"].execution_seconds, fresh["running"].cost) == (120.0, 1.25)
    assert fresh["running"].currency == "EUR"
    assert (fresh["gone"].status, fresh["gone"].ended_at) == (JobStatus.CANCELLED, later)
