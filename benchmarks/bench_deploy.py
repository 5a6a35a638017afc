"""Fresh deploy of one release against raw uv, and rollback to an on-disk release against a deploy.

Fresh deploy: `VenvDeployer.prepare` + `switch` into an empty state dir, against `uv venv` +
`uv pip install` of the same hash-pinned requirement from the same find-links directory
with `--no-index` (the uv binary qrelease itself uses). Rollback: `prepare` of a release
that is already complete on disk (it must install nothing) + `switch`, against a fresh
deploy of that same release by qrelease.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import yaml

from benchmarks.fixtures import wheel_builder
from benchmarks.gitdata import manifest_yaml
from benchmarks.harness import Action, Context, Row, Trial, ratio_row
from qrelease.deployers.base import ReleaseLock
from qrelease.deployers.installers import find_uv
from qrelease.deployers.venv import VenvDeployer, requirements_text
from qrelease.model.environment import Environment, VenvDeploy
from qrelease.model.manifest import ReleaseManifest

APP = "bench-app"
VERSIONS = ("1.0.0", "1.1.0")
DEPLOY_TARGET = 1.3
ROLLBACK_TARGET = 0.05


@dataclass(frozen=True)
class Release:
    """One release of the benchmark app, ready to prepare."""

    manifest: ReleaseManifest
    lock: ReleaseLock
    qir: str


def release(version: str, sha256: str) -> Release:
    """The manifest (hash-pinned, no health command), lock and stand-in QIR of a release."""
    data = yaml.safe_load(manifest_yaml(APP, version, sha256=sha256, health=False))
    manifest = ReleaseManifest.model_validate(data)
    qir = f"; QIR of {APP} {version}\n"
    lock = ReleaseLock(
        app=APP,
        env="dev",
        version=version,
        revision="0" * 40,
        target_id="ionq.simulator",
        profile="Base",
        entry="Bell.Main()",
        program=f"manifests/{APP}/programs/bell.qs",
        qir_sha256=hashlib.sha256(qir.encode()).hexdigest(),
        deployed_at="2024-01-01T00:00:00+00:00",
    )
    return Release(manifest, lock, qir)


class Deploys:
    """Wheels, an environment installing offline from them, and fresh scratch dirs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.wheels = root / "wheels"
        build = wheel_builder()
        self.releases = {v: release(v, build(self.wheels, APP, v).sha256) for v in VERSIONS}
        self.env = Environment(
            environment="dev", classical=VenvDeploy(find_links=str(self.wheels), no_index=True)
        )
        self._serial = count()

    def scratch(self, label: str) -> Path:
        """A new, empty directory."""
        path = self.root / f"{label}-{next(self._serial)}"
        path.mkdir()
        return path

    def deploy(self, deployer: VenvDeployer, version: str) -> bool:
        """Prepare and switch to a release; True when it had to install."""
        chosen = self.releases[version]
        prepared = deployer.prepare(self.env, chosen.manifest, chosen.lock, chosen.qir)
        deployer.switch(self.env, APP, version)
        return prepared.installed

    @contextmanager
    def fresh_deploy(self) -> Iterator[Action]:
        """qrelease: prepare + switch into an empty state dir."""
        state = self.scratch("ours")
        deployer = VenvDeployer(state, allowed_sources=[str(self.wheels)])
        yield lambda: _expect(self.deploy(deployer, VERSIONS[0]), wanted=True)
        shutil.rmtree(state)

    @contextmanager
    def raw_uv(self) -> Iterator[Action]:
        """Reference: `uv venv` + `uv pip install --no-index --find-links` of the same pin."""
        work = self.scratch("raw")
        requirements = work / "requirements.txt"
        requirements.write_text(requirements_text(self.releases[VERSIONS[0]].manifest))
        uv, venv = find_uv() or "uv", work / "venv"
        create = [uv, "venv", "--quiet", "--no-config", "--python", sys.executable, str(venv)]
        install = [uv, "pip", "install", "--quiet", "--no-config", "--python"]
        install += [str(venv / "bin" / "python"), "--no-index", "--find-links", str(self.wheels)]
        install += ["-r", str(requirements)]
        yield lambda: (subprocess.run(create, check=True), subprocess.run(install, check=True))
        shutil.rmtree(work)

    def rollback(self) -> Trial:
        """qrelease: back to a release complete on disk while a newer one is current."""
        deployer = VenvDeployer(self.scratch("rollback"), allowed_sources=[str(self.wheels)])
        for version in VERSIONS:
            self.deploy(deployer, version)

        @contextmanager
        def trial() -> Iterator[Action]:
            self.deploy(deployer, VERSIONS[1])
            yield lambda: _expect(self.deploy(deployer, VERSIONS[0]), wanted=False)

        return trial


def _expect(installed: bool, wanted: bool) -> None:
    """Fail loudly when a deploy installed (or did not) against expectation."""
    if installed != wanted:
        raise AssertionError(f"prepare installed={installed}, expected {wanted}")


def run(ctx: Context) -> list[Row]:
    """Two rows: fresh deploy vs raw uv; rollback vs fresh deploy."""
    deploys = Deploys(ctx.workdir / "deploy")
    uv = find_uv()
    fresh = ratio_row(
        ctx,
        "fresh deploy of one release",
        DEPLOY_TARGET,
        deploys.fresh_deploy,
        deploys.raw_uv,
        reference_name=f"{uv} venv + uv pip install --no-index --find-links DIR -r (same pin)",
        notes=[
            "qrelease: VenvDeployer.prepare (relocatable venv, hash-checked install, lock, "
            "QIR, fsyncs + os.sync, COMPLETE, rename) + switch; one tiny wheel, no health "
            "command; both sides share uv's cache (one untimed warm-up each)"
        ],
        warmup=True,
    )
    rollback = ratio_row(
        ctx,
        "rollback to an on-disk release",
        ROLLBACK_TARGET,
        deploys.rollback(),
        deploys.fresh_deploy,
        reference_name="fresh deploy of the same release by qrelease (prepare + switch)",
        notes=["qrelease: prepare finds the release COMPLETE (installs nothing) + switch"],
    )
    return [fresh, rollback]
