"""`qrelease validate`'s catalog and statistics checks (no qdk: `--no-compile`)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from qrelease.cli import main
from tests.helpers.gitops import GitOpsRepo

QRNG = "manifests/qrng/0.2.0.yaml"


def validate(repo: GitOpsRepo, state: Path) -> tuple[int, str, dict[str, object]]:
    """(exit code, stderr, --json report) of `qrelease validate --no-compile`."""
    argv = ["validate", "--no-compile", "--repo", str(repo.path), "--state", str(state)]
    text = CliRunner().invoke(main, argv)
    data = CliRunner().invoke(main, [*argv, "--json"])
    return text.exit_code, text.stderr, json.loads(data.stdout)


def pin_qrng_to(repo: GitOpsRepo, target: str) -> int:
    """Point qrng 0.2.0 at another target; the line of its target in the manifest."""
    text = repo.read(QRNG).replace("id: ionq.simulator", f"id: {target}")
    repo.write(QRNG, text)
    repo.commit(f"qrng on {target}")
    return 1 + next(n for n, line in enumerate(text.splitlines()) if target in line)


def test_a_retired_pin_is_a_validation_error(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    line = pin_qrng_to(example_repo, "rigetti.qpu.cepheus-1-36q")
    code, err, report = validate(example_repo, tmp_path)
    assert code == 1
    assert f"{QRNG}:{line}: quantum.target.id: target rigetti.qpu.cepheus-1-36q is retired" in err
    assert not report["ok"]


def test_a_deprecated_pin_is_a_warning(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    line = pin_qrng_to(example_repo, "rigetti.qpu.ankaa-3")
    code, err, report = validate(example_repo, tmp_path)
    assert code == 0, err
    assert (
        f"warning: {QRNG}:{line}: quantum.target.id: target rigetti.qpu.ankaa-3 is deprecated"
        in (err)
    )
    assert report["ok"] and len(report["warnings"]) == 1  # type: ignore[arg-type]


def test_a_local_simulator_cannot_serve_an_azure_environment(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    pin_qrng_to(example_repo, "qdk.sim.base")
    code, err, _ = validate(example_repo, tmp_path)
    assert code == 0, err  # fine for the local example environments
    azure = (
        "quantum: {kind: azure, subscription: s, resource_group: rg, workspace: ws,"
        " location: westeurope}"
    )
    example_repo.write(
        "releases/dev.yaml",
        example_repo.read("releases/dev.yaml").replace("quantum: {kind: local}", azure),
    )
    example_repo.commit("dev on Azure")
    code, err, _ = validate(example_repo, tmp_path)
    assert code == 1
    assert "releases/dev.yaml:13: apps.qrng: qrng 0.2.0 is pinned to qdk.sim.base, a local" in err


def test_targets_lists_the_catalog_with_sources(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    argv = ["targets", "--repo", str(example_repo.path), "--state", str(tmp_path), "--env", "dev"]
    table = CliRunner().invoke(main, argv)
    assert table.exit_code == 0, table.output
    assert "rigetti.qpu.ankaa-3" in table.stdout and "deprecated" in table.stdout
    assert "provider-rigetti" in table.stdout  # the sources are listed under the table
    data = json.loads(CliRunner().invoke(main, [*argv, "--json"]).stdout)
    by_id = {row["target"]: row for row in data["catalog"]}
    assert by_id["ionq.simulator"]["pinned_by"] == ["qrng 0.2.0"]
    assert by_id["quantinuum.qpu.h2-1"]["noise"]["source"].startswith("S. A. Moses")
    assert data["workspace"] is None  # dev is local: there is no live view


def test_too_few_shots_is_a_warning_that_says_how_many_are_needed(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    code, err, report = validate(example_repo, tmp_path)
    assert code == 0 and not report["warnings"], err  # the examples have enough shots
    path = "manifests/bell-service/1.0.0.yaml"
    text = example_repo.read(path).replace("shots: 1000", "shots: 500")
    example_repo.write(path, text)
    example_repo.commit("fewer shots")
    line = 1 + next(n for n, row in enumerate(text.splitlines()) if "shots: 500" in row)
    code, err, report = validate(example_repo, tmp_path)
    assert code == 0
    assert (
        f"warning: {path}:{line}: quantum.gates.smoke.shots: 500 shots cannot tell a deviation"
        " of 0.1 (max_distance) at alpha 0.05 from the expectation with power 0.95; 869 are"
        " needed"
    ) in err
    (warning,) = report["warnings"]  # type: ignore[misc]  # the second run: lines from the cache
    assert (warning["path"], warning["line"]) == (path, line)


def test_noise_target_needs_published_figures(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    path = "manifests/bell-service/1.1.0.yaml"  # pinned to ionq.qpu.aria-1, which has them
    example_repo.write(
        path,
        example_repo.read(path).replace("      seed: 7\n", "      seed: 7\n      noise: target\n"),
    )
    example_repo.commit("noisy smoke on Aria")
    code, err, _ = validate(example_repo, tmp_path)
    assert code == 0, err
    text = example_repo.read(path).replace("id: ionq.qpu.aria-1", "id: ionq.qpu.forte-1")
    example_repo.write(path, text)
    example_repo.commit("Forte publishes no figures")
    line = 1 + next(n for n, row in enumerate(text.splitlines()) if "noise: target" in row)
    code, err, _ = validate(example_repo, tmp_path)
    assert code == 1
    assert f"{path}:{line}: quantum.gates.smoke.noise: noise: target: the catalog has no" in err
