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
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers.daemon import wait_for
from tests.helpers.gitops import GitOpsRepo
from tests.helpers.replicas import VERSIONS, Fleet, make_fleet
from tests.helpers.shared_deployer import COMPLETE, switches

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("QRELEASE_FAILOVER_ROUNDS", "5"))
TTL = timedelta(seconds=4)
RENEW = timedelta(seconds=1)
PAUSE = 0.4  # seconds each install takes (a switch half of it): kills land mid-rollout
CONVERGE_SECONDS = 90.0
REPLICAS = ("replica-a", "replica-b", "replica-c")


@pytest.fixture
def fleet(example_repo: GitOpsRepo, tmp_path: Path, postgres_url: str) -> Iterator[Fleet]:
    fleet = make_fleet(
        tmp_path, postgres_url, REPLICAS, ttl=TTL, renew=RENEW, pause=PAUSE, work=example_repo
    )
    try:
        for replica in fleet.replicas.values():
            replica.start()
        yield fleet
    finally:
        fleet.close()


def logs(fleet: Fleet) -> str:
    return fleet.logs()


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
        # (its rollouts may all have finished before the kill: then takeover comes after)
        wait_for(
            f"round {round_number}: {victim}'s environments taken over",
            lambda victim=victim, held=held: all(
                lease.owner != victim for lease in fleet.store.leases() if lease.name in held
            ),
            CONVERGE_SECONDS,
        )
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
