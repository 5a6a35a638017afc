"""Health commands of a venv release: run the release's own code, and nothing else.

A manifest comes from Git, so its health command is hostile input: run as given, `cat
/etc/passwd` would copy a file into the status message and `touch /x` would write outside
the state dir. So a command's program must be one of the console scripts that the
manifest's own packages installed into the venv's `bin/` (as their RECORD files list
them) or `python -m <module>` for a module of those packages, run by the venv's
interpreter (`-I`: no user site, no current directory on the path). What the model can
decide alone (paths, `..`, absolute arguments) `HealthCheck` refuses at validation; the
rest is decided here, before anything runs. The command gets a minimal environment and
its output reaches messages capped and redacted.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import Distribution, distributions
from pathlib import Path

from qrelease.deployers.base import HealthResult
from qrelease.deployers.installers import Completed, capped, run_bounded, venv_bin, venv_python
from qrelease.model.manifest import HealthCheck, ReleaseManifest
from qrelease.redaction import redact

RELEASE_DIR_VARIABLE = "QRELEASE_RELEASE_DIR"
HEALTH_OUTPUT_BYTES = 2048
"""How much of a health command's output (its end) a status message or event keeps."""
HEALTH_ENV_PASSED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
"""The controller's variables a health command sees, besides PATH and the release's own."""


def health_environment(release: Path, venv: Path) -> dict[str, str]:
    """A minimal environment: the venv's bin first on PATH, the release, a few locale names."""
    env = {name: os.environ[name] for name in HEALTH_ENV_PASSED if name in os.environ}
    env["PATH"] = os.pathsep.join([str(venv_bin(venv)), os.defpath])
    env["VIRTUAL_ENV"] = str(venv)
    env[RELEASE_DIR_VARIABLE] = str(release)
    return env


def _site_packages(venv: Path) -> list[Path]:
    """The venv's site-packages directories (one per Python version it was made for)."""
    return sorted(venv.glob("lib/python*/site-packages"))


def _normalised(name: str) -> str:
    """A distribution name in its normalised form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release_distributions(venv: Path, manifest: ReleaseManifest) -> list[tuple[Path, Distribution]]:
    """(site-packages, distribution) of each package the manifest lists, as installed."""
    wanted = {_normalised(package.name) for package in manifest.classical.packages}
    found = []
    for site in _site_packages(venv):
        for dist in distributions(path=[str(site)]):
            if _normalised(dist.metadata["Name"] or "") in wanted:
                found.append((site, dist))
    return found


def console_scripts(venv: Path, manifest: ReleaseManifest) -> set[str]:
    """Names of the files in the venv's bin/ that the manifest's packages installed."""
    bin_dir = Path(os.path.normpath(venv_bin(venv)))
    names = set()
    for site, dist in release_distributions(venv, manifest):
        for file in dist.files or ():
            installed = Path(os.path.normpath(site / file))  # RECORD: ../../../bin/<name>
            if installed.parent == bin_dir:
                names.add(installed.name)
    return names


def _provides_module(venv: Path, manifest: ReleaseManifest, module: str) -> bool:
    """True when the top-level package of `module` belongs to one of the manifest's packages."""
    top = module.partition(".")[0]
    for _site, dist in release_distributions(venv, manifest):
        for file in dist.files or ():
            if file.parts and file.parts[0] in (top, f"{top}.py") and ".." not in file.parts:
                return True
    return False


def health_argv(health: HealthCheck, manifest: ReleaseManifest, venv: Path) -> list[str] | str:
    """The argv that runs a health command inside the release's venv, or why it may not."""
    program, arguments = health.command[0], list(health.command[1:])
    owners = ", ".join(package.name for package in manifest.classical.packages)
    if health.module is not None:
        if not _provides_module(venv, manifest, health.module):
            return f"module {health.module!r} is not part of the release's packages ({owners})"
        return [str(venv_python(venv)), "-I", *arguments]
    script = venv_bin(venv) / program
    if program not in console_scripts(venv, manifest) or script.is_symlink():
        return f"{program!r} is not a console script of the release's packages ({owners})"
    if not (script.is_file() and os.access(script, os.X_OK)):
        return f"console script {program!r} is missing from {venv_bin(venv)}"
    return [str(script), *arguments]


def run_health(
    health: HealthCheck, manifest: ReleaseManifest, release: Path, venv: Path
) -> HealthResult:
    """Run a health command (argv, no shell) in `release` with its timeout."""
    argv = health_argv(health, manifest, venv)
    if isinstance(argv, str):
        return HealthResult(False, f"health command refused, not run: {argv}")
    timeout = health.timeout.total_seconds()
    env = health_environment(release, venv)
    done = run_bounded(argv, timeout=timeout, env=env, cwd=release)
    return _health_result(" ".join(health.command), done, timeout)


def _health_result(command: str, done: Completed, timeout: float) -> HealthResult:
    """Turn a finished health command into ok + a message ending in its capped output."""
    tail = capped(done.output, HEALTH_OUTPUT_BYTES)
    if done.returncode is None:
        message = f"`{command}` timed out after {timeout:g}s: {tail}".strip()
        return HealthResult(False, redact(message))
    summary = f"`{command}` exited {done.returncode}: {tail}".strip().rstrip(":")
    return HealthResult(done.returncode == 0, redact(summary))
