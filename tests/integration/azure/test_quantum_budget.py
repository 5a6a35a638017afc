"""The pre-spend cost gate: verification jobs priced before submission against the budget.

The real azure-quantum SDK talks to the loopback workspace (`QuantumFake`); qdk is real;
the engine runs the whole pass over the in-memory deployer and a real SQLite store, so
the month's spend comes from the audit log as it would in production.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease.azure.common import RetrySettings
from qrelease.azure.quantum import AzureQuantumBackend
from qrelease.cli import main
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.environment import AzureQuantum
from qrelease.model.vocabulary import GateOutcome, Rollout
from qrelease.quantum.qdk import QdkBackend
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from tests.helpers.azure import JobScript, LoopbackServer, QuantumFake
from tests.helpers.gitops import GitOpsRepo

pytestmark = pytest.mark.slow

SUB = "00000000-0000-0000-0000-0000000000b2"
API_KEY = "budget-api-key-0123456789"
KEY_VARIABLE = "QRELEASE_TEST_BUDGET_CONNECTION"
FAST = RetrySettings(
    attempts=2, backoff_seconds=0.01, backoff_max_seconds=0.02, connect_timeout=2, read_timeout=2
)
# Bell 1.1.0 (H, CNOT, two measurements) for 1000 shots on IonQ Aria 1:
# 97.50 minimum + 0.000220·1·1000 + 0.000975·1·1000
ARIA_PRICE = 98.695
MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def dev_on_azure(budget: str) -> str:
    """releases/dev.yaml on an Azure workspace, verifying every release on Aria 1 (billed),
    with a budget."""
    return (
        "environment: dev\n"
        "classical: {kind: venv}\n"
        "quantum:\n"
        f"  {{kind: azure, subscription: {SUB}, resource_group: rg-q, workspace: ws-dev,"
        " location: eastus,\n"
        "   verification_job: true, verification_target: ionq.qpu.aria-1,\n"
        f"   connection_string_env: {KEY_VARIABLE}}}\n"
        "policy:\n"
        f"  quantum_budget: {budget}\n"
        "apps:\n"
        "  bell-service: 1.1.0\n"
    )


class Fleet:
    """The example repo with dev on the fake workspace, an engine and a clock."""

    def __init__(self, repo: GitOpsRepo, root: Path, fake: QuantumFake, url: str) -> None:
        self.repo, self.fake = repo, fake
        self.now = MONDAY
        self.deployer = MemoryDeployer()
        self.store = open_store(root / "state")
        self.state = root / "state"
        self.git = GitRepo(repo.path)
        self.backends: dict[AzureQuantum, AzureQuantumBackend] = {}
        local = QdkBackend()

        def quantum_for(env):  # type: ignore[no-untyped-def]
            settings = env.quantum
            if settings not in self.backends:
                self.backends[settings] = AzureQuantumBackend(
                    settings,
                    environment=env.environment,
                    endpoint=url,
                    environ={KEY_VARIABLE: connection()},
                    local=local,
                    retry=FAST,
                    poll_interval=0.005,
                )
            return self.backends[settings]

        backends = Backends(lambda env: self.deployer, quantum_for)
        self.engine = Engine(self.git, self.store, backends, clock=lambda: self.now)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.store.close()
        self.git.close()


def connection() -> str:
    return (
        f"SubscriptionId={SUB};ResourceGroupName=rg-q;WorkspaceName=ws-dev;"
        f"ApiKey={API_KEY};QuantumEndpoint=https://eastus.quantum.azure.com/;"
    )


@pytest.fixture
def fleet(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[Fleet]:
    for env in ("staging", "prod"):
        example_repo.git("rm", "--quiet", f"releases/{env}.yaml")
    fake = QuantumFake(api_key=API_KEY)
    fake.set_target("ionq.qpu.aria-1", profile="Base", qubits=25)
    fake.set_target("ionq.simulator", profile="Base", qubits=29)
    fake.script = JobScript(cost=ARIA_PRICE)
    with LoopbackServer(fake) as server:
        the_fleet = Fleet(example_repo, tmp_path, fake, server.url)
        yield the_fleet
        the_fleet.close()


def verification(fleet: Fleet) -> dict[str, object]:
    """The newest verification gate event's details."""
    events = fleet.store.events(env="dev", app="bell-service", actions=["gate"])
    return next(e.details for e in reversed(events) if e.details["gate"] == "verification")


def test_a_job_over_the_per_job_budget_is_refused_before_anything_is_submitted(
    fleet: Fleet,
) -> None:
    fleet.repo.write("releases/dev.yaml", dev_on_azure("{per_job: 50}"))
    fleet.repo.commit("dev verifies on Aria with a USD 50 budget per job")

    report = fleet.engine.reconcile()

    (app,) = report.apps
    assert app.outcome is Rollout.FAILED
    assert fleet.fake.submitted() == []  # priced, refused, never sent
    assert not any(r.method == "PUT" and "/jobs/" in r.path for r in fleet.fake.requests)
    details = verification(fleet)
    assert details["refused"] is True
    price = details["price"]
    assert isinstance(price, dict) and price["amount"] == pytest.approx(ARIA_PRICE)
    assert price["currency"] == "USD" and "pricing" in str(price["source"])
    message = next(g.message for g in app.gates if g.gate == "verification")
    assert "job on ionq.qpu.aria-1 refused before submitting: price USD 98.695" in message
    assert "over the per-job budget of USD 50.00" in message
    assert not [c for c in fleet.deployer.calls if c[0] == "prepare"]  # stopped at its gates


def test_the_monthly_budget_counts_what_the_month_has_spent(fleet: Fleet, tmp_path: Path) -> None:
    fleet.repo.write("releases/dev.yaml", dev_on_azure("{per_job: 150, per_month: 150}"))
    fleet.repo.commit("dev verifies on Aria, USD 150 a month")
    first = fleet.engine.reconcile()
    assert [a.outcome for a in first.apps] == [Rollout.SUCCEEDED]
    (job,) = fleet.fake.submitted()
    spent = verification(fleet)
    assert spent["job_id"] == job["id"]
    assert spent["cost_estimate"]["estimatedTotal"] == ARIA_PRICE  # type: ignore[index]
    # the next release the same month would bring the spend to 197.39 > 150
    text = fleet.repo.read("releases/dev.yaml").replace(
        "bell-service: 1.1.0", "bell-service: 1.0.0"
    )
    fleet.repo.write("releases/dev.yaml", text)
    fleet.repo.commit("back to 1.0.0, verified again")
    second = fleet.engine.reconcile()
    assert [a.outcome for a in second.apps] == [Rollout.FAILED]
    assert len(fleet.fake.submitted()) == 1
    refused = verification(fleet)
    assert refused["refused"] is True and refused["budget"]["spent_this_month"] == ARIA_PRICE  # type: ignore[index]
    gate = next(g for g in second.apps[0].gates if g.gate == "verification")
    assert gate.outcome is GateOutcome.FAILED
    assert "would bring 2026-12's spend to USD 197.39, over the monthly budget of USD 150.00" in (
        gate.message
    )
    # `qrelease cost` reports the month: one job run, one refused
    argv = ["cost", "--repo", str(fleet.repo.path), "--state", str(fleet.state), "--json"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["env"], row["app"], row["month"], row["jobs"], row["refused"]) == (
        "dev",
        "bell-service",
        "2026-12",
        1,
        1,
    )
    assert row["priced"] == pytest.approx(ARIA_PRICE) and row["reported"] == ARIA_PRICE


def test_targets_shows_the_workspaces_live_view(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.repo.write("releases/dev.yaml", dev_on_azure("{per_job: 50}"))
    fleet.repo.commit("dev on Azure")
    fleet.fake.set_target("ionq.qpu.aria-1", profile="Base", qubits=25, queue_seconds=5400)
    endpoint = fleet.fake.base_url  # the CLI finds the workspace through the connection string
    monkeypatch.setenv(
        KEY_VARIABLE, connection().replace("https://eastus.quantum.azure.com/", endpoint)
    )
    argv = [
        "targets",
        "--repo",
        str(fleet.repo.path),
        "--state",
        str(tmp_path / "s"),
        "--env",
        "dev",
    ]
    table = CliRunner().invoke(main, argv)
    assert table.exit_code == 0, table.output
    assert "workspace view for dev (live):" in table.stdout
    live = table.stdout.split("workspace view for dev (live):")[1]
    assert "ionq.qpu.aria-1" in live and "1h30m" in live and "active" in live
    data = json.loads(CliRunner().invoke(main, [*argv, "--json"]).stdout)
    by_id = {row["target"]: row for row in data["workspace"]}
    assert by_id["ionq.qpu.aria-1"]["queue_seconds"] == 5400
    assert by_id["ionq.simulator"]["qubits"] == 29
