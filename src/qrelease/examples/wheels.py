"""Build the bundled example apps (examples/*/) into wheels a venv environment can install.

The demo and the tests deploy the examples from a local `find_links` directory, so their
wheels must be buildable without a package index: `uv build --offline` works from uv's
cache; `pip wheel --no-build-isolation` works wherever hatchling is installed; only then
is uv allowed online. One source tree can be built at several versions, because every
release manifest pins its own version of the package.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from qrelease.deployers.base import DeployError
from qrelease.deployers.installers import find_uv, run_bounded

BUILD_TIMEOUT_SECONDS = 300.0
_VERSION_LINE = re.compile(r'^version\s*=\s*"[^"\n]*"[ \t]*$', re.MULTILINE)
_PACKAGE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
_SKIPPED = shutil.ignore_patterns(".venv", "build", "dist", "*.egg-info", "__pycache__")


def build_example_wheels(
    examples_dir: Path, dest: Path, *, versions: Mapping[str, Sequence[str]] | None = None
) -> list[Path]:
    """Build a wheel of every project under `examples_dir` into `dest`; return their paths.

    `versions` maps a project name to the versions to build it at (default: the version
    in its pyproject.toml); e.g. {"bell-service": ["1.0.0", "1.1.0"]}.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wheels = []
    for project in example_projects(examples_dir):
        wanted: Sequence[str | None] = (versions or {}).get(project_name(project)) or [None]
        wheels += [build_wheel(project, dest, version=version) for version in wanted]
    return wheels


def example_projects(examples_dir: Path) -> list[Path]:
    """The directories directly under `examples_dir` that hold a pyproject.toml, by name."""
    return sorted(path.parent.absolute() for path in examples_dir.glob("*/pyproject.toml"))


def project_name(project: Path) -> str:
    """The `[project] name` of a pyproject.toml project."""
    try:
        metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        return str(metadata["project"]["name"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
        raise DeployError(f"{project / 'pyproject.toml'}: no [project] name ({error})") from None


def build_wheel(project: Path, dest: Path, *, version: str | None = None) -> Path:
    """Build one project's wheel into `dest`, optionally at another version than its own."""
    project = project.absolute()
    with tempfile.TemporaryDirectory(prefix="qrelease-build-") as scratch:
        source = project
        if version is not None:
            source = Path(scratch) / "src" / project.name
            shutil.copytree(project, source, ignore=_SKIPPED)
            _set_version(source / "pyproject.toml", version)
        out = Path(scratch) / "out"
        wheel = _build_into(source, out)
        dest.mkdir(parents=True, exist_ok=True)
        partial = dest / f".{wheel.name}.partial"  # never a half-copied wheel under its name
        shutil.move(wheel, partial)
        return partial.replace(dest / wheel.name)


def _set_version(pyproject: Path, version: str) -> None:
    """Rewrite the `version = "..."` line of a pyproject.toml."""
    if not _PACKAGE_VERSION.fullmatch(version):
        raise DeployError(f"{version!r} is not a package version")
    text = pyproject.read_text(encoding="utf-8")
    updated, count = _VERSION_LINE.subn(f'version = "{version}"', text, count=1)
    if count != 1:
        raise DeployError(f'{pyproject}: no `version = "..."` line to set')
    pyproject.write_text(updated, encoding="utf-8")


def _build_commands(project: Path, out: Path) -> list[list[str]]:
    """The build commands to try in order: uv offline, pip without isolation, uv online."""
    uv = find_uv()
    uv_build = [str(uv), "build", "--wheel", "--no-config", "--out-dir", str(out), str(project)]
    commands = [[*uv_build, "--offline"]] if uv else []
    if importlib.util.find_spec("hatchling") is not None:
        pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        commands.append([*pip, "--disable-pip-version-check", "-w", str(out), str(project)])
    return commands + ([uv_build] if uv else [])


def _build_into(project: Path, out: Path) -> Path:
    """Build the wheel into the empty directory `out` and return it."""
    failures = []
    for argv in _build_commands(project, out):
        done = run_bounded(argv, timeout=BUILD_TIMEOUT_SECONDS, cwd=project)
        wheels = sorted(out.glob("*.whl"))
        if done.returncode == 0 and len(wheels) == 1:
            return wheels[0]
        failures.append(f"{' '.join(argv[:3])}: {done.output[-800:]}")
        shutil.rmtree(out, ignore_errors=True)
    raise DeployError(f"cannot build a wheel of {project}:\n" + "\n".join(failures))
