"""The files `qrelease init` puts in a new GitOps repo: the layout, or the bundled examples."""

from __future__ import annotations

from pathlib import Path

from qrelease.examples.bundle import EXAMPLE_DIRS, bundled_root

_SKIP_PARTS = {"__pycache__", "dist", "build", ".venv"}
_SKIP_SUFFIXES = (".pyc", ".egg-info")

LAYOUT_README = b"""# GitOps repo for qrelease

- `manifests/<app>/<version>.yaml`: release manifests (immutable once applied).
- `manifests/<app>/programs/`: the programs they reference (Q# `.qs`, OpenQASM 3 `.qasm`,
  Qiskit `.py`).
- `releases/<env>.yaml`: which release each environment runs, and how it deploys.

Check it with `qrelease validate --repo .`.
"""


EXAMPLES = ("apps", "languages")
"""`apps`: the Q# example apps in three environments. `languages`: an OpenQASM 3 app and a
Qiskit app (examples/languages/) in one environment."""


def initial_files(example: bool, which: str = "apps") -> dict[str, bytes]:
    """Relative path -> content for a new repo (`which` of EXAMPLES when `example`)."""
    files = {"README.md": LAYOUT_README}
    if not example:
        files["manifests/.gitkeep"] = b""
        files["releases/.gitkeep"] = b""
        return files
    root = bundled_root()
    for folder in EXAMPLE_DIRS:
        source = root / folder
        if which == "languages" and folder != "examples":
            source = root / "examples" / "languages" / folder
        for path in sorted(source.rglob("*")):
            if path.is_file() and _wanted(path.relative_to(source)):
                files[f"{folder}/{path.relative_to(source).as_posix()}"] = path.read_bytes()
    return files


def _wanted(relative: Path) -> bool:
    return not (_SKIP_PARTS & set(relative.parts)) and not relative.name.endswith(_SKIP_SUFFIXES)
