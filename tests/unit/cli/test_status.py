"""`status` (--app, --watch, -o), `get APP` and `wait APP`, through the CLI.

A real GitOps repo of the bundled examples and a real SQLite state dir holding the rows a
pass would have recorded; the polling commands' sleep is replaced so each poll is a step
the test takes, never a wall-clock wait.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from qrelease.cli import status as status_module
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.model.vocabulary import Health, Rollout, Sync
from qrelease.store import open_store
from tests.helpers.cli import Cli
from tests.helpers.gitops import GitOpsRepo


@pytest.fixture
def cli(example_repo: GitOpsRepo, tmp_path: Path) -> Cli:
    return Cli(example_repo.path, tmp_path / "state")


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Callable[[], None]]]:
    """Steps run at each poll's sleep, in order; when they run out, Ctrl-C."""
    steps: list[Callable[[], None]] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if not steps:
            raise KeyboardInterrupt
        steps.pop(0)()

    monkeypatch.setattr(status_module, "_sleep", sleep)
    monkeypatch.setattr(status_module, "_clock", lambda: clock[0])
    yield steps


def test_status_app_shows_that_app_in_every_environment(cli: Cli) -> None:
    cli.record_all()
    result = cli("status", "--app", "qrng")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["ENV", "APP", "DESIRED"]
    assert [row.split()[:3] for row in rows] == [
        ["dev", "qrng", "0.2.0"],
        ["prod", "qrng", "0.1.0"],
        ["staging", "qrng", "0.2.0"],
    ]


def test_status_formats_carry_the_same_rows(cli: Cli) -> None:
    cli.record_all()
    as_json = json.loads(cli("status", "--env", "dev", "-o", "json").stdout)
    assert json.loads(cli("status", "--env", "dev", "--json").stdout) == as_json
    assert yaml.safe_load(cli("status", "--env", "dev", "-o", "yaml").stdout) == as_json
    assert [(r["env"], r["app"], r["sync"]) for r in as_json] == [
        ("dev", "bell-service", "Synced"),
        ("dev", "qrng", "Synced"),
    ]
    wide = cli("status", "--env", "dev", "-o", "wide").stdout.splitlines()
    assert "REVISION" in wide[0] and "RETRY AT" in wide[0]
    assert "REVISION" not in cli("status", "--env", "dev").stdout
    clash = cli("status", "--json", "-o", "yaml")
    assert clash.exit_code == 2 and "ask for different formats" in clash.stderr


def test_a_misspelt_environment_or_app_gets_a_suggestion(cli: Cli) -> None:
    result = cli("status", "--env", "stagin")
    assert result.exit_code == 1
    assert result.stderr.strip() == "unknown environment 'stagin'; did you mean staging?"
    result = cli("get", "bel-service")
    assert result.exit_code == 1 and "did you mean bell-service?" in result.stderr
    result = cli("status", "--app", "zzz")
    assert result.exit_code == 1 and "(known: bell-service, qrng)" in result.stderr


def test_status_watch_prints_again_when_a_row_changes(cli: Cli, polls: list) -> None:
    cli.record(
        "dev", "qrng", health=Health.PROGRESSING, rollout=Rollout.RUNNING, rollout_step="install"
    )
    polls.append(lambda: None)  # nothing changed: nothing printed
    polls.append(lambda: cli.record("dev", "qrng"))
    result = cli("status", "--watch", "--env", "dev", "--app", "qrng")
    assert result.exit_code == 0, result.stderr  # Ctrl-C ends a watch quietly
    tables = result.stdout.split("\n\n")
    assert len(tables) == 2
    assert "Running (install)" in tables[0] and "Progressing" in tables[0]
    assert "Succeeded" in tables[1] and "Healthy" in tables[1]


def test_get_shows_the_pin_rollout_gates_and_recent_events(cli: Cli) -> None:
    cli.record(
        "dev",
        "bell-service",
        deployed="1.1.0",
        sync=Sync.OUT_OF_SYNC,
        rollout=Rollout.FAILED,
        rollout_step="health",
        message="health check failed: exit 3",
    )
    for gate, outcome in (("profile", "Passed"), ("smoke", "Failed"), ("smoke", "Passed")):
        cli.event(
            env="dev",
            app="bell-service",
            action="gate",
            to_version="1.2.0",
            outcome=outcome,
            details={"gate": gate, "message": f"{gate} {outcome.lower()}"},
        )
    cli.event(env="dev", app="bell-service", action="deploy", to_version="1.2.0",
              outcome="Failed", reason="health check failed: exit 3")  # fmt: skip
    result = cli("get", "bell-service", "--env", "dev")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bell-service  (Git at ")
    assert "  desired   1.2.0  (releases/dev.yaml:12)" in lines
    assert "  rollout   Failed (health)" in lines
    assert "  message   health check failed: exit 3" in lines
    assert any("✓ profile Passed: profile passed" in line for line in lines)
    assert any("✓ smoke Passed: smoke passed" in line for line in lines)  # the newest smoke
    events = lines[lines.index("  events") + 2 :]
    assert events[0].split()[2:4] == ["deploy", "Failed"]
    data = json.loads(cli("get", "bell-service", "-o", "json").stdout)
    assert [e["env"] for e in data["environments"]] == ["dev", "prod", "staging"]
    dev = data["environments"][0]
    assert dev["pin"] == "releases/dev.yaml:12" and dev["step"] == "health"
    assert [g["gate"] for g in dev["gates"]] == ["profile", "smoke"]
    assert dev["events"][0]["action"] == "deploy"
    assert data["environments"][1]["message"].startswith("not reconciled yet")


def test_wait_returns_at_once_when_the_app_is_synced_and_healthy(cli: Cli) -> None:
    cli.record_all()
    result = cli("wait", "qrng", "--env", "dev", "--timeout", "0s")
    assert result.exit_code == 0, result.stderr
    assert "dev/qrng: Synced · Healthy · rollout Succeeded" in result.stderr
    assert result.stdout.splitlines()[1].split()[:2] == ["dev", "qrng"]


def test_wait_follows_a_rollout_until_it_is_live(cli: Cli, polls: list) -> None:
    rolling = {
        "deployed": "0.1.0",
        "sync": Sync.OUT_OF_SYNC,
        "health": Health.PROGRESSING,
        "rollout": Rollout.RUNNING,
    }
    cli.record("staging", "qrng", **rolling, rollout_step="install")
    polls.append(lambda: cli.record("staging", "qrng", **rolling, rollout_step="install"))
    polls.append(lambda: cli.record("staging", "qrng", **rolling, rollout_step="health check"))
    polls.append(lambda: cli.record("staging", "qrng"))
    result = cli("wait", "qrng", "--env", "staging", "--timeout", "1m", "--interval", "1s")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [  # one line per change, none for a poll without one
        "staging/qrng: OutOfSync · Progressing · rollout Running (install)",
        "staging/qrng: OutOfSync · Progressing · rollout Running (health check)",
        "staging/qrng: Synced · Healthy · rollout Succeeded",
    ]


def test_wait_sync_alone_does_not_wait_for_health(cli: Cli) -> None:
    cli.record("dev", "qrng", health=Health.DEGRADED)
    assert cli("wait", "qrng", "--env", "dev", "--sync", "--timeout", "0s").exit_code == 0
    late = cli("wait", "qrng", "--env", "dev", "--health", "--timeout", "0s")
    assert late.exit_code == 1
    assert "timed out after 0s waiting for dev/qrng to be Healthy" in late.stderr


def test_wait_stops_at_once_when_a_failed_rollout_waits_for_a_new_revision(
    cli: Cli, polls: list
) -> None:
    cli.record(
        "dev", "bell-service", deployed="1.1.0", sync=Sync.OUT_OF_SYNC,
        rollout=Rollout.FAILED, rollout_step="gates", message="smoke gate failed",
    )  # fmt: skip
    result = cli("wait", "bell-service", "--env", "dev", "--timeout", "5m")
    assert result.exit_code == 1
    assert "dev/bell-service: rollout Failed (gates): smoke gate failed" in result.stderr
    assert polls == []  # no poll was needed


def test_wait_times_out_naming_what_is_late(cli: Cli, polls: list) -> None:
    polls.extend([lambda: None] * 5)
    result = cli("wait", "qrng", "--timeout", "2s", "--interval", "1s")
    assert result.exit_code == 1
    assert "timed out after 2s waiting for dev/qrng, prod/qrng, staging/qrng" in result.stderr
    assert len(polls) == 3  # two polls of 1s, then the deadline


def _watched_prod(cli: Cli, example_repo: GitOpsRepo) -> None:
    """An Azure Quantum environment running bell-service 1.0.0, with two failed jobs read
    from its workspace: one of the live release, one of an older release."""
    example_repo.write(
        "releases/qprod.yaml",
        "environment: qprod\nquantum: {kind: azure, subscription: s, resource_group: rg,"
        " workspace: ws, location: eastus}\napps:\n  bell-service: 1.0.0\n",
    )
    example_repo.commit("a watched environment")
    cli.record("qprod", "bell-service", deployed="1.0.0")
    cli.record("dev", "bell-service", deployed="1.2.0")
    created = datetime.now(UTC) - timedelta(minutes=5)
    with open_store(cli.state) as store:
        store.put_jobs(
            [
                QuantumJob("qprod", "a", "bell-service", "1.0.0", JobStatus.FAILED, created),
                QuantumJob("qprod", "b", "bell-service", "0.9.0", JobStatus.FAILED, created),
            ]
        )


def test_status_json_shows_the_quantum_jobs_of_a_watched_live_release(
    cli: Cli, example_repo: GitOpsRepo
) -> None:
    _watched_prod(cli, example_repo)

    result = cli("status", "--json")

    assert result.exit_code == 0, result.stderr
    rows = {(row["env"], row["app"]): row for row in json.loads(result.stdout)}
    jobs = rows[("qprod", "bell-service")]["quantum_jobs"]
    assert (jobs["version"], jobs["submitted"], jobs["failed"]) == ("1.0.0", 1, 1)
    assert "quantum_jobs" not in rows[("dev", "bell-service")]  # a local environment


def test_get_shows_the_live_release_quantum_jobs(cli: Cli, example_repo: GitOpsRepo) -> None:
    _watched_prod(cli, example_repo)

    table = cli("get", "bell-service", "--env", "qprod")
    data = cli("get", "bell-service", "--env", "qprod", "-o", "json")

    assert table.exit_code == 0, table.stderr
    assert "  jobs      1 submitted: 0 succeeded, 1 failed, 0 cancelled" in table.stdout
    (env,) = json.loads(data.stdout)["environments"]
    assert (env["quantum_jobs"]["version"], env["quantum_jobs"]["failed"]) == ("1.0.0", 1)
    local = cli("get", "bell-service", "--env", "dev")
    assert "  jobs" not in local.stdout
