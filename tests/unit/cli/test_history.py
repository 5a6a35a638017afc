"""`qrelease history`: relative `--since`, the output formats, and names it does not know."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import Cli
from tests.helpers.gitops import GitOpsRepo


@pytest.fixture
def cli(example_repo: GitOpsRepo, tmp_path: Path) -> Cli:
    return Cli(example_repo.path, tmp_path / "state")


def controller_events(rows: list[dict[str, object]]) -> list[str]:
    return [str(row["reason"]) for row in rows if row["action"] != "pin"]


def test_since_takes_a_time_ago_or_a_date(cli: Cli) -> None:
    now = datetime.now(UTC)
    for hours in (30, 3, 1):
        cli.event(time=now - timedelta(hours=hours), env="dev", app="qrng", action="hold",
                  reason=f"{hours}h ago")  # fmt: skip
    recent = json.loads(cli("history", "--app", "qrng", "--since", "2h", "-o", "json").stdout)
    assert controller_events(recent) == ["1h ago"]
    day = json.loads(cli("history", "--app", "qrng", "--since", "1d12h", "--json").stdout)
    assert controller_events(day) == ["30h ago", "3h ago", "1h ago"]
    iso = (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S")
    dated = yaml.safe_load(cli("history", "--app", "qrng", "--since", iso, "-o", "yaml").stdout)
    assert controller_events(dated) == ["3h ago", "1h ago"]


def test_limit_keeps_the_newest_entries_oldest_first(cli: Cli) -> None:
    now = datetime.now(UTC)
    for minutes in (50, 40, 30, 20, 10):
        cli.event(time=now - timedelta(minutes=minutes), env="dev", app="qrng", action="hold",
                  reason=f"{minutes}m ago")  # fmt: skip
    where = ("--env", "dev", "--app", "qrng")  # its pin was committed after the events
    shown = json.loads(cli("history", *where, "--limit", "3", "-o", "json").stdout)
    assert [row["reason"] for row in shown] == ["20m ago", "10m ago", "initial"]
    both = json.loads(cli("history", *where, "--since", "45m", "--limit", "9", "--json").stdout)
    assert controller_events(both) == ["40m ago", "30m ago", "20m ago", "10m ago"]
    table = cli("history", *where, "--limit", "1").stdout.splitlines()
    assert len(table) == 2 and table[1].split()[3] == "pin"
    assert json.loads(cli("history", "--limit", "0", "--json").stdout) == []
    refused = cli("history", "--limit", "-1")
    assert refused.exit_code == 2 and "--limit" in refused.stderr


def test_since_refuses_what_is_no_time(cli: Cli) -> None:
    result = cli("history", "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is neither a time ago (30m, 2h, 7d) nor ISO 8601" in result.stderr


def test_formats_table_wide_and_csv(cli: Cli) -> None:
    cli.event(env="dev", app="qrng", action="hold", reason="soak", revision="ab" * 20)
    table = cli("history", "--env", "dev", "--app", "qrng").stdout.splitlines()
    assert table[0].split() == [
        "TIME", "ENV", "APP", "ACTION", "FROM_VERSION", "TO_VERSION", "ACTOR", "OUTCOME", "REASON"
    ]  # fmt: skip
    wide = cli("history", "--env", "dev", "--app", "qrng", "-o", "wide").stdout.splitlines()
    assert "REVISION" in wide[0] and "ab" * 20 in wide[-1]
    rows = list(csv.DictReader(io.StringIO(cli("history", "--format", "csv").stdout)))
    assert rows[-1]["reason"] == "soak" and rows[-1]["env"] == "dev"


def test_an_unknown_environment_with_no_history_gets_a_suggestion(cli: Cli) -> None:
    result = cli("history", "--env", "prd")
    assert result.exit_code == 1 and "did you mean prod?" in result.stderr
