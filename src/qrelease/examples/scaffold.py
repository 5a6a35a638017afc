"""The files `qrelease init` puts in a new GitOps repo: the layout, or the bundled examples."""

from __future__ import annotations

from pathlib import Path

from qrelease.examples.bundle import EXAMPLE_DIRS, bundled_root

_SKIP_PARTS = {"__pycache__", "dist", "build", ".venv"}
_SKIP_SUFFIXES = (".pyc", ".egg-info")

LAYOUT_README = b"""# GitOps repo for qrelease

- `manifests/<app>/<version>.yaml`: release manifests (immutable once applied).
- `manifests/<app>/programs/*.qs`: the Q# programs they reference.
- `releases/<env>.yaml`: which release each environment runs, and how it deploys.

Check it with `qrelease validate --repo .`.
"""


def initial_files(example: bool) -> dict[str, bytes]:
    """Relative path -> content for a new repo."""
    files = {"README.md": LAYOUT_README}
    if not example:
        files["manifests/.gitkeep"] = b""
        files["releases/.gitkeep"] = b""
        return files
    root = bundled_root()
    for folder in EXAMPLE_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and _wanted(path.relative_to(root)):
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _wanted(relative: Path) -> bool:
    return not (_SKIP_PARTS & set(relative.parts)) and not relative.name.endswith(_SKIP_SUFFIXES)
