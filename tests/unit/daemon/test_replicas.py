"""Several controllers on one PostgreSQL store split the environments by lease.

In-process replicas over a real PostgreSQL, the real engine and the in-memory backends
(shared, as an ARM subscription is shared by every replica); the kill -9 failover test with
replica processes is in tests/integration/daemon/test_failover.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from qrelease.config import ReplicaConfig, StoreConfig
from qrelease.daemon import Controller
from qrelease.store import open_store
from tests.helpers.daemon import Api, Rig, synced, wait_for

FAST = ReplicaConfig(lease_ttl=timedelta(seconds=3), lease_renew=timedelta(milliseconds=200))


def replica(rig: Rig, name: str, postgres_url: str, **fields: Any) -> Controller:
    config = rig.config(
        state_dir=rig.root / name,
        store=StoreConfig(url=postgres_url),
        replica=FAST.model_copy(update={"id": name, **fields}),
    )
    return rig.start(config)


def owners(api: Api) -> dict[str, str]:
    fleet = api.status()["fleet"] or {"leases": []}
    return {lease["name"]: lease["owner"] for lease in fleet["leases"] if lease["held"]}


def test_two_replicas_split_the_environments_and_one_takes_all_when_the_other_stops(
    rig: Rig, postgres_url: str, api_for: Callable[[Controller], Api]
) -> None:
    a = replica(rig, "replica-a", postgres_url)
    b = replica(rig, "replica-b", postgres_url)
    api_a, api_b = api_for(a), api_for(b)
    everything = {"env:dev", "env:staging", "env:prod"}
    wait_for("every environment owned", lambda: set(owners(api_b)) == everything)
    wait_for(
        "both replicas at work",
        lambda: set(owners(api_b).values()) == {"replica-a", "replica-b"},
    )
    wait_for(  # an environment taken over late has its rows after its first pass
        "all six rows synced, seen from either replica",
        lambda: all(synced(api) and len(api.status()["rows"]) == 6 for api in (api_a, api_b)),
    )
    status = api_b.status()
    assert status["replica"] == "replica-b" and len(status["rows"]) == 6
    alive = {r["id"]: r["alive"] for r in status["fleet"]["replicas"]}
    assert alive == {"replica-a": True, "replica-b": True}
    assert api_a.metric('qrelease_leases_held{replica="replica-a"}') >= 1
    with open_store(postgres_url) as store:
        deploys = Counter(
            (e.env, e.app, e.to_version)
            for e in store.events(actions=["deploy"])
            if e.outcome == "Healthy"
        )
        assert len(deploys) == 6 and set(deploys.values()) == {1}  # each release once
        stamped = {e.details["lease"]["replica"] for e in store.events(actions=["deploy"])}
        assert stamped <= {"replica-a", "replica-b"}
        rows = store.all_observed()
        assert {(r.env, r.owner) for r in rows} == {
            (lease.removeprefix("env:"), owner) for lease, owner in owners(api_a).items()
        }
        assert store.verify().ok
    assert a.close() == 0  # a clean stop gives its leases up at once
    wait_for(
        "replica-b owns everything",
        lambda: set(owners(api_b).values()) == {"replica-b"} and set(owners(api_b)) == everything,
    )
    rig.pin("staging", "qrng", "0.1.0")
    wait_for(
        "replica-b applied the new pin",
        lambda: any(
            r["env"] == "staging" and r["app"] == "qrng" and r["deployed"] == "0.1.0"
            for r in api_b.status()["rows"]
        ),
    )
    assert b.close() == 0


def test_a_venv_environment_goes_only_to_a_replica_that_serves_it(
    rig: Rig, postgres_url: str, api_for: Callable[[Controller], Api]
) -> None:
    a = replica(rig, "replica-a", postgres_url, serves=("dev",))
    b = replica(rig, "replica-b", postgres_url, serves=("staging", "prod"))
    api = api_for(b)
    wait_for("every environment owned", lambda: len(owners(api)) == 3)
    assert owners(api) == {
        "env:dev": "replica-a",
        "env:staging": "replica-b",
        "env:prod": "replica-b",
    }
    assert b.close() == 0
    wait_for("replica-b's leases given up", lambda: owners(api_for(a)) == {"env:dev": "replica-a"})
    assert a.close() == 0
