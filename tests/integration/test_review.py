"""`qrelease check` as CI runs it: a real Git repo with two commits, real qdk gate workers."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from tests.helpers.gitops import GitOpsRepo

pytestmark = pytest.mark.slow

BELL = "manifests/bell-service/programs/bell.qs"


def _add_qrng_0_3_0(repo: GitOpsRepo) -> None:
    """A new release of qrng: 0.2.0's manifest under a new version (not yet committed)."""
    text = repo.read("manifests/qrng/0.2.0.yaml").replace("version: 0.2.0", "version: 0.3.0")
    repo.write("manifests/qrng/0.3.0.yaml", text)


def run_check(repo: GitOpsRepo, state: Path, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `qrelease check` in the repo."""
    argv = ["check", "--repo", str(repo.path), "--state", str(state), *args]
    result = CliRunner().invoke(main, argv)
    return result.exit_code, result.stdout, result.stderr


def test_a_q_sharp_program_broken_in_a_pull_request_fails_check_with_junit(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    example_repo.git("checkout", "--quiet", "-b", "pr")
    text = example_repo.read(BELL).replace("H(qubits[0]);", "H(qubits[0])")
    example_repo.write(BELL, text)
    example_repo.commit("drop a semicolon")
    junit = tmp_path / "check.xml"
    code, out, err = run_check(
        example_repo, tmp_path / "state", "--base", "main", "--junit", str(junit)
    )
    line = 1 + text.splitlines().index(next(s for s in text.splitlines() if "H(qubits[0])" in s))
    assert code == 1
    assert f"bell-service 1.0.0  profile  Failed  {BELL}:{line}:" in out
    assert "Qdk.Qsc.Parse.MissingSemi" in out
    assert f"{BELL}:{line}: column" in err  # validate's line, too
    root = ElementTree.fromstring(junit.read_bytes())  # noqa: S314 our own output, not input
    failures = {
        (case.get("classname"), case.get("name"))
        for case in root.iter("testcase")
        if case.find("failure") is not None
    }
    assert ("bell-service 1.0.0", "profile") in failures
    assert ("bell-service 1.1.0", "profile") in failures
    assert not (tmp_path / "state" / "qrelease.db").exists()  # no environment state touched
    assert not (tmp_path / "state" / "envs").exists()


def test_a_good_change_passes_every_gate_and_exits_zero(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    base = example_repo.head
    _add_qrng_0_3_0(example_repo)
    example_repo.commit("qrng 0.3.0")
    code, out, _err = run_check(example_repo, tmp_path / "state", "--base", base, "--json")
    assert code == 0, out
    data = json.loads(out)
    (release,) = data["releases"]
    assert (release["app"], release["version"], release["passed"]) == ("qrng", "0.3.0", True)
    assert [g["gate"] for g in release["gates"]] == ["profile", "estimate", "smoke"]
    assert all(g["outcome"] == "Passed" for g in release["gates"])
    assert len(release["qir_sha256"]) == 64 and len(release["cache_key"]) == 64
    smoke = release["gates"][2]["details"]
    assert smoke["shots"] == 1000 and "p_value" in smoke


def test_a_failing_smoke_test_in_review_names_release_and_gate(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    base = example_repo.head
    manifest = "manifests/qrng/0.2.0.yaml"
    text = example_repo.read(manifest).replace(
        '"[Zero, Zero, Zero]": 0.125', '"[Zero, Zero, Zero]": 0.5'
    )
    text = (
        text.replace('"[One, One, One]": 0.125', '"[One, One, One]": 0.0')
        .replace('"[One, One, Zero]": 0.125', '"[One, One, Zero]": 0.0')
        .replace('"[One, Zero, One]": 0.125', '"[One, Zero, One]": 0.0')
    )
    example_repo.write(manifest, text)
    example_repo.commit("expect the wrong distribution")
    junit = tmp_path / "check.xml"
    code, out, _err = run_check(
        example_repo, tmp_path / "state", "--base", base, "--junit", str(junit)
    )
    assert code == 1
    assert "qrng 0.2.0  smoke  Failed" in out
    assert 'classname="qrng 0.2.0" name="smoke"' in junit.read_text()


def test_an_unknown_base_is_a_clear_error(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    code, _out, err = run_check(example_repo, tmp_path / "state", "--base", "no-such-branch")
    assert code == 1
    assert "unknown revision 'no-such-branch'" in err


def test_recorded_verdicts_reach_git_and_get_shows_them_for_the_pinned_release(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    base = example_repo.head
    _add_qrng_0_3_0(example_repo)
    example_repo.write(
        "releases/dev.yaml",
        example_repo.read("releases/dev.yaml").replace("qrng: 0.2.0", "qrng: 0.3.0"),
    )
    example_repo.commit("qrng 0.3.0 into dev")
    state = tmp_path / "state"
    code, out, _err = run_check(
        example_repo, state, "--base", base, "--record", "--actor", "CI <ci@example.com>", "--json"
    )
    assert code == 0, out
    (release,) = json.loads(out)["releases"]
    commit = release["review_commit"]
    assert commit == example_repo.git("rev-parse", "refs/qrelease/reviews")
    trailers = example_repo.git("log", "-1", "--format=%B", commit)
    assert f"Qrelease-QIR-Sha256: {release['qir_sha256']}" in trailers
    assert f"Qrelease-Digest: {release['digest']}" in trailers
    assert example_repo.git("log", "-1", "--format=%ae", commit) == "ci@example.com"
    result = CliRunner().invoke(
        main,
        ["get", "qrng", "--env", "dev", "--repo", str(example_repo.path), "--state", str(state)],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"review    gates passed in review {commit[:12]} by ci@example.com "
        f"for QIR sha256 {release['qir_sha256'][:12]}…" in result.stdout
    )
