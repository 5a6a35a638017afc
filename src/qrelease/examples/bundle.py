"""Where the bundled examples (manifests, releases, example packages) live at run time.

In a wheel they are packaged under `qrelease/_bundled`; in a source checkout they are the
project's own top-level folders.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DIRS = ("manifests", "releases", "examples")


def bundled_root() -> Path:
    """The folder holding manifests/, releases/ and examples/ as shipped."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1], package / "_bundled"):
        if all((candidate / name).is_dir() for name in EXAMPLE_DIRS):
            return candidate
    raise FileNotFoundError("the bundled examples are missing from this installation")
