"""The reference pipeline for reading desired state: the git CLI, libyaml and the same models.

This is what a hand-written reader with no error reporting, no line tracking and no cache
would do: one `git ls-tree -r` (or `git diff --name-only`), one `git cat-file --batch`
process fed every object name at once, `yaml.load(..., Loader=yaml.CSafeLoader)`, then
the same pydantic models qrelease validates with.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from pydantic import BaseModel

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest

ROOTS = ("manifests", "releases")


@dataclass
class RawState:
    """Valid models by key, as the reference reads them."""

    manifests: dict[tuple[str, str], ReleaseManifest] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def ls_tree(repo: Path, rev: str) -> list[tuple[str, str]]:
    """(blob id, path) of every file under manifests/ and releases/ at `rev`."""
    output = _git(repo, "ls-tree", "-r", "-z", "--full-tree", rev, "--", *ROOTS)
    entries = []
    for record in output.split(b"\0"):
        if record:
            meta, path = record.split(b"\t", 1)
            entries.append((meta.split()[2].decode(), path.decode()))
    return entries


def changed_paths(repo: Path, old: str, new: str) -> list[str]:
    """Paths under manifests/ and releases/ that differ between two revisions."""
    output = _git(repo, "diff", "--name-only", "-z", "--no-renames", old, new, "--", *ROOTS)
    return [path for path in output.decode().split("\0") if path]


def cat_file_batch(repo: Path, names: Iterable[str]) -> list[bytes]:
    """The contents of every named object, from one `git cat-file --batch` process."""
    names = list(names)
    output = _git(repo, "cat-file", "--batch", stdin="".join(f"{n}\n" for n in names).encode())
    blobs, position = [], 0
    for _ in names:
        header_end = output.index(b"\n", position)
        size = int(output[position:header_end].split()[2])
        blobs.append(output[header_end + 1 : header_end + 1 + size])
        position = header_end + 1 + size + 1
    return blobs


def schema_of(path: str) -> type[BaseModel] | None:
    """The model a path holds: manifests/<app>/<version>.yaml or releases/<env>.yaml."""
    parts = PurePosixPath(path).parts
    if not path.endswith(".yaml"):
        return None
    if parts[0] == "manifests" and len(parts) == 3:
        return ReleaseManifest
    if parts[0] == "releases" and len(parts) == 2:
        return Environment
    return None


def validate_into(state: RawState, schema: type[BaseModel], blob: bytes) -> None:
    """Parse one blob with libyaml, validate it and file the model in `state`."""
    model = schema.model_validate(yaml.load(blob, Loader=yaml.CSafeLoader))
    if isinstance(model, ReleaseManifest):
        state.manifests[model.key] = model
    elif isinstance(model, Environment):
        state.environments[model.environment] = model


def load(repo: Path, rev: str) -> RawState:
    """Read and validate every manifest and environment file at `rev`."""
    wanted = [(sha, schema) for sha, path in ls_tree(repo, rev) if (schema := schema_of(path))]
    state = RawState()
    for (_sha, schema), blob in zip(
        wanted, cat_file_batch(repo, (sha for sha, _ in wanted)), strict=True
    ):
        validate_into(state, schema, blob)
    return state


def apply_change(repo: Path, state: RawState, old: str, new: str) -> list[str]:
    """Bring `state` from `old` to `new` by reading only the changed files; returns them."""
    changed = [(p, schema) for p in changed_paths(repo, old, new) if (schema := schema_of(p))]
    blobs = cat_file_batch(repo, (f"{new}:{path}" for path, _ in changed))
    for (_path, schema), blob in zip(changed, blobs, strict=True):
        validate_into(state, schema, blob)
    return [path for path, _ in changed]
