"""Which releases a change touches, and how verdicts render (real git, a fake gate runner)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult, ProgramSource
from qrelease.review import CheckReport, as_json, changed_releases, check, junit_xml
from qrelease.source.loader import Loader, LoadError, Snapshot
from qrelease.source.repo import GitRepo
from tests.helpers.gitops import GitOpsRepo

BELL = "manifests/bell-service/programs/bell.qs"


class ScriptedRunner:
    """Gate results by program text: Failed profile when the text holds `broken`."""

    workers = 2

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        self.seen.append((program.path, quantum.start))
        if "broken" in program.text:
            failed = GateResult("profile", GateOutcome.FAILED, f"{program.path}:3:1: bad")
            skipped = GateResult("smoke", GateOutcome.SKIPPED, "not run: profile gate failed")
            return GateReport((failed, skipped))
        passed = GateResult("profile", GateOutcome.PASSED, "ok", {"seconds": 0.25})
        return GateReport((passed,), qir="qir", qir_sha256="ab" * 32)


def no_problems(snapshot: Snapshot) -> tuple[list[LoadError], list[LoadError]]:
    return [], []


def snapshots(repo: GitOpsRepo, base: str) -> tuple[Snapshot, Snapshot, frozenset[str]]:
    with GitRepo(repo.path) as git_repo:
        loader = Loader(git_repo)
        changed = frozenset(git_repo.changed_paths(base, repo.head))
        return loader.load(base), loader.load(repo.head), changed


def names(repo: GitOpsRepo, base: str) -> list[str]:
    return [release.name for release in changed_releases(*snapshots(repo, base))]


def test_a_changed_program_touches_every_release_that_pins_it(example_repo: GitOpsRepo) -> None:
    base = example_repo.head
    example_repo.write(BELL, example_repo.read(BELL) + "\n// a comment\n")
    example_repo.commit("comment the program")
    assert names(example_repo, base) == ["bell-service 1.0.0", "bell-service 1.1.0"]


def test_a_new_manifest_and_a_new_pin_count_as_changes(example_repo: GitOpsRepo) -> None:
    base = example_repo.head
    text = example_repo.read("manifests/qrng/0.2.0.yaml").replace(
        "version: 0.2.0", "version: 0.3.0"
    )
    example_repo.write("manifests/qrng/0.3.0.yaml", text)
    prod = example_repo.read("releases/prod.yaml")
    example_repo.write(
        "releases/prod.yaml", prod.replace("bell-service: 1.0.0", "bell-service: 1.1.0")
    )
    example_repo.commit("qrng 0.3.0; bell-service 1.1.0 to prod")
    base_snapshot, head_snapshot, changed = snapshots(example_repo, base)
    releases = {r.name: r.reasons for r in changed_releases(base_snapshot, head_snapshot, changed)}
    assert releases == {
        "bell-service 1.1.0": ("pinned in releases/prod.yaml",),
        "qrng 0.3.0": ("manifests/qrng/0.3.0.yaml added",),
    }


def test_an_unrelated_change_touches_no_release(example_repo: GitOpsRepo) -> None:
    base = example_repo.head
    example_repo.write("README.md", "changed\n")
    example_repo.commit("docs")
    assert names(example_repo, base) == []


def test_check_compares_with_the_merge_base_and_runs_only_changed_releases(
    example_repo: GitOpsRepo,
) -> None:
    example_repo.git("checkout", "--quiet", "-b", "feature")
    example_repo.write(BELL, example_repo.read(BELL).replace("namespace", "// broken\nnamespace"))
    example_repo.commit("break the bell program")
    example_repo.git("checkout", "--quiet", "main")
    example_repo.write(
        "manifests/qrng/programs/qrng.qs",
        "// main moved on\n" + example_repo.read("manifests/qrng/programs/qrng.qs"),
    )
    example_repo.commit("main moves on")
    runner = ScriptedRunner()
    with GitRepo(example_repo.path) as git_repo:
        report = check(git_repo, "main", "feature", validate=no_problems, runner=lambda: runner)
    assert sorted(runner.seen) == [(BELL, "Bell.Main()"), (BELL, "Bell.Main()")]
    assert not report.ok
    assert [v.release.name for v in report.verdicts] == ["bell-service 1.0.0", "bell-service 1.1.0"]


def test_no_changed_release_starts_no_runner(example_repo: GitOpsRepo) -> None:
    base = example_repo.head
    example_repo.commit("empty")

    def refuse() -> ScriptedRunner:
        raise AssertionError("no gate runner is needed")

    with GitRepo(example_repo.path) as git_repo:
        report = check(git_repo, base, "HEAD", validate=no_problems, runner=refuse)
    assert report.ok and report.verdicts == ()


def failing_report(example_repo: GitOpsRepo) -> CheckReport:
    base = example_repo.head
    example_repo.write(BELL, "// broken\n" + example_repo.read(BELL))
    example_repo.write(
        "manifests/qrng/programs/qrng.qs",
        "// fine\n" + example_repo.read("manifests/qrng/programs/qrng.qs"),
    )
    example_repo.commit("break bell, touch qrng")
    problem = LoadError(BELL, 3, "", "column 1: bad")
    with GitRepo(example_repo.path) as git_repo:
        return check(
            git_repo, base, "HEAD", validate=lambda s: ([problem], []), runner=ScriptedRunner
        )


def test_junit_has_one_case_per_release_and_gate_naming_both(example_repo: GitOpsRepo) -> None:
    report = failing_report(example_repo)
    root = ElementTree.fromstring(junit_xml(report))  # noqa: S314 our own output, not input
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert ("bell-service 1.0.0", "profile") in cases
    failure = cases[("bell-service 1.0.0", "profile")].find("failure")
    assert failure is not None and "profile gate Failed" in (failure.get("message") or "")
    assert cases[("bell-service 1.0.0", "smoke")].find("skipped") is not None
    assert cases[("qrng 0.1.0", "profile")].find("failure") is None
    assert cases[("qrng 0.1.0", "profile")].get("time") == "0.250"
    assert cases[("validate", BELL)].find("failure") is not None
    assert root.get("tests") == str(len(cases))
    assert root.get("failures") == "3"  # two bell releases' profile gates and the validation


def test_json_carries_each_gate_with_its_evidence_and_the_qir_digest(
    example_repo: GitOpsRepo,
) -> None:
    data = as_json(failing_report(example_repo))
    assert data["ok"] is False and data["problems"][0]["path"] == BELL
    by_name = {(r["app"], r["version"]): r for r in data["releases"]}
    qrng = by_name[("qrng", "0.2.0")]
    assert qrng["passed"] and qrng["qir_sha256"] == "ab" * 32
    assert qrng["gates"] == [
        {"gate": "profile", "outcome": "Passed", "message": "ok", "details": {"seconds": 0.25}}
    ]
    assert qrng["changed"] == ["manifests/qrng/programs/qrng.qs changed"]
    assert by_name[("bell-service", "1.1.0")]["passed"] is False
