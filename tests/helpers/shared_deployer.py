"""A Deployer whose releases live in a directory that several controller processes share.

For the replica failover tests: what an ARM subscription is to real replicas (one target
every replica deploys to), this directory is to test processes. It implements our own
Deployer Protocol the way the venv deployer does on disk (a release folder completed with
a marker file, then an atomic `current` symlink swap), with a pause before each side effect
so that a `kill -9` lands in the middle of a rollout, and it appends every switch to a log
so the test can count how often each release went live.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from qrelease.deployers.base import DeployError, HealthResult, Observed, Prepared, ReleaseLock
from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.types import version_key

COMPLETE = "COMPLETE"
SWITCHES = "switches.log"


class SharedDirDeployer:
    """Releases under `root/<env>/<app>/releases/<version>`, live one behind `current`."""

    def __init__(self, root: Path, pause: float = 0.0) -> None:
        self.root = root
        self.pause = pause

    def _app(self, env: str, app: str) -> Path:
        return self.root / env / app

    def observe(self, env: Environment, app: str) -> Observed:
        """What `current` points at, and the completed releases."""
        folder = self._app(env.environment, app)
        current = folder / "current"
        live = current.readlink().name if current.is_symlink() else None
        ready = [
            release.name
            for release in (folder / "releases").glob("*")
            if (release / COMPLETE).is_file()
        ]
        return Observed(live, tuple(sorted(ready, key=version_key)))

    def prepare(
        self, env: Environment, manifest: ReleaseManifest, lock: ReleaseLock, qir: str
    ) -> Prepared:
        """Write the release folder, then its marker: a half-written one is never used."""
        release = self._app(env.environment, manifest.app) / "releases" / manifest.version
        if (release / COMPLETE).is_file():
            return Prepared(manifest.version, installed=False)
        release.mkdir(parents=True, exist_ok=True)
        time.sleep(self.pause)  # the install: a kill here leaves an incomplete folder
        (release / "lock.json").write_text(json.dumps({"revision": lock.revision}))
        (release / COMPLETE).touch()
        return Prepared(manifest.version, installed=True)

    def check_health(
        self, env: Environment, manifest: ReleaseManifest, *, current: bool
    ) -> HealthResult:
        """Healthy when the checked release is complete."""
        observed = self.observe(env, manifest.app)
        version = observed.current if current else manifest.version
        ok = version is not None and version in observed.on_disk
        return HealthResult(ok, f"{manifest.app} {version}: {'healthy' if ok else 'missing'}")

    def switch(self, env: Environment, app: str, version: str) -> None:
        """Point `current` at the release in one rename, then log the switch."""
        folder = self._app(env.environment, app)
        if not (folder / "releases" / version / COMPLETE).is_file():
            raise DeployError(f"{app} {version} in {env.environment}: not prepared")
        time.sleep(self.pause / 2)
        staged = folder / f".current-{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(f"releases/{version}")
        staged.replace(folder / "current")
        line = json.dumps(
            {
                "env": env.environment,
                "app": app,
                "version": version,
                "pid": os.getpid(),
                "at": time.time(),
            }
        )
        with (self.root / SWITCHES).open("a", encoding="utf-8") as log:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

    def retire(self, env: Environment, app: str, keep: int) -> list[str]:
        """Keep every release (the test counts them)."""
        return []

    def remove(self, env: Environment, app: str) -> None:
        """Not used by the failover test."""
        raise DeployError("the shared-dir deployer does not remove apps")


def switches(root: Path) -> list[tuple[str, str, str]]:
    """Every logged switch, oldest first."""
    log = root / SWITCHES
    if not log.is_file():
        return []
    lines = log.read_text(encoding="utf-8").splitlines()
    return [(d["env"], d["app"], d["version"]) for d in map(json.loads, lines) if d]
