"""Failover: three controller processes on one real PostgreSQL, the lease holder killed with -9.

Each round pushes new pins for every app in every environment, waits a random moment so
the rollouts are under way, kills the replica holding the most leases with SIGKILL (no
cleanup of any kind), and waits until the other replicas have taken its environments over
and every pin is live. The replicas deploy into one shared directory (as real replicas
deploy into one ARM subscription; tests/helpers/shared_deployer.py), which logs every
switch. After each round: nothing half switched, each release went live exactly once
(one switch at most, one `deploy` Healthy record: a rollout cut after its switch is
verified by the new owner, not rolled out again), no intent left, takeover within two
lease TTLs of the victim's last heartbeat; at the end the audit chain verifies.

`QRELEASE_FAILOVER_ROUNDS` sets the number of rounds (5 in `make test`; `make failover`
runs 20). The test runs on the real clock: the leases are real-time by nature.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from qrelease.store import StateStore, open_store
from tests.helpers import PROJECT_ROOT
from tests.helpers.daemon import wait_for
from tests.helpers.gitops import GIT_ENV, GitOpsRepo, relaxed
from tests.helpers.shared_deployer import COMPLETE, switches

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("QRELEASE_FAILOVER_ROUNDS", "5"))
TTL = timedelta(seconds=4)
RENEW = timedelta(seconds=1)
PAUSE = 0.4  # seconds each install takes (a switch half of it): kills land mid-rollout
CONVERGE_SECONDS = 90.0
VERSIONS = {"bell-service": ("1.0.0", "1.1.0", "1.2.0"), "qrng": ("0.1.0", "0.2.0")}
ENVIRONMENTS = ("dev", "staging", "prod")
REPLICAS = ("replica-a", "replica-b", "replica-c")

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
class Replica:
    """One controller process; restartable on the same state dir (so the same id)."""

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
    work: GitOpsRepo
    store: StateStore
    shared: Path
    replicas: dict[str, Replica]

    def pins(self) -> dict[tuple[str, str], str]:
        found = {}
        for env in ENVIRONMENTS:
            for line in self.work.read(f"releases/{env}.yaml").splitlines():
                app, _, version = line.strip().partition(": ")
                if line.startswith("  ") and app in VERSIONS:
                    found[(env, app)] = version
        return found

    def push(self, pins: dict[tuple[str, str], str]) -> None:
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
        now = time.time()
        return Counter(
            lease.owner for lease in self.store.leases() if lease.expires_at.timestamp() > now
        )


@pytest.fixture
def fleet(example_repo: GitOpsRepo, tmp_path: Path, postgres_url: str) -> Iterator[Fleet]:
    for env in ENVIRONMENTS:  # no upstream chain, soak or windows: any pin may go live now
        path = f"releases/{env}.yaml"
        text = relaxed(example_repo.read(path))
        example_repo.write(
            path,
            "".join(
                line
                for line in text.splitlines(keepends=True)
                if not line.startswith("promote_from:")
            ),
        )
    example_repo.commit("environments for the failover test")
    bare = tmp_path / "remote.git"
    example_repo.git("clone", "--quiet", "--bare", str(example_repo.path), str(bare))
    example_repo.git("remote", "add", "origin", str(bare))
    shared = tmp_path / "shared"
    shared.mkdir()
    replicas = {}
    for name in REPLICAS:
        config = tmp_path / f"{name}.toml"
        config.write_text(
            f'listen = "127.0.0.1:0"\nconcurrency = 2\n'
            f'[source]\ninterval = "1s"\nresync = "1m"\n'
            f'[store]\nurl = "{postgres_url}"\n'
            f'[replica]\nid = "{name}"\nlease_ttl = "4s"\nlease_renew = "1s"\n'
        )
        args = [str(bare), str(tmp_path / name), str(config), str(shared), str(PAUSE)]
        replicas[name] = Replica(name, args, tmp_path / f"{name}.log")
    store = open_store(postgres_url)
    fleet = Fleet(example_repo, store, shared, replicas)
    try:
        for replica in replicas.values():
            replica.start()
        yield fleet
    finally:
        for replica in replicas.values():
            replica.stop()
        store.close()


def logs(fleet: Fleet) -> str:
    return "\n".join(f"--- {r.name}\n{r.log.read_text()[-3000:]}" for r in fleet.replicas.values())


def test_killing_the_lease_holder_mid_rollout_loses_and_repeats_nothing(fleet: Fleet) -> None:
    rng = random.Random(20261203)
    try:
        wait_for("the first rollout", lambda: fleet.converged(fleet.pins()), CONVERGE_SECONDS)
        wait_for("all three replicas holding work", lambda: len(fleet.holders()) == 3, 30)
    except AssertionError:
        raise AssertionError(logs(fleet)) from None
    takeovers: list[float] = []
    for round_number in range(ROUNDS):
        first_seq = fleet.store.newest_seq() + 1
        switched_before = len(switches(fleet.shared))
        pins = {
            key: rng.choice([v for v in VERSIONS[key[1]] if v != version])
            for key, version in fleet.pins().items()
        }
        fleet.push(pins)
        time.sleep(rng.uniform(0.3, 2.5))  # into the rollouts (about 0.6 s each, two at a time)
        victim, _ = fleet.holders().most_common(1)[0]
        held = [lease.name for lease in fleet.store.leases() if lease.owner == victim]
        fleet.replicas[victim].kill()
        try:
            wait_for(
                f"round {round_number}: every pin live",
                lambda pins=pins: fleet.converged(pins),
                CONVERGE_SECONDS,
            )
        except AssertionError:
            raise AssertionError(f"round {round_number}, killed {victim}\n{logs(fleet)}") from None
        # the victim's environments were taken over within two TTLs of its last heartbeat
        last_beat = {r.id: r.last_seen for r in fleet.store.replicas()}[victim]
        leases = {lease.name: lease for lease in fleet.store.leases()}
        for name in held:
            taken = leases[name]
            assert taken.owner != victim
            takeover = taken.acquired_at - last_beat
            assert takeover <= 2 * TTL, f"{name} taken {takeover} after {victim}'s last beat"
            takeovers.append(takeover.total_seconds())
        # each release went live exactly once, and nothing else went live
        went_live = Counter(switches(fleet.shared)[switched_before:])
        assert set(went_live) <= {(env, app, version) for (env, app), version in pins.items()}
        if max(went_live.values(), default=1) != 1:
            raw = (fleet.shared / "switches.log").read_text().splitlines()[switched_before:]
            trail = "\n".join(
                f"{e.seq} {e.time} {e.env}/{e.app} {e.action} {e.from_version}->{e.to_version} "
                f"{e.outcome} {e.reason[:80]} {e.details.get('lease')}"
                for e in fleet.store.events(after_seq=first_seq - 1)
            )
            raise AssertionError(f"{victim} killed\n{went_live}\n" + "\n".join(raw) + "\n" + trail)
        events = fleet.store.events(after_seq=first_seq - 1)
        live_records = Counter(
            (e.env, e.app, e.to_version)
            for e in events
            if e.action == "deploy" and e.outcome == "Healthy"
        )
        assert live_records == Counter({(env, app, v): 1 for (env, app), v in pins.items()}), (
            round_number,
            victim,
            live_records,
        )
        for (env, app), version in pins.items():  # nothing half written is live
            assert (fleet.shared / env / app / "releases" / version / COMPLETE).is_file()
        fleet.replicas[victim].start()  # back as a standby; it takes work when it rebalances
    report = fleet.store.verify()
    assert report.ok, report
    assert len(takeovers) >= ROUNDS
    worst = max(takeovers)
    print(f"takeover after the victim's last beat: max {worst:.2f}s, {len(takeovers)} leases")
