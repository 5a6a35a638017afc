"""What changes between two releases of an app: manifest fields and the program's text.

Release managers read this before they promote: a new target or profile, a looser gate or
a different program is what deserves a second look.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from qrelease.model.manifest import ReleaseManifest
from qrelease.source.loader import Snapshot, program_path
from qrelease.source.repo import GitRepo


class UnknownReleaseError(Exception):
    """One of the two releases has no valid manifest at the revision."""


@dataclass(frozen=True)
class ReleaseDiff:
    """What changes between two releases of an app."""

    app: str
    from_version: str
    to_version: str
    fields: list[tuple[str, str, str]]
    program_diff: list[str]


def diff_releases(repo: GitRepo, snapshot: Snapshot, app: str, old: str, new: str) -> ReleaseDiff:
    """Field-by-field and program-text differences between two valid releases."""
    before, after = snapshot.manifest(app, old), snapshot.manifest(app, new)
    for version, manifest in ((old, before), (new, after)):
        if manifest is None:
            raise UnknownReleaseError(
                f"{app} {version} has no valid manifest at {snapshot.revision[:12]}"
            )
    assert before is not None and after is not None
    changed = [(key, a, b) for key, (a, b) in _pairs(before, after).items() if a != b]
    return ReleaseDiff(app, old, new, changed, _program_diff(repo, snapshot, before, after))


def _pairs(before: ReleaseManifest, after: ReleaseManifest) -> dict[str, tuple[str, str]]:
    flat_before, flat_after = _flatten(before), _flatten(after)
    keys = sorted(set(flat_before) | set(flat_after))
    return {key: (flat_before.get(key, "-"), flat_after.get(key, "-")) for key in keys}


def _flatten(manifest: ReleaseManifest) -> dict[str, str]:
    quantum = manifest.quantum
    out = {
        f"package {p.name}": p.version + (f" sha256:{p.sha256[:12]}" if p.sha256 else "")
        for p in manifest.classical.packages
    }
    out["quantum.program"] = quantum.program
    if quantum.entry is not None:
        out["quantum.entry"] = quantum.entry
    if quantum.circuit is not None:
        out["quantum.circuit"] = quantum.circuit
    out["quantum.target.id"] = quantum.target.id
    out["quantum.target.profile"] = str(quantum.target.profile)
    out.update(_dotted("quantum.gates", quantum.gates.model_dump(mode="json", exclude_none=True)))
    if manifest.classical.health:
        out.update(_dotted("classical.health", manifest.classical.health.model_dump(mode="json")))
    return out


def _program_diff(
    repo: GitRepo, snapshot: Snapshot, before: ReleaseManifest, after: ReleaseManifest
) -> list[str]:
    texts = []
    for manifest in (before, after):
        blob = snapshot.program_blob(manifest)
        texts.append(repo.read_blob(blob).decode("utf-8", "replace").splitlines() if blob else [])
    names = [program_path(m.app, m.quantum.program) for m in (before, after)]
    return list(
        difflib.unified_diff(
            texts[0],
            texts[1],
            f"{names[0]} ({before.version})",
            f"{names[1]} ({after.version})",
            lineterm="",
        )
    )


def _dotted(prefix: str, value: object) -> dict[str, str]:
    """Nested values as `prefix.key.sub: value` strings."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_dotted(f"{prefix}.{key}", item))
        return out
    return {prefix: str(value)}
