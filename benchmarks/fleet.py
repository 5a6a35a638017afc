"""N app releases from one commit to Healthy: a fleet on PostgreSQL against one controller.

The fleet is what issue 15 describes: two `qrelease controller run` replicas sharing one
PostgreSQL (environments split between them by lease) and two `qrelease worker` processes
running the quantum gates from the queue in the store. The reference is one `qrelease
controller run` on its embedded SQLite store with its own gate pool. Everything else is
the same and real: the generated repo (4 environments without a promotion chain, each
pinning every app, 1,000 releases in the full run), tiny hash-pinned wheels installed by
uv into per-release virtualenvs, each release's health command, the qdk gates of the Bell
program (the gate cache answers every release after the first of each kind). Each side
starts idle on a commit with the manifests and no environment files; the timer runs from
the push of the commit that pins every app until the store records every release Healthy
and Synced with no intent left.

On one 2-core machine the replicas, the workers and PostgreSQL share the same cores, so
this measures what running as a fleet costs (leases, fencing, the queue, a network store),
not scale-out: the target is that it costs at most a third more than one controller.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.fixtures import wheel_builder
from benchmarks.gitdata import BELL_PROGRAM, app_name, environment_yaml, fast_import, manifest_yaml
from qrelease.store import StateStore, open_store

ENVIRONMENTS = ("region-a", "region-b", "region-c", "region-d")
"""No promotion chain between them: every pin may go live at once, on whichever replica."""
VERSION = "1.0.0"
DEADLINE_SECONDS = 1800.0
"""A side that has not converged by then is broken, not slow: the row errors."""


@dataclass(frozen=True)
class FleetRepo:
    """Two bare repos: `base` (manifests, no environments) and `full` (+ every pin)."""

    base: Path
    full: Path
    wheels: Path
    apps: int

    @property
    def releases(self) -> int:
        return self.apps * len(ENVIRONMENTS)


def build_repo(root: Path, releases: int) -> FleetRepo:
    """The manifests of releases // 4 apps, and the commit pinning each in 4 environments."""
    apps = max(1, releases // len(ENVIRONMENTS))
    build = wheel_builder()
    wheels = root / "wheels"
    names = [app_name(a) for a in range(apps)]
    sha = {app: build(wheels, app, VERSION).sha256 for app in names}
    manifests: dict[str, bytes] = {}
    for app, digest in sha.items():
        manifests[f"manifests/{app}/{VERSION}.yaml"] = manifest_yaml(app, VERSION, sha256=digest)
        manifests[f"manifests/{app}/programs/bell.qs"] = BELL_PROGRAM
    pins = {
        f"releases/{env}.yaml": environment_yaml(
            env, dict.fromkeys(names, VERSION), find_links=str(wheels), no_index=True
        )
        for env in ENVIRONMENTS
    }
    fast_import(root / "base.git", [manifests])
    fast_import(root / "full.git", [manifests, pins])  # the same first commit: fixed dates
    return FleetRepo(root / "base.git", root / "full.git", wheels, apps)


@dataclass
class Side:
    """One way of running the controller: its store and its processes' config."""

    name: str
    replicas: int
    workers: int
    store_url: Callable[[Path], str]
    """The store of one trial (a fresh database or state dir each time)."""


def config_text(side: Side, url: str, wheels: Path, replica: int) -> str:
    """controller.toml of one replica (or of the single controller)."""
    lines = [
        'listen = "127.0.0.1:0"',
        "[source]",
        'interval = "1s"',
        "[store]",
        f'url = "{url}"',
        "[sources]",
        f'allow = ["{wheels}"]',
        "[gates]",
        "workers = 1" if side.workers else "workers = 2",
    ]
    if side.workers:
        lines += ["queue = true", 'claim_after = "10m"', 'heartbeat = "1s"']
    if side.replicas > 1:
        lines += ["[replica]", f'id = "replica-{replica}"', "lease_ttl = 15", "lease_renew = 5"]
    return "\n".join(lines) + "\n"


@contextmanager
def processes(
    commands: list[tuple[list[str], Path]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start each command with its log file; SIGTERM them all afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for command, log in commands:
            with log.open("ab") as out:
                started.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def trial(side: Side, repo: FleetRepo, root: Path) -> float:
    """Seconds from the push of every pin until the side has every release Healthy."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    remote = root / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.base), str(remote)], check=True)
    url = side.store_url(root)
    env = {
        **os.environ,
        "QDK_PYTHON_TELEMETRY": "none",
        "UV_CACHE_DIR": str(root / "uv-cache"),  # each trial installs from cold, as the first
    }
    qrelease = [sys.executable, "-m", "qrelease"]
    commands: list[tuple[list[str], Path]] = []
    for n in range(side.replicas):
        config = root / f"controller-{n}.toml"
        config.write_text(config_text(side, url, repo.wheels, n))
        run = ["controller", "run", "--repo", str(remote), "--state", str(root / f"state-{n}")]
        commands.append(([*qrelease, *run, "--config", str(config)], root / f"controller-{n}.log"))
    worker_config = root / "worker.toml"
    worker_config.write_text('[gates]\nworkers = 1\nheartbeat = "1s"\n')
    for n in range(side.workers):
        work = ["worker", "--name", f"worker-{n}", "--state", str(root / f"worker-{n}")]
        work += ["--config", str(worker_config), "--store", url, "--poll", "0.2"]
        commands.append(([*qrelease, *work], root / f"worker-{n}.log"))
    with ExitStack() as stack:
        stack.enter_context(processes(commands, env))
        store = stack.enter_context(open_store(url))
        base = _git(remote, "rev-parse", "main")
        _wait(root, "every controller's first pass", lambda: _idle_on(store, base))
        for n in range(side.workers):
            log = root / f"worker-{n}.log"
            _wait(root, f"worker {n}", lambda log=log: "worker started" in log.read_text())
        started = time.perf_counter()
        _git(remote, "fetch", "-q", str(repo.full), "+refs/heads/main:refs/heads/main")
        _wait(root, "every release Healthy", lambda: _converged(store, repo.releases))
        return time.perf_counter() - started


def _idle_on(store: StateStore, revision: str) -> bool:
    run = store.last_run()
    return run is not None and run.revision == revision and run.finished_at is not None


def _converged(store: StateStore, releases: int) -> bool:
    rows = store.all_observed()
    done = sum(
        1
        for row in rows
        if row.deployed == VERSION and str(row.health) == "Healthy" and str(row.sync) == "Synced"
    )
    return done == releases and not store.pending_intents()


def _wait(root: Path, what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in root.glob("*.log"))
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()
