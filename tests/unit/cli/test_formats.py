"""`-o table|wide|json|yaml` wherever data is printed: the same data in every structured form.

Each command runs through the CLI on the bundled example repo with a real SQLite state dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import Cli
from tests.helpers.gitops import GitOpsRepo

DATA_COMMANDS = [
    ("validate", "--no-compile"),
    ("plan",),
    ("status",),
    ("get", "qrng"),
    ("history", "--env", "dev"),
    ("diff", "bell-service", "1.0.0", "1.1.0"),
    ("windows", "--env", "prod", "--at", "2026-05-04T09:00:00"),
    ("targets", "--env", "dev"),
    ("cost",),
    ("audit", "verify"),
]


@pytest.fixture
def cli(example_repo: GitOpsRepo, tmp_path: Path) -> Cli:
    cli = Cli(example_repo.path, tmp_path / "state")
    cli.record_all()
    cli.event(env="dev", app="qrng", action="hold", reason="soak")
    cli.event(
        env="staging",
        app="bell-service",
        action="gate",
        outcome="Passed",
        details={
            "gate": "verification",
            "job_id": "job-1",
            "price": {"amount": 12.5, "currency": "USD"},
            "cost_estimate": {"estimatedTotal": 12.0},
        },
    )
    return cli


@pytest.mark.parametrize("command", DATA_COMMANDS, ids=lambda c: " ".join(c[:1]))
def test_json_and_yaml_carry_the_same_data_and_tables_print(
    cli: Cli, command: tuple[str, ...]
) -> None:
    as_json = cli(*command, "-o", "json")
    assert as_json.exit_code == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data not in (None, [], {})
    assert json.loads(cli(*command, "--json").stdout) == data
    as_yaml = cli(*command, "-o", "yaml")
    assert as_yaml.exit_code == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == data
    table = cli(*command)
    assert table.exit_code == 0 and table.stdout.strip(), table.stderr
    assert not table.stdout.lstrip().startswith(("{", "["))
    if "wide" in cli(*command, "--help").stdout:
        wide = cli(*command, "-o", "wide")
        assert wide.exit_code == 0 and len(wide.stdout) >= len(table.stdout), wide.stderr
