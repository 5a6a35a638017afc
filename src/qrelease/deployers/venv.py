"""The embedded default deployer: an immutable virtualenv per release, `current` swapped atomically.

A rollback must be a symlink swap rather than a reinstall, and a crash must never leave a
half-built release where a finished one is expected nor a half-switched `current`. So a
release is built in a hidden temporary directory, marked COMPLETE (after everything in it
is on disk) and only then renamed into place; `current` is replaced by renaming a fresh
symlink over it. Layout under the state dir (the stored format of this deployer):

    envs/<env>/<app>/
        current -> releases/<version>      relative symlink, replaced atomically
        releases/<version>/                one complete release, never modified afterwards
            venv/                          the release's virtualenv (relocatable)
            requirements.txt               what was installed: `name==version [--hash=sha256:...]`
            qrelease.lock.json             the ReleaseLock (format: see `lock_json`)
            program.qir                    the compiled QIR text, byte for byte as prepared
            COMPLETE                       written last: the release is whole
        releases/.<version>.partial-*/     a release being built       } removed by
        releases/.<version>.retired-*/     a release being deleted     } recover(),
        .current.tmp-*                     a link about to be current  } which the engine
    envs/<env>/.<app>.removed-*/           an app being pruned         } runs at start

Package sources come from the environment's `classical` block (VenvDeploy): `find_links`
is a directory or URL, a relative directory being resolved against the state dir; with
only `find_links` the install is offline from it (`--no-index`); with `index_url` that
index is used (plus `find_links` if given); with neither, the installer's default index.
A source outside the state dir must be listed in `allowed_sources` (the controller
config's `[sources] allow`), else the install step fails naming the field. A `wheelhouse`
(see `Wheelhouse`) may fill a `find_links` directory under the state dir before an install:
the bundled example apps are built that way on first use.

Health commands run through `qrelease.deployers.health`: only the release's own code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path, PurePosixPath
from typing import Protocol

from qrelease.deployers.base import (
    DeployError,
    HealthResult,
    Observed,
    Prepared,
    ReleaseLock,
)
from qrelease.deployers.health import run_health
from qrelease.deployers.installers import (
    Installer,
    InstallFailed,
    Sources,
    capped,
    default_installer,
    venv_python,
)
from qrelease.deployers.observed import ObservedCache
from qrelease.model.environment import Environment, VenvDeploy, is_state_dir_source
from qrelease.model.manifest import Package, ReleaseManifest
from qrelease.model.types import check_dns_label, check_semver, version_key
from qrelease.redaction import redact

LOCK_FILE = "qrelease.lock.json"
PROGRAM_FILE = "program.qir"
COMPLETE_FILE = "COMPLETE"
REQUIREMENTS_FILE = "requirements.txt"
CURRENT_LINK = "current"
RELEASES_DIR = "releases"
VENV_DIR = "venv"
_MAX_LOCK_BYTES = 64 * 1024
_MESSAGE_TAIL_BYTES = 1500
_UV_HASH_MISMATCH = re.compile(r"Hash mismatch for `([^`]+)`")
_PIP_HASH_MISMATCH = re.compile(r"^\s*(\S+==\S+) from .*:\s*$", re.MULTILINE)
_LEFTOVER_PATTERNS = (
    "*/.*.removed-*",
    "*/*/.current.tmp-*",
    f"*/*/{RELEASES_DIR}/.*.partial-*",
    f"*/*/{RELEASES_DIR}/.*.retired-*",
)


class Wheelhouse(Protocol):
    """Makes wheels a release needs in a `find_links` directory under the state dir."""

    def supply(self, directory: Path, packages: Sequence[Package]) -> None:
        """Add the wheels it can make for `packages` to `directory`, if missing.

        Packages it knows nothing of are left to the installer; DeployError when one it
        knows cannot be made.
        """
        ...


class VenvDeployer:
    """Deploys each release into its own virtualenv under `state_dir/envs/`.

    `install_count` counts installer runs, so callers can prove a switch to a release
    already on disk installed nothing. `allowed_sources` are the absolute paths and URL
    prefixes (`[sources] allow`) that `find_links` and `index_url` may name besides
    directories under the state dir. `wheelhouse`, when given, fills a state-dir
    `find_links` directory before each install.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        installer: Installer | None = None,
        allowed_sources: Sequence[str] = (),
        wheelhouse: Wheelhouse | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.installer = installer if installer is not None else default_installer()
        self.allowed_sources = tuple(allowed_sources)
        self.wheelhouse = wheelhouse
        self.install_count = 0
        self.observed = ObservedCache(self.state_dir)

    def app_dir(self, env_name: str, app: str) -> Path:
        """`envs/<env>/<app>` under the state dir, after checking both are plain names."""
        try:
            check_dns_label(env_name)
            check_dns_label(app)
        except ValueError as error:
            raise DeployError(str(error)) from None
        return self.state_dir / "envs" / env_name / app

    def release_dir(self, env_name: str, app: str, version: str) -> Path:
        """`envs/<env>/<app>/releases/<version>` under the state dir."""
        try:
            check_semver(version)
        except ValueError as error:
            raise DeployError(str(error)) from None
        return self.app_dir(env_name, app) / RELEASES_DIR / version

    def observe(self, env: Environment, app: str) -> Observed:
        """What is current and complete on disk, and whether the current release drifted.

        What was read last time is answered again while the app's change signal (see
        `ObservedCache`) has not moved; `forget_observed` makes the next calls read all.
        """
        name = env.environment
        try:
            check_dns_label(name)
            check_dns_label(app)
        except ValueError as error:
            raise DeployError(str(error)) from None
        app_dir = f"{self.state_dir}/envs/{name}/{app}"  # a str: every app of every pass
        return self.observed.get((name, app), app_dir, _observe_app)

    def forget_observed(self) -> None:
        """Read every app again on its next observe (the resync's full drift check)."""
        self.observed.forget()

    def save_observed(self) -> None:
        """Keep what was observed in the state dir for the next process."""
        self.observed.save()

    def prepare(
        self, env: Environment, manifest: ReleaseManifest, lock: ReleaseLock, qir: str
    ) -> Prepared:
        """Build the release unless it is complete on disk; never touches `current`."""
        sources = self._sources(env, manifest)
        final = self.release_dir(env.environment, manifest.app, manifest.version)
        if is_complete(final):
            return Prepared(manifest.version, installed=False)
        _check_lock(env.environment, manifest, lock, qir)
        self._supply(env, manifest)
        _clear_incomplete(final)
        partial = _make_partial(final)
        try:
            self._build(partial, final, manifest, sources, _label(env, manifest))
            _write_release_files(partial, lock, qir)
            _publish(partial, final)
        finally:
            _delete(partial)
        return Prepared(manifest.version, installed=True)

    def _sources(self, env: Environment, manifest: ReleaseManifest) -> Sources:
        """The environment's package sources; DeployError when one is not allowed."""
        config = _venv_config(env)
        refusals = env.source_refusals(self.allowed_sources)
        if refusals:
            problems = "; ".join(f"{field}: {problem}" for field, problem in refusals)
            raise DeployError(redact(f"{_label(env, manifest)}: install refused: {problems}"))
        return _sources(config, self.state_dir)

    def _supply(self, env: Environment, manifest: ReleaseManifest) -> None:
        """Let the wheelhouse fill a state-dir `find_links` directory before the install."""
        find_links = _venv_config(env).find_links
        if self.wheelhouse is None or not find_links or not is_state_dir_source(find_links):
            return
        try:
            self.wheelhouse.supply(self.state_dir / find_links, manifest.classical.packages)
        except DeployError as error:
            raise DeployError(f"{_label(env, manifest)}: {error}") from None

    def _build(
        self, partial: Path, final: Path, manifest: ReleaseManifest, sources: Sources, label: str
    ) -> None:
        """Create the venv in `partial` and install the manifest's packages into it."""
        requirements = partial / REQUIREMENTS_FILE
        requirements.write_text(requirements_text(manifest), encoding="utf-8")
        venv = partial / VENV_DIR
        self.install_count += 1
        try:
            self.installer.create_venv(venv)
            self.installer.install(venv, requirements, sources)
            self.installer.relocate(venv, final / VENV_DIR)
        except InstallFailed as failed:
            raise _install_error(label, self.installer.name, failed) from None

    def check_health(
        self, env: Environment, manifest: ReleaseManifest, *, current: bool
    ) -> HealthResult:
        """Run the health command inside the release (or inside `current`)."""
        health = manifest.classical.health
        if health is None:
            return HealthResult(True, "no health command")
        app_dir = self.app_dir(env.environment, manifest.app)
        if current:
            release = app_dir / CURRENT_LINK
        else:
            release = self.release_dir(env.environment, manifest.app, manifest.version)
        if not is_complete(release):
            return HealthResult(False, f"{release} is not a complete release")
        return run_health(health, manifest, release, release / VENV_DIR)

    def switch(self, env: Environment, app: str, version: str) -> None:
        """Point `current` at a complete release by renaming a new symlink over it."""
        release = self.release_dir(env.environment, app, version)
        if not is_complete(release):
            raise DeployError(f"{app} {version} in {env.environment}: not prepared ({release})")
        link = release.parent.parent / CURRENT_LINK
        if link.exists() and not link.is_symlink():
            raise DeployError(f"{link} exists and is not a symlink; refusing to replace it")
        _replace_link(link, f"{RELEASES_DIR}/{version}")

    def retire(self, env: Environment, app: str, keep: int) -> list[str]:
        """Remove complete releases older than the newest `keep`, never the current one."""
        if keep < 0:
            raise DeployError(f"keep must be 0 or more, not {keep}")
        app_dir = self.app_dir(env.environment, app)
        versions = complete_versions(app_dir / RELEASES_DIR)
        current, _ = _read_current(app_dir)
        kept = set(versions[max(0, len(versions) - keep) :]) | {current}
        retired = [version for version in versions if version not in kept]
        for version in retired:
            _discard(app_dir / RELEASES_DIR / version, "retired")
        return retired

    def remove(self, env: Environment, app: str) -> None:
        """Delete the app's `current` link, then all its releases."""
        app_dir = self.app_dir(env.environment, app)
        link = app_dir / CURRENT_LINK
        if link.is_symlink():
            link.unlink()
            _fsync_dir(app_dir)
        if app_dir.exists():
            _discard(app_dir, "removed")

    def recover(self) -> list[Path]:
        """Delete what an interrupted prepare, switch, retire or remove left behind."""
        envs = self.state_dir / "envs"
        leftovers = sorted({path for pattern in _LEFTOVER_PATTERNS for path in envs.glob(pattern)})
        removed = []
        for path in leftovers:
            if path.is_symlink() or path.exists():
                _delete(path)
                removed.append(path)
        return removed


def _observe_app(app_dir: Path) -> Observed:
    """Everything observe reports about one app, read from the disk."""
    on_disk = tuple(complete_versions(app_dir / RELEASES_DIR))
    current, problem = _read_current(app_dir)
    if current is not None and problem is None:
        problem = release_drift(app_dir / RELEASES_DIR / current, current)
    return Observed(current=current, on_disk=on_disk, drift=problem)


def _label(env: Environment, manifest: ReleaseManifest) -> str:
    """How messages name a release: `app version in env`."""
    return f"{manifest.app} {manifest.version} in {env.environment}"


def _venv_config(env: Environment) -> VenvDeploy:
    """The environment's venv settings; DeployError if it deploys some other way."""
    if not isinstance(env.classical, VenvDeploy):
        raise DeployError(
            f"environment {env.environment} deploys with {env.classical.kind!r}, not 'venv'"
        )
    return env.classical


def _sources(config: VenvDeploy, state_dir: Path) -> Sources:
    """Package sources, a relative one resolved against the state dir (an index as a file: URL)."""
    find_links, index_url = config.find_links, config.index_url
    if find_links and is_state_dir_source(find_links):
        find_links = str(state_dir / find_links)
    if index_url and is_state_dir_source(index_url):
        index_url = (state_dir / index_url).as_uri()
    elif index_url and index_url.startswith("/"):
        index_url = Path(index_url).as_uri()
    return Sources(find_links=find_links, index_url=index_url, no_index=config.no_index)


def requirements_text(manifest: ReleaseManifest) -> str:
    """The requirements file: one `name==version` line each, with its hash when pinned.

    uv verifies a hash wherever one is given and installs unhashed lines (and all
    dependencies) unchecked; pin every distribution with a hash to lock a release fully.
    """
    lines = []
    for package in manifest.classical.packages:
        line = f"{package.name}=={package.version}"
        if package.sha256:
            line += f" --hash=sha256:{package.sha256}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _check_lock(env_name: str, manifest: ReleaseManifest, lock: ReleaseLock, qir: str) -> None:
    """Refuse a lock that names another release or pins a different QIR digest."""
    expected = {"app": manifest.app, "version": manifest.version, "env": env_name}
    for name, value in expected.items():
        if getattr(lock, name) != value:
            raise DeployError(
                f"{manifest.app} {manifest.version} in {env_name}: lock {name} is "
                f"{getattr(lock, name)!r}, expected {value!r}"
            )
    digest = hashlib.sha256(qir.encode("utf-8")).hexdigest()
    if digest != lock.qir_sha256:
        raise DeployError(
            f"{manifest.app} {manifest.version} in {env_name}: QIR sha256 is {digest}, "
            f"the lock pins {lock.qir_sha256}"
        )


def _install_error(label: str, installer: str, failed: InstallFailed) -> DeployError:
    """A DeployError naming the release, the package whose hash failed if any, and the output."""
    mismatch = _UV_HASH_MISMATCH.search(failed.output) or _PIP_HASH_MISMATCH.search(failed.output)
    if mismatch:
        what = f"sha256 mismatch for {mismatch.group(1)}: the file's hash is not the manifest's"
    else:
        what = f"{installer}: {failed.step}"
    tail = capped(redact(failed.output), _MESSAGE_TAIL_BYTES)
    transient = failed.transient and not mismatch
    return DeployError(f"{label}: install failed: {what}\n{tail}", transient=transient)


def lock_json(lock: ReleaseLock) -> bytes:
    """The stored lock file: a JSON object of the ReleaseLock fields, all strings.

    Keys (sorted): app, deployed_at (ISO 8601 UTC), entry (Q# entry, Qiskit circuit name, or
    empty for OpenQASM), env, profile, program (repo path of the program source), qir_sha256
    (hex sha256 of program.qir's bytes), revision (Git commit), target_id, version.
    Readers ignore keys they do not know.
    """
    return (json.dumps(asdict(lock), indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_lock(path: Path) -> ReleaseLock:
    """Read a stored lock file; DeployError when it is missing, too big or malformed."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_LOCK_BYTES + 1)
    except OSError as error:
        raise DeployError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = json.loads(raw) if len(raw) <= _MAX_LOCK_BYTES else None
    except ValueError:
        data = None
    names = [field.name for field in fields(ReleaseLock)]
    if not isinstance(data, dict) or not all(isinstance(data.get(n), str) for n in names):
        raise DeployError(f"{path} is not a qrelease lock file")
    return ReleaseLock(**{name: data[name] for name in names})


def _write_durable(path: Path, data: bytes) -> None:
    """Write a new file and fsync it."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """fsync a directory so renames and new entries in it survive a crash."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_release_files(partial: Path, lock: ReleaseLock, qir: str) -> None:
    """Write lock and program, flush everything, then the COMPLETE marker."""
    _write_durable(partial / LOCK_FILE, lock_json(lock))
    _write_durable(partial / PROGRAM_FILE, qir.encode("utf-8"))
    os.sync()  # the venv's many files too: COMPLETE must only ever follow a whole release
    _write_durable(partial / COMPLETE_FILE, f"{lock.app} {lock.version}\n".encode())
    _fsync_dir(partial)


def is_complete(release: Path) -> bool:
    """True when `release` is a directory holding the COMPLETE marker."""
    return release.is_dir() and (release / COMPLETE_FILE).is_file()


def complete_versions(releases: Path) -> list[str]:
    """Versions with a complete release under `releases`, oldest first by semver."""
    if not releases.is_dir():
        return []
    versions = []
    for entry in releases.iterdir():
        with contextlib.suppress(ValueError):
            if is_complete(entry) and check_semver(entry.name):
                versions.append(entry.name)
    return sorted(versions, key=version_key)


def _read_current(app_dir: Path) -> tuple[str | None, str | None]:
    """The version `current` points at, or a problem when it is not a release link."""
    link = app_dir / CURRENT_LINK
    if not link.is_symlink():
        return (None, f"{link} is not a symlink") if link.exists() else (None, None)
    target = PurePosixPath(link.readlink())
    with contextlib.suppress(ValueError):
        if target.parts[:1] == (RELEASES_DIR,) and len(target.parts) == 2:
            return check_semver(target.name), None
    return None, f"{link} points to {str(target)!r}, not to a release"


def release_drift(release: Path, version: str) -> str | None:
    """Why a deployed release looks tampered with, or None; cheap checks only."""
    if not is_complete(release):
        return f"release {version} is missing or incomplete at {release}"
    try:
        lock = read_lock(release / LOCK_FILE)
    except DeployError as error:
        return f"release {version}: {error}"
    if lock.version != version:
        return f"release {version}: its lock file is for version {lock.version}"
    if not venv_python(release / VENV_DIR).exists():
        return f"release {version}: the virtualenv's python is missing"
    if _file_sha256(release / PROGRAM_FILE) != lock.qir_sha256:
        return f"release {version}: {PROGRAM_FILE} does not match the lock's qir_sha256"
    return None


def _file_sha256(path: Path) -> str | None:
    """Hex sha256 of a file read in chunks, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _make_partial(final: Path) -> Path:
    """A fresh hidden directory beside `final` to build the release in."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    partial.chmod(0o755)
    return partial


def _clear_incomplete(final: Path) -> None:
    """Set aside whatever sits at `final` without being complete, unless it is live."""
    if not (final.exists() or final.is_symlink()):
        return
    link = final.parent.parent / CURRENT_LINK
    if link.is_symlink() and str(link.readlink()) == f"{RELEASES_DIR}/{final.name}":
        raise DeployError(f"{final} is live but incomplete; remove the app and redeploy it")
    _discard(final, "retired")


def _publish(partial: Path, final: Path) -> None:
    """Rename the built release into place; losing a race to an identical build is fine."""
    try:
        partial.rename(final)
    except OSError as error:
        if is_complete(final):
            return
        raise DeployError(f"cannot move {partial} to {final}: {error.strerror}") from None
    _fsync_dir(final.parent)


def _delete(path: Path) -> None:
    """Remove a file, symlink or directory tree if it is there."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _discard(path: Path, kind: str) -> None:
    """Rename `path` to a hidden leftover name first, so a crash mid-delete is recoverable."""
    hidden = path.with_name(f".{path.name}.{kind}-{secrets.token_hex(4)}")
    path.rename(hidden)
    _fsync_dir(path.parent)
    _delete(hidden)


def _replace_link(link: Path, target: str) -> None:
    """Atomically make `link` a symlink to `target` (temp link, rename, fsync the dir)."""
    temp = link.with_name(f".{link.name}.tmp-{secrets.token_hex(4)}")
    temp.symlink_to(target)
    try:
        temp.replace(link)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise DeployError(f"cannot switch {link} to {target}: {error.strerror}") from None
    _fsync_dir(link.parent)
