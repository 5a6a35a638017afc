"""Gate verdicts from review kept in Git: written, read back, bound to one release and QIR."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult
from qrelease.source.repo import GitRepo
from qrelease.verdicts import (
    REVIEWS_REF,
    newest_review,
    read_reviews,
    record_review,
    reviewed_report,
    reviews_tip,
)
from tests.helpers.gitops import GitOpsRepo

QIR = "; ModuleID = 'bell'\ndefine void @ENTRYPOINT__main() #0 { ret void }\n"


def report(passed: bool = True) -> GateReport:
    smoke = GateOutcome.PASSED if passed else GateOutcome.FAILED
    results = (
        GateResult("profile", GateOutcome.PASSED, "compiles for Base", {"seconds": 0.5}),
        GateResult("estimate", GateOutcome.PASSED, "12 physical qubits", {"physical_qubits": 12}),
        GateResult("smoke", smoke, "distance 0.02", {"shots": 500, "seed": 7}),
    )
    digest = hashlib.sha256(QIR.encode()).hexdigest()
    return GateReport(results, QIR, digest, EstimateSummary(12, 3000))


def record(repo: GitRepo, version: str = "1.1.0", digest: str = "d1", passed: bool = True) -> str:
    return record_review(
        repo,
        app="bell-service",
        version=version,
        digest=digest,
        report=report(passed),
        reviewed="c0ffee" * 6 + "c0ff",
        actor="CI <ci@example.com>",
    )


def test_a_review_is_kept_on_its_ref_and_read_back_whole(example_repo: GitOpsRepo) -> None:
    with GitRepo(example_repo.path) as repo:
        assert read_reviews(repo) == [] and reviews_tip(repo) is None
        commit = record(repo)
        assert reviews_tip(repo) == commit
        assert example_repo.git("rev-parse", "main") == example_repo.head  # the branch stays
        [found] = read_reviews(repo)
        assert (found.commit, found.app, found.version, found.digest) == (
            commit, "bell-service", "1.1.0", "d1",
        )  # fmt: skip
        assert found.passed and found.counts and found.reviewer == "ci@example.com"
        assert found.qir_sha256 == hashlib.sha256(QIR.encode()).hexdigest()
        back = reviewed_report(repo, found)
    assert back == report()  # every result, its evidence, the QIR and the estimate
    message = example_repo.git("log", "-1", "--format=%B", REVIEWS_REF)
    assert "review bell-service 1.1.0: gates passed" in message
    assert "smoke: Passed distance 0.02" in message


def test_the_newest_review_of_exactly_that_release_is_the_one_that_counts(
    example_repo: GitOpsRepo,
) -> None:
    with GitRepo(example_repo.path) as repo:
        record(repo, passed=False)
        second = record(repo)
        record(repo, digest="other-build")
        record(repo, version="1.2.0")
        records = read_reviews(repo)
    assert len(records) == 4
    found = newest_review(records, "bell-service", "1.1.0", "d1")
    assert found is not None and found.commit == second and found.passed
    assert newest_review(records, "bell-service", "1.1.0", "never-reviewed") is None


def test_a_review_whose_qir_was_swapped_is_refused(example_repo: GitOpsRepo) -> None:
    with GitRepo(example_repo.path) as repo:
        record(repo)
        [found] = read_reviews(repo)
        # Someone rewrites the record with other QIR but the same trailers.
        tree = _tree_with(example_repo.path, found.commit, "program.ll", b"; evil\n")
        forged = example_repo.git(
            "commit-tree", tree, "-m", example_repo.git("log", "-1", "--format=%B", found.commit)
        )
        example_repo.git("update-ref", REVIEWS_REF, forged)
        [altered] = read_reviews(repo)
        with pytest.raises(ValueError, match="its QIR hashes to"):
            reviewed_report(repo, altered)


def test_commits_without_review_trailers_are_ignored(example_repo: GitOpsRepo) -> None:
    empty = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    junk = example_repo.git("commit-tree", empty, "-m", "not a review\n\nQrelease-App: x\n")
    example_repo.git("update-ref", REVIEWS_REF, junk)
    with GitRepo(example_repo.path) as repo:
        assert read_reviews(repo) == []


def test_a_review_is_pushed_to_origin_when_there_is_one(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    bare = tmp_path / "remote.git"
    example_repo.git("clone", "--quiet", "--bare", str(example_repo.path), str(bare))
    example_repo.git("remote", "add", "origin", str(bare))
    with GitRepo(example_repo.path) as repo:
        commit = record(repo)
    with GitRepo(bare) as remote:
        assert reviews_tip(remote) == commit
        [found] = read_reviews(remote)
        assert reviewed_report(remote, found).qir == QIR


def _tree_with(repo: Path, commit: str, name: str, content: bytes) -> str:
    """The commit's tree with one file replaced."""

    def git(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], input=data, capture_output=True, check=True
        )
        return done.stdout.decode().strip()

    blob = git("hash-object", "-w", "--stdin", data=content)
    lines = [
        line if not line.endswith(f"\t{name}") else f"100644 blob {blob}\t{name}"
        for line in git("ls-tree", commit).splitlines()
    ]
    return git("mktree", data=("\n".join(lines) + "\n").encode())
