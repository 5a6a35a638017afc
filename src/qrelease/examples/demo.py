"""The bundled demo: a local GitOps remote and a wheelhouse for the example apps.

`make run` uses it so a fresh machine has something real to reconcile: a bare repository
under the state dir holds the project's own manifests and environments, and the example
packages are built at every version those manifests pin.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml

from qrelease.examples.bundle import bundled_root
from qrelease.examples.scaffold import initial_files
from qrelease.examples.wheels import build_example_wheels
from qrelease.source.workspace import is_local_repo
from qrelease.source.writer import init_repo, push_mirror


def pinned_package_versions(manifests_dir: Path) -> dict[str, list[str]]:
    """Package name -> every version a bundled manifest pins for it."""
    versions: dict[str, set[str]] = defaultdict(set)
    for path in sorted(manifests_dir.glob("*/*.yaml")):
        manifest = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        for package in manifest["classical"]["packages"]:
            versions[package["name"]].add(str(package["version"]))
    return {name: sorted(found) for name, found in versions.items()}


def buildable_versions(root: Path) -> dict[str, list[str]]:
    """Example project -> every version the bundled manifests pin it at."""
    wanted = pinned_package_versions(root / "manifests")
    examples = {path.name for path in (root / "examples").iterdir() if path.is_dir()}
    return {name: versions for name, versions in wanted.items() if name in examples}


def build_wheelhouse(dest: Path) -> list[Path]:
    """Build the example packages at every pinned version into `dest` (skipping built ones)."""
    root = bundled_root()
    missing = {
        name: [v for v in versions if not has_wheel(dest, name, v)]
        for name, versions in buildable_versions(root).items()
    }
    missing = {name: versions for name, versions in missing.items() if versions}
    if not missing:
        return []
    return build_example_wheels(root / "examples", dest, versions=missing)


def has_wheel(dest: Path, name: str, version: str) -> bool:
    """True when `dest` holds a wheel of `name` at `version`."""
    return any(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))


def ensure_demo_remote(state_dir: Path) -> Path:
    """A bare GitOps repository under the state dir holding the bundled examples."""
    remote = (state_dir / "demo-remote.git").resolve()
    if is_local_repo(str(remote)):
        return remote
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "gitops"
        init_repo(work, initial_files(example=True), "Demo GitOps repo from the bundled examples")
        shutil.rmtree(remote, ignore_errors=True)
        push_mirror(work, remote)
    return remote
