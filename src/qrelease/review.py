"""Gates in review: `qrelease check` runs on a pull request what the controller runs at deploy.

A pull request that breaks a program for its target's profile, blows its resource budget
or fails its smoke test should be refused in review, not in the first environment. So
`check` compares HEAD with the merge base of `--base` (what the pull request changes, as
`git diff base...HEAD` sees it), picks every release the change touches, and runs that
release's quantum gates on the same sandboxed workers, with the same content-keyed cache,
as the controller. It deploys nothing, opens no store and touches no environment.

A release counts as changed when its manifest file or its program file differs from the
merge base, or when an environment file pins it where it did not before (a promotion).
The verdicts render three ways: lines for people, JSON (`as_json`) and JUnit XML
(`junit_xml`, one test case per release x gate) that Azure Pipelines and GitHub Actions
show natively. Each verdict carries the gate cache key and the QIR digest, the identity of
what was gated. With `--record` the verdicts are also kept in Git (`verdicts.py`), bound
to each release's digest, for the controller to show and, where policy allows, reuse.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from qrelease.evidence import release_digest
from qrelease.model.manifest import Quantum, ReleaseManifest
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult, ProgramSource
from qrelease.source.loader import Loader, LoadError, Snapshot, program_path
from qrelease.source.repo import GitRepo
from qrelease.verdicts import record_review

JUNIT_SUITE = "qrelease check"
_FAILING = (GateOutcome.FAILED, GateOutcome.INCONCLUSIVE)


class GateRunner(Protocol):
    """Runs one release's gates (the local qdk backend, on its pool of workers)."""

    @property
    def workers(self) -> int:
        """How many releases run side by side."""
        ...

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """Profile, estimate and smoke gates of one release."""
        ...


@dataclass(frozen=True)
class ChangedRelease:
    """A release the change touches, and why it counts as changed."""

    manifest: ReleaseManifest
    manifest_path: str
    reasons: tuple[str, ...]
    digest: str = ""
    """The release digest at HEAD (manifest and program blob): what a recorded verdict binds."""

    @property
    def name(self) -> str:
        """`app version`, as JUnit's class name and the report lines show it."""
        return f"{self.manifest.app} {self.manifest.version}"


@dataclass(frozen=True)
class Verdict:
    """The gates of one changed release: a report, or why they could not run."""

    release: ChangedRelease
    report: GateReport | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """True when every gate Passed or was Skipped."""
        return self.report is not None and self.report.passed

    @property
    def results(self) -> tuple[GateResult, ...]:
        """Each gate's result; one Failed `gates` result when they could not run."""
        if self.report is not None:
            return self.report.results
        return (GateResult("gates", GateOutcome.FAILED, self.error or "not run"),)


@dataclass(frozen=True)
class CheckReport:
    """What `qrelease check` found: the revisions compared, validation problems, verdicts."""

    base: str
    merge_base: str
    head: str
    problems: tuple[LoadError, ...] = ()
    warnings: tuple[LoadError, ...] = ()
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when the repo validates and every changed release passed its gates."""
        return not self.problems and all(verdict.passed for verdict in self.verdicts)


def check(
    repo: GitRepo,
    base_rev: str,
    head_rev: str,
    *,
    validate: Callable[[Snapshot], tuple[Sequence[LoadError], Sequence[LoadError]]],
    runner: Callable[[], GateRunner],
) -> CheckReport:
    """Validate HEAD, then gate every release changed since the merge base with `base_rev`.

    `validate` returns (problems, warnings) for a snapshot (what `qrelease validate`
    reports); `runner` makes the gate runner on first need (nothing starts when no
    release changed).
    """
    head = repo.resolve(head_rev)
    merge_base = repo.merge_base(base_rev, head)
    loader = Loader(repo)
    head_snapshot = loader.load(head)
    base_snapshot = loader.load(merge_base)
    problems, warnings = validate(head_snapshot)
    changed = frozenset(repo.changed_paths(merge_base, head))
    releases = changed_releases(base_snapshot, head_snapshot, changed)
    verdicts = run_gates(releases, head_snapshot, repo.read_blob, runner()) if releases else []
    return CheckReport(
        base=base_rev,
        merge_base=merge_base,
        head=head,
        problems=tuple(sorted(set(problems), key=str)),
        warnings=tuple(sorted(set(warnings), key=str)),
        verdicts=tuple(verdicts),
    )


def manifest_path(manifest: ReleaseManifest, changed: frozenset[str]) -> str:
    """The repo path of a release's manifest (`.yaml`, or `.yml` when that one changed)."""
    base = f"manifests/{manifest.app}/{manifest.version}"
    return f"{base}.yml" if f"{base}.yml" in changed else f"{base}.yaml"


def changed_releases(
    base: Snapshot, head: Snapshot, changed: frozenset[str]
) -> list[ChangedRelease]:
    """Every valid release at HEAD that the change touches, in (app, version) order."""
    out = []
    for key, manifest in sorted(head.manifests.items()):
        path = manifest_path(manifest, changed)
        reasons = []
        if path in changed:
            reasons.append(f"{path} {'changed' if key in base.manifests else 'added'}")
        program = program_path(manifest.app, manifest.quantum.program)
        if program in changed and path not in changed:
            reasons.append(f"{program} changed")
        reasons += _new_pins(base, head, manifest)
        if reasons:
            digest = release_digest(head, manifest)
            out.append(ChangedRelease(manifest, path, tuple(reasons), digest))
    return out


def _new_pins(base: Snapshot, head: Snapshot, manifest: ReleaseManifest) -> list[str]:
    """`pinned in releases/<env>.yaml` for each environment that pins it now and did not."""
    found = []
    for name, env in sorted(head.environments.items()):
        if env.apps.get(manifest.app) != manifest.version:
            continue
        before = base.environments.get(name)
        if before is None or before.apps.get(manifest.app) != manifest.version:
            found.append(f"pinned in {head.env_paths.get(name, name)}")
    return found


def run_gates(
    releases: Sequence[ChangedRelease],
    head: Snapshot,
    read_blob: Callable[[str], bytes],
    runner: GateRunner,
) -> list[Verdict]:
    """Every changed release's gates, `runner.workers` at a time; no baseline (no
    environment is consulted, so the estimate is judged against its budget alone)."""

    def one(release: ChangedRelease) -> Verdict:
        manifest = release.manifest
        path = program_path(manifest.app, manifest.quantum.program)
        blob = head.programs.get(path)
        if blob is None:
            return Verdict(release, error=f"{path} is missing at {head.revision[:12]}")
        program = ProgramSource(path, read_blob(blob).decode("utf-8", "replace"))
        try:
            return Verdict(release, runner.run_gates(program, manifest.quantum, None))
        except Exception as error:  # a worker that cannot start fails this release only
            return Verdict(release, error=f"the gates could not run: {error}")

    workers = max(1, min(runner.workers, len(releases)))
    if workers == 1:
        return [one(release) for release in releases]
    with ThreadPoolExecutor(workers, thread_name_prefix="qrelease-check") as pool:
        return list(pool.map(one, releases))


def record_verdicts(
    repo: GitRepo, report: CheckReport, *, actor: str | None = None, sign: bool = False
) -> list[tuple[Verdict, str]]:
    """Keep each verdict whose gates ran in Git (`refs/qrelease/reviews`); (verdict, commit).

    A release whose gates could not run at all has nothing to keep: it is not recorded.
    """
    recorded = []
    for verdict in report.verdicts:
        if verdict.report is None:
            continue
        manifest = verdict.release.manifest
        commit = record_review(
            repo,
            app=manifest.app,
            version=manifest.version,
            digest=verdict.release.digest,
            report=verdict.report,
            reviewed=report.head,
            actor=actor,
            sign=sign,
        )
        recorded.append((verdict, commit))
    return recorded


def result_line(release: ChangedRelease, result: GateResult) -> str:
    """`app version  gate  Outcome  message`, one line per gate for people."""
    return f"{release.name}  {result.gate}  {result.outcome}  {result.message}"


def as_json(report: CheckReport) -> dict[str, Any]:
    """The report as JSON data: revisions, problems, and each release's gates with evidence."""
    return {
        "ok": report.ok,
        "base": report.base,
        "merge_base": report.merge_base,
        "head": report.head,
        "problems": [vars(problem) for problem in report.problems],
        "warnings": [vars(warning) for warning in report.warnings],
        "releases": [_verdict_json(verdict) for verdict in report.verdicts],
    }


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    release = verdict.release
    report = verdict.report
    keys = {r.details.get("cache_key") for r in verdict.results} - {None}
    return {
        "app": release.manifest.app,
        "version": release.manifest.version,
        "manifest": release.manifest_path,
        "program": program_path(release.manifest.app, release.manifest.quantum.program),
        "program_kind": str(release.manifest.quantum.kind),
        "target": release.manifest.quantum.target.id,
        "profile": str(release.manifest.quantum.target.profile),
        "changed": list(release.reasons),
        "digest": release.digest,
        "passed": verdict.passed,
        "qir_sha256": None if report is None else report.qir_sha256,
        "cache_key": next(iter(keys)) if len(keys) == 1 else None,
        "gates": [
            {
                "gate": r.gate,
                "outcome": str(r.outcome),
                "message": r.message,
                "details": {k: v for k, v in r.details.items() if k != "cache_key"},
            }
            for r in verdict.results
        ],
    }


def junit_xml(report: CheckReport) -> bytes:
    """JUnit XML: a `validate` suite (one case per problem file, or one passing case) and a
    `gates` suite with one case per release x gate (class name `app version`)."""
    root = ElementTree.Element("testsuites", name=JUNIT_SUITE)
    validate = ElementTree.SubElement(root, "testsuite", name=f"{JUNIT_SUITE}: validate")
    for path, problems in _by_file(report.problems).items():
        case = ElementTree.SubElement(validate, "testcase", classname="validate", name=path)
        text = "\n".join(str(problem) for problem in problems)
        failure = ElementTree.SubElement(case, "failure", message=str(problems[0]))
        failure.text = text
    if not report.problems:
        ElementTree.SubElement(validate, "testcase", classname="validate", name=report.head[:12])
    gates = ElementTree.SubElement(root, "testsuite", name=f"{JUNIT_SUITE}: gates")
    for verdict in report.verdicts:
        for result in verdict.results:
            _gate_case(gates, verdict, result)
    for suite in (validate, gates):
        _count(suite)
    _count(root)
    ElementTree.indent(root)
    document: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _gate_case(suite: ElementTree.Element, verdict: Verdict, result: GateResult) -> None:
    """One test case: a Failed or Inconclusive gate is a failure, a Skipped one skipped."""
    release = verdict.release
    case = ElementTree.SubElement(suite, "testcase", classname=release.name, name=result.gate)
    seconds = result.details.get("seconds")
    if isinstance(seconds, int | float):
        case.set("time", f"{seconds:.3f}")
    message = f"{result.gate} gate {result.outcome}: {result.message}"
    if result.outcome in _FAILING:
        failure = ElementTree.SubElement(case, "failure", message=message)
        failure.set("type", str(result.outcome))
        failure.text = f"{release.manifest_path}\n{message}\nchanged: {'; '.join(release.reasons)}"
    elif result.outcome is GateOutcome.SKIPPED:
        ElementTree.SubElement(case, "skipped", message=result.message)
    else:
        ElementTree.SubElement(case, "system-out").text = message


def _count(element: ElementTree.Element) -> None:
    """Set tests/failures/skipped on a suite (or the root) from its cases."""
    cases = list(element.iter("testcase"))
    element.set("tests", str(len(cases)))
    element.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    element.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    element.set("errors", "0")


def _by_file(problems: Iterable[LoadError]) -> dict[str, list[LoadError]]:
    grouped: dict[str, list[LoadError]] = {}
    for problem in sorted(problems, key=lambda p: (p.path, p.line)):
        grouped.setdefault(problem.path, []).append(problem)
    return grouped
