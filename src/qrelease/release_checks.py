"""The quantum half of `qrelease validate`: what Git alone cannot show about a release.

The loader checks that files are well formed. This module checks what a release means on
quantum hardware before any controller runs it: that its program compiles for the pinned
profile (with qdk, in the sandboxed workers, cached by content so a second run is fast),
that the pinned target is in the catalog and not retired, and that the smoke test has
enough shots to tell a deviation of `max_distance`. Each problem is a `LoadError` at the
file and line to fix: the manifest's field, or the Q# file's line for compile errors.
Warnings (a deprecated target, too few shots) are reported the same way but do not fail
validation.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from qrelease.model.environment import AzureQuantum
from qrelease.model.manifest import ProgramKind, ReleaseManifest, TargetProfile
from qrelease.quantum import catalog
from qrelease.quantum.base import CompileOutcome, Diagnostic, ProgramSource
from qrelease.quantum.cache import ContentCache, content_key, qdk_version, qiskit_version
from qrelease.quantum.gates import shots_needed
from qrelease.quantum.noise import NoiseProblem, resolve_noise
from qrelease.source.loader import LoadError, Snapshot, program_path
from qrelease.source.parsing import BlobCache, KeyLines, lines_many
from qrelease.source.repo import GitRepo

COMPILE_CHECK_VERSION = 1
"""Part of every compile cache key: bump it when what a cached compile result means changes."""
_SHOWN_PINS = 3
_SMALL_READ = 8


class Compiler(Protocol):
    """Compiles a program's entry for a profile (the qdk backend, through its workers)."""

    def compile(self, program: ProgramSource, entry: str, profile: TargetProfile) -> CompileOutcome:
        """qdk's verdict on one program, entry and profile."""
        ...


@dataclass
class Findings:
    """Problems that fail validation, and warnings that do not."""

    errors: list[LoadError] = field(default_factory=list)
    warnings: list[LoadError] = field(default_factory=list)
    compiled: int = 0
    """Compile checks that ran (the rest came from the cache)."""
    cached: int = 0


@dataclass(frozen=True)
class _Unit:
    """One compile check: a program text, an entry and a profile, and who pins it."""

    path: str
    text: str
    entry: str
    profile: TargetProfile
    manifests: tuple[ReleaseManifest, ...]

    @functools.cached_property
    def key(self) -> str:
        """The compile cache's key of this check (asked several times: computed once)."""
        kind = str(ProgramKind.of(self.path))
        extra = [qiskit_version()] if kind == ProgramKind.QISKIT else []
        return content_key(
            "compile",
            COMPILE_CHECK_VERSION,
            qdk_version(),
            kind,
            self.text,
            self.entry,
            self.profile,
            *extra,
        )


class _Manifests:
    """Where each manifest's fields are: its path, and its key lines read once (cached by blob)."""

    def __init__(self, repo: GitRepo, snapshot: Snapshot, lines: BlobCache | None) -> None:
        self._repo = repo
        self._snapshot = snapshot
        self._cache = lines
        self._lines: dict[tuple[str, str], KeyLines | None] = {}
        self._blobs: dict[str, str] | None = None
        """Manifest path -> blob id at the snapshot's revision (one `ls-tree` when first asked)."""

    def path_of(self, manifest: ReleaseManifest) -> str:
        """The file a manifest was read from (`.yaml` or `.yml`)."""
        base = f"manifests/{manifest.app}/{manifest.version}"
        blobs = self._listing()
        return next((p for p in (f"{base}.yaml", f"{base}.yml") if p in blobs), f"{base}.yaml")

    def where(self, manifest: ReleaseManifest, *keys: str) -> tuple[str, int]:
        """(path, line) of a field of a manifest (line 1 when it cannot be found)."""
        if manifest.key not in self._lines:
            self.locate([manifest])
        lines = self._lines[manifest.key]
        return self.path_of(manifest), lines.line_of(keys) if lines is not None else 1

    def locate(self, manifests: Iterable[ReleaseManifest]) -> None:
        """Learn the key lines of these manifests at once: from the parse cache, or one read."""
        blobs = self._listing()
        wanted = {m.key: blobs.get(self.path_of(m)) for m in manifests if m.key not in self._lines}
        found = lines_many(self._read, {b for b in wanted.values() if b is not None}, self._cache)
        for key, blob in wanted.items():
            self._lines[key] = found.get(blob) if blob is not None else None

    def _listing(self) -> dict[str, str]:
        if self._blobs is None:
            entries = self._repo.list_files(self._snapshot.revision, ("manifests",))
            self._blobs = {entry.path: entry.sha for entry in entries}
        return self._blobs

    def _read(self, blobs: list[str]) -> Mapping[str, bytes]:
        """A few blobs through the persistent reader, many through one batch."""
        if len(blobs) > _SMALL_READ:
            return self._repo.read_blobs(blobs)
        return {blob: self._repo.read_blob(blob) for blob in blobs}


@dataclass(frozen=True)
class _At:
    """A finding about a manifest field, placed once every manifest's lines are known."""

    manifest: ReleaseManifest
    keys: tuple[str, ...]
    message: str
    warning: bool = False


def check_releases(
    repo: GitRepo,
    snapshot: Snapshot,
    *,
    cache: ContentCache,
    compiler: Callable[[], Compiler] | None,
    lines: BlobCache | None = None,
) -> Findings:
    """Every quantum problem of every valid release at the snapshot's revision.

    `compiler` makes the compiler on first need (no worker starts when every result is
    cached); None skips compiling (`--no-compile`). `lines` is the parse cache, where the
    key lines of the manifests a finding points into are kept by blob id.
    """
    findings = Findings()
    manifests = _Manifests(repo, snapshot, lines)
    releases = sorted(snapshot.manifests.values(), key=lambda m: m.key)
    found: list[_At] = []
    for manifest in releases:
        found += _check_target(manifest)
        found += _check_power(manifest)
        found += _check_qiskit_pin(manifest)
    manifests.locate(at.manifest for at in found)
    for at in found:
        path, line = manifests.where(at.manifest, *at.keys)
        error = LoadError(path, line, ".".join(at.keys), at.message)
        (findings.warnings if at.warning else findings.errors).append(error)
    _check_environments(snapshot, findings)
    if compiler is not None:
        _compile_all(_units(repo, snapshot, releases), manifests, cache, compiler, findings)
    return findings


def _check_target(manifest: ReleaseManifest) -> list[_At]:
    """Unknown or retired targets are errors; a deprecated target is a warning."""
    pin = manifest.quantum.target
    return [
        _At(manifest, ("quantum", "target", found.field), found.message, found.warning)
        for found in catalog.pin_findings(pin.id, pin.profile, None)
    ]


def _check_power(manifest: ReleaseManifest) -> list[_At]:
    """Warn when the smoke test has too few shots to tell a deviation of the size it names;
    refuse a `noise: target` the catalog has no figures for."""
    smoke = manifest.quantum.gates.smoke
    if smoke is None:
        return []
    out = []
    try:
        resolve_noise(smoke, manifest.quantum.target.id)
    except NoiseProblem as problem:
        out.append(_At(manifest, ("quantum", "gates", "smoke", "noise"), str(problem)))
    needed = shots_needed(smoke)
    if smoke.shots >= needed:
        return out
    if smoke.method == "chi2":
        what = f"a deviation of {smoke.detect:g} (detect) at significance {smoke.max_distance:g}"
    else:
        what = f"a deviation of {smoke.max_distance:g} (max_distance) at alpha {smoke.alpha:g}"
    text = (
        f"{smoke.shots} shots cannot tell {what} from the expectation with power"
        f" {smoke.power:g}; {needed} are needed"
    )
    return [*out, _At(manifest, ("quantum", "gates", "smoke", "shots"), text, warning=True)]


def _check_qiskit_pin(manifest: ReleaseManifest) -> list[_At]:
    """A Qiskit release lists the qiskit it is written for among its packages; the gates
    convert its circuit with the gate workers' qiskit, so a different pin is a warning."""
    if manifest.quantum.kind is not ProgramKind.QISKIT:
        return []
    used = qiskit_version()
    pinned = [p for p in manifest.classical.packages if p.name.lower() == "qiskit"]
    if not pinned:
        text = (
            "a Qiskit program needs qiskit among the release's packages (the gate workers "
            f"convert its circuit with qiskit {used})"
        )
        return [_At(manifest, ("classical", "packages"), text)]
    if pinned[0].version != used:
        text = (
            f"the release pins qiskit {pinned[0].version}, but the gate workers convert its "
            f"circuit with qiskit {used}: the gates test another qiskit than the app runs"
        )
        return [_At(manifest, ("classical", "packages"), text, warning=True)]
    return []


def _check_environments(snapshot: Snapshot, findings: Findings) -> None:
    """An Azure environment cannot run a release pinned to a local simulator."""
    for name, env in sorted(snapshot.environments.items()):
        if not isinstance(env.quantum, AzureQuantum):
            continue
        for app, version in sorted(env.apps.items()):
            manifest = snapshot.manifest(app, version)
            spec = catalog.resolve(manifest.quantum.target.id) if manifest else None
            if spec is None or not spec.local_only:
                continue
            line = snapshot.pin_lines.get((name, app), 0)
            text = (
                f"{app} {version} is pinned to {spec.target_id}, a local simulator, but this "
                f"environment's quantum side is Azure workspace {env.quantum.workspace}"
            )
            findings.errors.append(LoadError(snapshot.env_paths[name], line, f"apps.{app}", text))


def _units(repo: GitRepo, snapshot: Snapshot, releases: Iterable[ReleaseManifest]) -> list[_Unit]:
    """Distinct (program text, entry, profile) triples with the releases that pin them."""
    grouped: dict[tuple[str, str, str, TargetProfile], list[ReleaseManifest]] = defaultdict(list)
    for manifest in releases:
        path = program_path(manifest.app, manifest.quantum.program)
        blob = snapshot.programs.get(path)
        if blob is None:
            continue  # the loader already reported the missing program
        quantum = manifest.quantum
        grouped[(path, blob, quantum.start, quantum.target.profile)].append(manifest)
    texts = repo.read_blobs(blob for (_path, blob, _entry, _profile) in grouped)
    return [
        _Unit(path, texts[blob].decode("utf-8", "replace"), entry, profile, tuple(pinned))
        for (path, blob, entry, profile), pinned in grouped.items()
    ]


def _compile_all(
    units: list[_Unit],
    manifests: _Manifests,
    cache: ContentCache,
    make_compiler: Callable[[], Compiler],
    findings: Findings,
) -> None:
    """Compile what the cache does not know (in parallel on the pool), then report.

    Units with the same content (the same program text in many apps' folders) compile once:
    the others take its outcome, as they would from the cache on a second run.
    """
    outcomes: dict[str, CompileOutcome] = {}
    first: dict[str, _Unit] = {}
    for unit in units:
        if unit.key in outcomes or unit.key in first:
            findings.cached += 1
            continue
        known = cache.get(unit.key)
        if known is None:
            first[unit.key] = unit
        else:
            outcomes[unit.key] = _outcome_from(known)
            findings.cached += 1
    missing = list(first.values())
    if missing:
        compiler = make_compiler()
        for unit, outcome in zip(missing, _compile_many(compiler, missing), strict=True):
            outcomes[unit.key] = outcome
            if not _stopped(outcome):  # a sandbox stop is not a fact about the program
                cache.put(unit.key, _outcome_json(outcome))
            findings.compiled += 1
    for unit in units:
        _report(unit, outcomes[unit.key], manifests, findings)


def _compile_many(compiler: Compiler, units: list[_Unit]) -> list[CompileOutcome]:
    """Every unit's outcome, several at a time when the compiler has a pool of workers."""
    from concurrent.futures import ThreadPoolExecutor

    def one(unit: _Unit) -> CompileOutcome:
        return compiler.compile(ProgramSource(unit.path, unit.text), unit.entry, unit.profile)

    workers = max(1, int(getattr(compiler, "workers", 1)))
    if workers == 1 or len(units) == 1:
        return [one(unit) for unit in units]
    with ThreadPoolExecutor(workers, thread_name_prefix="qrelease-compile") as pool:
        return list(pool.map(one, units))


def _report(
    unit: _Unit, outcome: CompileOutcome, manifests: _Manifests, findings: Findings
) -> None:
    """One error per diagnostic, at the Q# line (or the manifest field) it points to."""
    pinned = _pinned_by(unit, manifests)
    for diagnostic in outcome.diagnostics:
        findings.errors.append(_located(diagnostic, unit, manifests, pinned))
    if outcome.ok:
        findings.errors.extend(_too_big(unit, outcome, manifests))


def _located(diagnostic: Diagnostic, unit: _Unit, manifests: _Manifests, pinned: str) -> LoadError:
    """A compile diagnostic as a validation error, placed where the fix goes."""
    text = f"{diagnostic.code}: {diagnostic.message} (compiled for {unit.profile}; {pinned})"
    if diagnostic.path == unit.path and diagnostic.line is not None:
        column = diagnostic.where.rsplit(":", 1)[-1] if diagnostic.where else ""
        return LoadError(unit.path, diagnostic.line, "", f"column {column}: {text}")
    first = unit.manifests[0]
    place = diagnostic.path or ""
    field_ = "program"
    if place.startswith(("entry ", "circuit ")):
        field_ = "circuit" if first.quantum.kind is ProgramKind.QISKIT else "entry"
    path, line = manifests.where(first, "quantum", field_)
    return LoadError(path, line, f"quantum.{field_}", text)


def _too_big(unit: _Unit, outcome: CompileOutcome, manifests: _Manifests) -> list[LoadError]:
    """Releases whose target has fewer qubits than the compiled program needs."""
    errors = []
    for manifest in unit.manifests:
        pin = manifest.quantum.target
        spec = catalog.resolve(pin.id)
        if spec is None or spec.qubits is None or outcome.qubits is None:
            continue
        if outcome.qubits > spec.qubits:
            path, line = manifests.where(manifest, "quantum", "target", "id")
            text = f"program needs {outcome.qubits} qubits; target {pin.id} has {spec.qubits}"
            errors.append(LoadError(path, line, "quantum.target.id", text))
    return errors


def _pinned_by(unit: _Unit, manifests: _Manifests) -> str:
    """`pinned by manifests/a/1.0.0.yaml` (and how many more)."""
    paths = [manifests.path_of(manifest) for manifest in unit.manifests[:_SHOWN_PINS]]
    shown = ", ".join(paths)
    more = len(unit.manifests) - _SHOWN_PINS
    return f"pinned by {shown}" + (f" and {more} more" if more > 0 else "")


def _stopped(outcome: CompileOutcome) -> bool:
    """True when the sandbox stopped the compile (time or memory), not qdk."""
    return any(d.code == "sandbox" for d in outcome.diagnostics)


def _outcome_json(outcome: CompileOutcome) -> dict[str, Any]:
    return {
        "diagnostics": [vars(d) for d in outcome.diagnostics],
        "qubits": outcome.qubits,
        "qir_sha256": outcome.qir_sha256,
    }


def _outcome_from(body: Mapping[str, Any]) -> CompileOutcome:
    return CompileOutcome(
        tuple(Diagnostic(**d) for d in body.get("diagnostics", [])),
        body.get("qubits"),
        body.get("qir_sha256"),
    )
