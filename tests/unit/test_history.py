"""History tells the story: every event's reason in table, JSON and CSV, one entry per promotion."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from tests.helpers.gitops import GitOpsRepo

GATE_FAILURE = "UseOfDynamicBool at 3:5: a Base target cannot branch on a measurement"


@pytest.fixture
def failed_rollouts(example_repo: GitOpsRepo, tmp_path: Path) -> Path:
    """A state dir whose store holds a gate failure and an auto-rollback in prod."""
    state = tmp_path / "state"
    deployer, quantum = MemoryDeployer(), MemoryQuantum()
    backends = Backends(lambda env: deployer, lambda env: quantum)
    original = deployer.check_health

    def fails_when_live(env, manifest, *, current):  # type: ignore[no-untyped-def]
        result = original(env, manifest, current=current)
        if current and manifest.version == "1.1.0":
            return type(result)(False, "self-check exited 3")
        return result

    now = [datetime(2026, 5, 4, 9, 0, tzinfo=UTC)]  # a Monday: no deny window
    with open_store(state) as store, GitRepo(example_repo.path) as repo:
        engine = Engine(repo, store, backends, clock=lambda: now[0])
        engine.reconcile()  # staging runs 1.1.0 Healthy: prod may take it once soaked
        now[0] += timedelta(hours=2)
        deployer.check_health = fails_when_live  # type: ignore[method-assign]
        prod = example_repo.read("releases/prod.yaml")
        prod = prod.replace("bell-service: 1.0.0", "bell-service: 1.1.0")
        example_repo.write("releases/prod.yaml", prod.replace("qrng: 0.1.0", "qrng: 0.2.0"))
        example_repo.commit("prod: bell-service 1.1.0, qrng 0.2.0")
        quantum.failing_programs["manifests/qrng/programs/qrng.qs"] = GATE_FAILURE
        engine.reconcile()
    return state


def history(repo: GitOpsRepo, state: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["history", "--repo", str(repo.path), "--state", str(state), "--env", "prod", *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_failed_deploys_and_auto_rollbacks_say_why_in_every_format(
    example_repo: GitOpsRepo, failed_rollouts: Path
) -> None:
    rows = json.loads(history(example_repo, failed_rollouts, "--format", "json"))
    failed = {(r["app"], r["action"]): r for r in rows if r["outcome"] == "Failed"}
    assert GATE_FAILURE in failed[("qrng", "deploy")]["reason"]
    assert "self-check exited 3" in failed[("bell-service", "deploy")]["reason"]
    (rollback,) = [r for r in rows if r["action"] == "auto-rollback"]
    assert rollback["outcome"] == "Restored" and "self-check exited 3" in rollback["reason"]
    assert all(
        r["reason"] for r in rows if r["action"] in ("deploy", "gate") and r["outcome"] != "Healthy"
    )
    table = history(example_repo, failed_rollouts)
    assert GATE_FAILURE in table and "self-check exited 3; rolled back to 1.0.0" in table
    parsed = list(
        csv.DictReader(io.StringIO(history(example_repo, failed_rollouts, "--format", "csv")))
    )
    assert any(GATE_FAILURE in row["reason"] for row in parsed if row["outcome"] == "Failed")


def test_pages_of_the_newest_entries_cover_the_timeline_without_gaps_or_repeats(
    example_repo: GitOpsRepo, failed_rollouts: Path
) -> None:
    with open_store(failed_rollouts) as store:  # a joined promotion among many events
        head = example_repo.head
        from qrelease.model.events import EventDraft

        for index in range(30):  # now: after the commits
            store.append(EventDraft(env="prod", app="qrng", action="health", reason=f"{index}"))
        store.append(
            EventDraft(
                env="prod",
                app="bell-service",
                action="promote",
                revision=head,
                from_version="1.0.0",
                to_version="1.1.0",
            )
        )
    whole = json.loads(history(example_repo, failed_rollouts, "--format", "json"))
    keys = [(row["seq"], row["revision"], row["action"], row["app"]) for row in whole]
    assert len(keys) == len(set(keys))
    assert sum(1 for row in whole if row["source"] == "git+controller") == 1

    pages: list[list[dict[str, object]]] = []
    before: list[str] = []
    while True:
        lines = history(
            example_repo, failed_rollouts, "--format", "jsonl", "--limit", "7", *before
        ).splitlines()
        page = [json.loads(line) for line in lines]
        if not page:
            break
        assert len(page) <= 7
        pages.insert(0, page)
        seqs = [row["seq"] for row in page if row["seq"] is not None]
        assert seqs  # no run of 7 Git entries here: every page names the next one
        before = ["--before", str(min(seqs))]  # type: ignore[type-var]
    assert [row for page in pages for row in page] == whole


def test_the_newest_entries_come_oldest_first_and_the_table_names_the_next_page(
    example_repo: GitOpsRepo, failed_rollouts: Path
) -> None:
    from qrelease.model.events import EventDraft

    with open_store(failed_rollouts) as store:
        store.append(EventDraft(env="prod", app="qrng", action="health"))  # newer than Git's
    whole = json.loads(history(example_repo, failed_rollouts, "--format", "json"))
    newest = json.loads(history(example_repo, failed_rollouts, "--format", "json", "--limit", "3"))
    assert newest == whole[-3:]
    result = CliRunner().invoke(
        main,
        [
            "history",
            "--repo",
            str(example_repo.path),
            "--state",
            str(failed_rollouts),
            "--env",
            "prod",
            "--limit",
            "3",
        ],
    )
    oldest = min(row["seq"] for row in newest if row["seq"] is not None)
    assert result.exit_code == 0 and f"(older entries: --before {oldest})" in result.stderr
    empty = json.loads(history(example_repo, failed_rollouts, "--format", "json", "--limit", "0"))
    assert empty == []
