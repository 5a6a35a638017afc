"""A controller watching a live release's quantum jobs in the loopback Azure Quantum workspace:
statistics in /status and /metrics, and a release degraded and rolled back by its failing jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.core.credentials import AzureKeyCredential

from qrelease.azure.common import RetrySettings
from qrelease.azure.quantum import AzureQuantumBackend
from qrelease.daemon import Controller
from qrelease.engine import Backends
from qrelease.model.environment import AzureQuantum, Environment
from qrelease.model.events import Event
from qrelease.model.jobs import release_tags
from qrelease.quantum.base import JobReader
from qrelease.store import open_store
from tests.helpers.azure import LoopbackServer, QuantumFake
from tests.helpers.daemon import MONDAY, Api, Rig, wait_for

KEY = "monitor-test-key"
SUB = "00000000-0000-0000-0000-0000000000c3"
ENV = "qprod"
ENVIRONMENT = f"""\
environment: {ENV}
quantum:
  kind: azure
  subscription: {SUB}
  resource_group: rg-quantum
  workspace: ws-qprod
  location: eastus
policy:
  auto_rollback: true
  quantum_health: {{max_failure_rate: 0.2, min_jobs: 10, window: 30m}}
apps:
  bell-service: 1.0.0
"""
FAST = RetrySettings(
    attempts=2, backoff_seconds=0.01, backoff_max_seconds=0.02, connect_timeout=2, read_timeout=2
)


@pytest.fixture
def workspace() -> Iterator[QuantumFake]:
    fake = QuantumFake(api_key=KEY)
    fake.set_target("ionq.simulator")
    with LoopbackServer(fake):
        yield fake


@pytest.fixture
def watched_rig(rig: Rig, workspace: QuantumFake) -> Iterator[Rig]:
    """The example rig with an Azure Quantum environment whose jobs are read from the fake."""
    readers: dict[str, AzureQuantumBackend] = {}

    def jobs_for(env: Environment) -> JobReader | None:
        if not isinstance(env.quantum, AzureQuantum):
            return None
        if env.environment not in readers:
            readers[env.environment] = AzureQuantumBackend(
                env.quantum,
                environment=env.environment,
                credential=AzureKeyCredential(KEY),
                endpoint=workspace.base_url,
                local=rig.quantum,
                retry=FAST,
            )
        return readers[env.environment]

    def backends(state_dir: Path) -> Backends:
        return Backends(lambda env: rig.deployer, lambda env: rig.quantum, jobs_for=jobs_for)

    rig.backends = backends  # type: ignore[method-assign]
    rig.work.write(f"releases/{ENV}.yaml", ENVIRONMENT)
    rig.work.commit("an environment whose quantum jobs are watched")
    rig.work.git("push", "--quiet", "origin", "main")
    yield rig
    for reader in readers.values():
        reader.close()


def plant(fake: QuantumFake, version: str, statuses: list[str], first: int = 0) -> None:
    """Jobs of bell-service `version` in qprod, created a minute apart before MONDAY."""
    for offset, status in enumerate(statuses):
        index = first + offset
        created = MONDAY - timedelta(minutes=20) + timedelta(seconds=index)
        ended = None if status in ("Waiting", "Executing") else created + timedelta(seconds=50)
        fake.add_job(
            f"{version}-{index:03d}",
            created=created,
            status=status,
            tags=release_tags(ENV, "bell-service", version),
            began=None if status == "Waiting" else created + timedelta(seconds=20),
            ended=ended,
            cost=0.25 if ended is not None and status != "Cancelled" else None,
        )


def series(name: str, **labels: str) -> str:
    """A sample's name and labels as Prometheus writes them (labels sorted)."""
    every = {"env": ENV, "app": "bell-service", "version": "1.0.0"} | labels
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(every.items())) + "}"


def more_reads(workspace: QuantumFake, reads: int) -> Callable[[], bool]:
    return lambda: workspace.count("GET", r"/jobs$") > reads


def live(api: Api, version: str) -> Callable[[], bool]:
    return lambda: api.row(ENV, "bell-service").get("deployed") == version


def events(rig: Rig, action: str) -> list[Event]:
    with open_store(rig.state) as store:
        return list(store.iter_events(env=ENV, app="bell-service", actions=[action]))


def test_job_statistics_of_the_live_release_reach_status_and_metrics(
    watched_rig: Rig, workspace: QuantumFake, api_for: Callable[[Controller], Api]
) -> None:
    rig = watched_rig
    plant(workspace, "1.0.0", ["Succeeded"] * 6 + ["Failed", "Cancelled", "Executing", "Waiting"])
    controller = rig.start()
    api = api_for(controller)
    wait_for("1.0.0 live in qprod", live(api, "1.0.0"))

    jobs = wait_for("job statistics", lambda: api.row(ENV, "bell-service").get("quantum_jobs"))

    assert (jobs["version"], jobs["submitted"], jobs["succeeded"]) == ("1.0.0", 10, 6)
    assert (jobs["failed"], jobs["cancelled"], jobs["running"]) == (1, 1, 2)
    assert jobs["queue_seconds"] == {"p50": 20.0, "p95": 20.0}
    assert jobs["execution_seconds"] == {"p50": 30.0, "p95": 30.0}
    assert jobs["cost"] == {"USD": 1.75}
    assert jobs["window"]["failure_rate"] == pytest.approx(1 / 7)
    assert api.metric(series("qrelease_quantum_jobs_total", status="submitted")) == 10
    assert api.metric(series("qrelease_quantum_jobs_total", status="Succeeded")) == 6
    assert api.metric(series("qrelease_quantum_jobs_total", status="Failed")) == 1
    assert api.metric(series("qrelease_quantum_job_queue_seconds_count")) == 9
    assert api.metric(series("qrelease_quantum_job_queue_seconds_sum")) == 180
    assert api.metric(series("qrelease_quantum_job_execution_seconds_count")) == 8
    assert api.metric(series("qrelease_quantum_job_cost_total", currency="USD")) == 1.75
    assert api.row("dev", "bell-service").get("quantum_jobs") is None  # local: not watched

    workspace.update_job("1.0.0-008", status="Succeeded", endExecutionTime=MONDAY)
    rig.clock.advance(timedelta(minutes=2))  # the next read, one monitor interval later
    wait_for(
        "the running job's end",
        lambda: api.row(ENV, "bell-service")["quantum_jobs"]["succeeded"] == 7,
    )
    assert api.metric(series("qrelease_quantum_jobs_total", status="submitted")) == 10
    assert api.metric(series("qrelease_quantum_jobs_total", status="Succeeded")) == 7


def test_failing_jobs_degrade_the_release_and_roll_it_back_once(
    watched_rig: Rig, workspace: QuantumFake, api_for: Callable[[Controller], Api]
) -> None:
    rig = watched_rig
    controller = rig.start()
    api = api_for(controller)
    wait_for("1.0.0 live in qprod", live(api, "1.0.0"))
    pinned = rig.pin(ENV, "bell-service", "1.1.0")
    wait_for("1.1.0 live in qprod", live(api, "1.1.0"))
    wait_for("the pass to end", lambda: api.status()["last_pass"]["revision"] == pinned)
    plant(workspace, "1.1.0", ["Succeeded"] * 8 + ["Failed"])  # 1 of 9: too few to judge
    rig.clock.advance(timedelta(minutes=2))
    wait_for(
        "nine jobs read",
        lambda: (api.row(ENV, "bell-service").get("quantum_jobs") or {}).get("submitted") == 9,
    )
    assert api.row(ENV, "bell-service")["health"] == "Healthy"

    plant(workspace, "1.1.0", ["Failed"] * 3, first=9)  # 4 of 12 failed: 33% > 20%
    rig.clock.advance(timedelta(minutes=2))

    wait_for("the rollback to 1.0.0", live(api, "1.0.0"))
    wait_for("the pass to end", lambda: api.status()["last_pass"]["trigger"] == "quantum-health")
    row = api.row(ENV, "bell-service")
    assert (row["desired"], row["rollout"], row["step"]) == ("1.1.0", "Failed", "quantum jobs")
    assert (row["sync"], row["health"]) == ("OutOfSync", "Healthy")  # 1.0.0 runs, checked
    assert "4 of 12 quantum jobs failed in the last 30m (33%" in row["message"]
    assert "rolled back to 1.0.0" in row["message"]
    for _ in range(3):  # later reads find the same failures: nothing more is recorded
        reads = workspace.count("GET", r"/jobs$")
        rig.clock.advance(timedelta(minutes=2))
        wait_for("another read", more_reads(workspace, reads))
    [rollback] = events(rig, "auto-rollback")
    [degraded] = events(rig, "quantum-health")
    assert (rollback.outcome, rollback.details["restored"]) == ("Restored", "1.0.0")
    assert (degraded.outcome, degraded.to_version) == ("Failed", "1.1.0")
    assert api.row(ENV, "bell-service")["deployed"] == "1.0.0"
    switches = [call for call in rig.deployer.calls if call[:2] == ("switch", ENV)]
    assert [call[3] for call in switches] == ["1.0.0", "1.1.0", "1.0.0"]
