"""`qrelease validate` compiles every release with the real qdk, as a user runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from tests.helpers.gitops import GitOpsRepo

pytestmark = pytest.mark.slow

BELL = "manifests/bell-service/programs/bell.qs"
BELL_1_0 = "manifests/bell-service/1.0.0.yaml"


def validate(repo: GitOpsRepo, state: Path, *args: str) -> tuple[int, str, dict[str, object]]:
    """(exit code, stderr, the --json report) of `qrelease validate` (run as text, then JSON)."""
    argv = ["validate", "--repo", str(repo.path), "--state", str(state), *args]
    result = CliRunner().invoke(main, argv)
    return result.exit_code, result.stderr, report(repo, state, *args)[1]


def report(repo: GitOpsRepo, state: Path, *args: str) -> tuple[int, dict[str, object]]:
    """(exit code, the --json report) of one `qrelease validate --json`."""
    argv = ["validate", "--repo", str(repo.path), "--state", str(state), "--json", *args]
    result = CliRunner().invoke(main, argv)
    return result.exit_code, json.loads(result.stdout)


def test_a_q_sharp_syntax_error_is_reported_at_its_line(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    text = example_repo.read(BELL).replace("H(qubits[0]);", "H(qubits[0]) oops;")
    example_repo.write(BELL, text)
    example_repo.commit("a typo in the program")
    code, err, report = validate(example_repo, tmp_path / "state")
    line = 1 + text.splitlines().index(next(s for s in text.splitlines() if "oops" in s))
    assert code == 1
    assert f"{BELL}:{line}: column " in err
    assert "Qdk.Qsc.Parse.MissingSemi" in err
    assert f"pinned by {BELL_1_0}" in err
    assert not report["ok"]


def test_an_unknown_target_is_reported_at_the_manifest_line(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    text = example_repo.read(BELL_1_0).replace("id: ionq.simulator", "id: ionq.qpu.aria-9")
    example_repo.write(BELL_1_0, text)
    example_repo.commit("a target that does not exist")
    code, err, _ = validate(example_repo, tmp_path / "state", "--no-compile")
    line = 1 + text.splitlines().index(next(s for s in text.splitlines() if "aria-9" in s))
    assert code == 1
    assert f"{BELL_1_0}:{line}: quantum.target.id: unknown target 'ionq.qpu.aria-9'" in err


def test_a_capability_error_names_the_qsharp_line_and_the_profile(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    manifest = "manifests/bell-service/1.2.0.yaml"
    text = example_repo.read(manifest)
    example_repo.write(manifest, text.replace("profile: Adaptive_RI", "profile: Base"))
    example_repo.commit("feed-forward pinned to Base")
    code, err, _ = validate(example_repo, tmp_path / "state")
    assert code == 1
    assert "manifests/bell-service/programs/bell_reset.qs:" in err
    assert "Qdk.Qsc.CapabilitiesCk.UseOfDynamicBool" in err
    assert "compiled for Base" in err


def test_compile_results_are_cached_by_content(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = report(example_repo, state)[1]
    second = report(example_repo, state)[1]
    assert first["ok"] and second["ok"]
    assert second["compiled"] == 0
    assert second["compile_cached"] == first["compiled"] + first["compile_cached"] >= 2
    example_repo.write(
        "manifests/qrng/programs/qrng.qs",
        example_repo.read("manifests/qrng/programs/qrng.qs")
        + "\n// a comment changes the content\n",
    )
    example_repo.commit("touch the qrng program")
    third = report(example_repo, state)[1]
    assert third["compiled"] == 1  # only the changed program is compiled again


def test_the_same_program_in_many_apps_compiles_once(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    """Ten apps shipping the same Bell program (as a monorepo of services does): one compile
    for all, the same count as with the one app, and never a worker per copy."""
    alone = report(example_repo, tmp_path / "alone")[1]
    manifest = example_repo.read(BELL_1_0)
    for n in range(10):
        app = f"bell-copy-{n}"
        example_repo.write(f"manifests/{app}/programs/bell.qs", example_repo.read(BELL))
        example_repo.write(
            f"manifests/{app}/1.0.0.yaml", manifest.replace("app: bell-service", f"app: {app}")
        )
    example_repo.commit("ten copies of the Bell service")

    copies = report(example_repo, tmp_path / "copies")[1]

    assert copies["ok"], copies["errors"]
    assert copies["compiled"] == alone["compiled"]
    assert copies["compile_cached"] == alone["compile_cached"] + 10


def test_no_compile_skips_qdk(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    example_repo.write(BELL, "namespace Bell { operation Main() : Result[] { oops } }")
    example_repo.commit("broken program")
    code, err, report = validate(example_repo, tmp_path / "state", "--no-compile")
    assert code == 0, err
    assert report["compiled"] == report["compile_cached"] == 0


def languages_repo(tmp_path: Path) -> GitOpsRepo:
    """A repo made by `qrelease init --example languages`."""
    result = CliRunner().invoke(
        main, ["init", str(tmp_path / "languages"), "--example", "languages"]
    )
    assert result.exit_code == 0, result.output
    return GitOpsRepo(tmp_path / "languages")


def test_the_languages_example_validates_and_compiles(tmp_path: Path) -> None:
    code, err, data = validate(languages_repo(tmp_path), tmp_path / "state")
    assert code == 0, err
    assert data["manifests"] == 2 and data["compile_cached"] == 2 and not data["warnings"]


def test_openqasm_errors_are_reported_at_the_qasm_line(tmp_path: Path) -> None:
    repo = languages_repo(tmp_path)
    program = "manifests/ghz-qasm/programs/ghz.qasm"
    text = repo.read(program)
    repo.write(program, text.replace("h q[0];", "h q[0];\nfoo q[1];"))
    repo.commit("an undefined gate")
    code, err, _ = validate(repo, tmp_path / "state")
    line = 1 + text.splitlines().index("h q[0];") + 1
    assert code == 1
    assert (
        f"{program}:{line}: column 1: Qdk.Qasm.Lowerer.UndefinedSymbol: undefined symbol: foo"
        in err
    )


def test_a_qiskit_release_must_list_qiskit_and_is_warned_about_another_version(
    tmp_path: Path,
) -> None:
    repo = languages_repo(tmp_path)
    manifest = "manifests/bell-qiskit/0.1.0.yaml"
    text = repo.read(manifest)
    repo.write(manifest, text.replace("    - {name: qiskit, version: 2.6.2}\n", ""))
    repo.commit("forget qiskit")
    code, err, _ = validate(repo, tmp_path / "state")
    assert code == 1
    assert f"{manifest}:" in err and "classical.packages: a Qiskit program needs qiskit" in err
    repo.write(manifest, text.replace("version: 2.6.2}", "version: 1.4.0}"))
    repo.commit("an older qiskit")
    code, err, data = validate(repo, tmp_path / "state")
    assert code == 0
    assert "the release pins qiskit 1.4.0, but the gate workers convert" in err
    assert data["warnings"]
