"""Controller replica processes on one PostgreSQL, for the failover test and benchmark.

Each replica is a real `run_controller` process with its own state dir and controller.toml
(`[store]` the shared database, `[replica]` its id and lease timing), reconciling the
example GitOps repo (its environments without upstream chain, soak or windows, so any pin
may go live at once) into one shared directory (`shared_deployer.SharedDirDeployer`), with
the in-memory quantum backend. The fleet reads the shared store to see what they did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from qrelease.examples.scaffold import initial_files
from qrelease.store import StateStore, open_store
from tests.helpers import PROJECT_ROOT
from tests.helpers.gitops import GIT_ENV, GitOpsRepo, make_repo, relaxed

VERSIONS = {"bell-service": ("1.0.0", "1.1.0", "1.2.0"), "qrng": ("0.1.0", "0.2.0")}
ENVIRONMENTS = ("dev", "staging", "prod")

ENTRY = """
import sys
from pathlib import Path

from qrelease.config import load_config
from qrelease.daemon import run_controller
from qrelease.engine import Backends
from qrelease.quantum.memory import MemoryQuantum
from tests.helpers.shared_deployer import SharedDirDeployer

remote, state, config_path, root, pause = sys.argv[1:]
deployer, quantum = SharedDirDeployer(Path(root), float(pause)), MemoryQuantum()
sys.exit(
    run_controller(
        load_config(Path(config_path)),
        repo=remote,
        state_dir=Path(state),
        interval=None,
        listen=None,
        config_path=Path(config_path),
        backends_factory=lambda state_dir: Backends(lambda env: deployer, lambda env: quantum),
    )
)
"""


@dataclass
class ReplicaProcess:
    """One controller process; restartable on the same state dir (so with the same id)."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            **GIT_ENV,
            "QDK_PYTHON_TELEMETRY": "none",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", ENTRY, *self.args], env=env, stdout=out, stderr=out
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Fleet:
    """The GitOps work tree, the shared store and directory, and the replica processes."""

    work: GitOpsRepo
    store: StateStore
    shared: Path
    replicas: dict[str, ReplicaProcess] = field(default_factory=dict)

    def pins(self) -> dict[tuple[str, str], str]:
        found = {}
        for env in ENVIRONMENTS:
            for line in self.work.read(f"releases/{env}.yaml").splitlines():
                app, _, version = line.strip().partition(": ")
                if line.startswith("  ") and app in VERSIONS:
                    found[(env, app)] = version
        return found

    def push(self, pins: dict[tuple[str, str], str]) -> None:
        """Commit new pins for every (env, app) and push them."""
        for env in ENVIRONMENTS:
            path = f"releases/{env}.yaml"
            lines = [
                f"  {app}: {pins[(env, app)]}"
                if (app := line.strip().partition(":")[0]) in VERSIONS and line.startswith("  ")
                else line
                for line in self.work.read(path).splitlines()
            ]
            self.work.write(path, "\n".join(lines) + "\n")
        self.work.commit("new pins everywhere")
        self.work.git("push", "--quiet", "origin", "main")

    def converged(self, pins: dict[tuple[str, str], str]) -> bool:
        """Every pin live on disk and recorded Healthy and Synced; no intent left."""
        rows = {(row.env, row.app): row for row in self.store.all_observed()}
        live = all(
            (row := rows.get(key)) is not None
            and (row.deployed, row.desired, str(row.health), str(row.sync))
            == (version, version, "Healthy", "Synced")
            for key, version in pins.items()
        )
        return live and not self.store.pending_intents() and self.on_disk() == pins

    def on_disk(self) -> dict[tuple[str, str], str | None]:
        found: dict[tuple[str, str], str | None] = {}
        for env, app in self.pins():
            current = self.shared / env / app / "current"
            found[(env, app)] = current.readlink().name if current.is_symlink() else None
        return found

    def holders(self) -> Counter[str]:
        """How many unexpired leases each replica holds."""
        now = time.time()
        return Counter(
            lease.owner for lease in self.store.leases() if lease.expires_at.timestamp() > now
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {r.name}\n{r.log.read_text()[-3000:]}" for r in self.replicas.values()
        )

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.stop()
        self.store.close()


def make_fleet(
    root: Path,
    postgres_url: str,
    names: tuple[str, ...],
    *,
    ttl: timedelta,
    renew: timedelta,
    pause: float,
    work: GitOpsRepo | None = None,
) -> Fleet:
    """A fleet of stopped replicas over the example repo (or `work`), in `root`."""
    work = work or make_repo(root / "gitops", initial_files(example=True))
    for env in ENVIRONMENTS:  # no upstream chain, soak or windows: any pin may go live now
        path = f"releases/{env}.yaml"
        lines = relaxed(work.read(path)).splitlines(keepends=True)
        work.write(path, "".join(line for line in lines if not line.startswith("promote_from:")))
    work.commit("environments for replicas")
    bare = root / "remote.git"
    work.git("clone", "--quiet", "--bare", str(work.path), str(bare))
    work.git("remote", "add", "origin", str(bare))
    shared = root / "shared"
    shared.mkdir()
    fleet = Fleet(work, open_store(postgres_url), shared)
    for name in names:
        config = root / f"{name}.toml"
        config.write_text(
            'listen = "127.0.0.1:0"\nconcurrency = 2\n'
            '[source]\ninterval = "1s"\nresync = "1m"\n'
            f'[store]\nurl = "{postgres_url}"\n'
            f'[replica]\nid = "{name}"\nlease_ttl = {ttl.total_seconds()}\n'
            f"lease_renew = {renew.total_seconds()}\n"
        )
        args = [str(bare), str(root / name), str(config), str(shared), str(pause)]
        fleet.replicas[name] = ReplicaProcess(name, args, root / f"{name}.log")
    return fleet
