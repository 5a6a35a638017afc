"""Deterministic GitOps repositories for the benchmarks, written with `git fast-import`.

Committing 5,000 manifests one `git add` at a time would take minutes; fast-import writes
the same objects in one stream in seconds. The repositories are bare: qrelease reads
every revision without a checkout, and so do the references.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENTS = ("dev", "staging", "prod")
PROMOTE_FROM = {"dev": None, "staging": "dev", "prod": "staging"}
EPOCH = 1_700_000_000
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.test",
}

BELL_PROGRAM = b"""\
namespace Bell {
    @EntryPoint()
    operation Main() : Result[] {
        use qubits = Qubit[2];
        H(qubits[0]);
        CNOT(qubits[0], qubits[1]);
        MResetEachZ(qubits)
    }
}
"""


def app_name(index: int) -> str:
    """The generated app at `index`: app-0000, app-0001, ..."""
    return f"app-{index:04d}"


def version_name(index: int) -> str:
    """The generated version at `index`: 1.0.0, 1.1.0, ..."""
    return f"1.{index}.0"


def manifest_yaml(
    app: str, version: str, *, sha256: str | None = None, health: bool = True
) -> bytes:
    """A release manifest like the bundled examples: one package, a Bell program, gates."""
    pin = f", sha256: {sha256}" if sha256 else ""
    check = f"  health: {{command: [{app}, --self-check], timeout: 30s}}\n" if health else ""
    return (
        f"# {app} {version}: generated for the benchmarks.\n"
        f"app: {app}\nversion: {version}\n"
        f"description: Generated release {version} of {app}.\n"
        "classical:\n  packages:\n"
        f"    - {{name: {app}, version: {version}{pin}}}\n"
        f"{check}"
        "quantum:\n  program: programs/bell.qs\n  entry: Bell.Main()\n"
        "  target: {id: ionq.simulator, profile: Base}\n"
        "  gates:\n    estimate: {max_physical_qubits: 20000, max_runtime: 1s}\n"
        "    smoke:\n      shots: 500\n      seed: 7\n"
        '      expect: {"[Zero, Zero]": 0.5, "[One, One]": 0.5}\n'
        "      max_distance: 0.1\n"
    ).encode()


def environment_yaml(
    env: str, pins: Mapping[str, str], *, find_links: str = "wheels", no_index: bool = False
) -> bytes:
    """An environment file pinning every app in `pins`."""
    promote = PROMOTE_FROM.get(env)
    lines = [f"# {env}: generated for the benchmarks.", f"environment: {env}"]
    lines += [f"promote_from: {promote}"] if promote else []
    lines += ["classical:", "  kind: venv", f"  find_links: {find_links}"]
    lines += ["  no_index: true"] if no_index else []
    lines += ["quantum: {kind: local}", "policy:", "  soak: 0s", "  auto_rollback: true", "apps:"]
    lines += [f"  {app}: {version}" for app, version in pins.items()]
    return ("\n".join(lines) + "\n").encode()


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def _commit_record(index: int, files: Mapping[str, bytes], message: str) -> bytes:
    """One fast-import commit on refs/heads/main changing `files` (inline blobs)."""
    stamp = f"{EPOCH + index * 60} +0000"
    parts = [
        b"commit refs/heads/main\n",
        f"author Bench <bench@example.test> {stamp}\n".encode(),
        f"committer Bench <bench@example.test> {stamp}\n".encode(),
        _data(message.encode()),
    ]
    for path, content in files.items():
        parts.append(f"M 100644 inline {path}\n".encode())
        parts.append(_data(content))
    return b"".join(parts) + b"\n"


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    """Run git in `repo` with a neutral configuration; returns stdout."""
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return done.stdout.decode()


def fast_import(repo: Path, commits: Iterable[Mapping[str, bytes]]) -> list[str]:
    """A new bare repo at `repo` whose main branch is `commits`; their ids, oldest first."""
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--bare", "--initial-branch", "main")
    stream = b"".join(
        _commit_record(index, files, f"change {index}") for index, files in enumerate(commits)
    )
    git(repo, "fast-import", "--quiet", "--done", stdin=stream + b"done\n")
    return git(repo, "rev-list", "--reverse", "main").split()


@dataclass(frozen=True)
class GitOpsData:
    """A generated GitOps repo and the facts the benchmarks need about it."""

    path: Path
    commits: tuple[str, ...]
    apps: int
    versions: int

    @property
    def manifest_count(self) -> int:
        """How many release manifests the repo holds."""
        return self.apps * self.versions


def initial_pins(apps: int, versions: int) -> dict[str, dict[str, str]]:
    """env -> app -> version: dev runs the newest release, staging one older, prod two older."""
    return {
        env: {app_name(a): version_name(max(0, versions - 1 - rank)) for a in range(apps)}
        for rank, env in enumerate(ENVIRONMENTS)
    }


def _history(
    pins: dict[str, dict[str, str]], apps: int, versions: int, count: int
) -> Iterable[dict[str, bytes]]:
    """`count` commits, each moving one app's pin in one environment to another version."""
    for index in range(count):
        env = ENVIRONMENTS[index % len(ENVIRONMENTS)]
        app = app_name((index * 37) % apps)
        current = int(pins[env][app].split(".")[1])
        pins[env][app] = version_name((current + 1) % versions)
        yield {f"releases/{env}.yaml": environment_yaml(env, pins[env])}


def gitops_repo(path: Path, apps: int, versions: int, history_commits: int) -> GitOpsData:
    """apps x versions manifests, every app pinned in dev/staging/prod, plus pin-change history."""
    first: dict[str, bytes] = {}
    for a in range(apps):
        app = app_name(a)
        first[f"manifests/{app}/programs/bell.qs"] = BELL_PROGRAM
        for v in range(versions):
            first[f"manifests/{app}/{version_name(v)}.yaml"] = manifest_yaml(app, version_name(v))
    pins = initial_pins(apps, versions)
    for env in ENVIRONMENTS:
        first[f"releases/{env}.yaml"] = environment_yaml(env, pins[env])
    commits = fast_import(path, [first, *_history(pins, apps, versions, history_commits)])
    return GitOpsData(path, tuple(commits), apps, versions)
