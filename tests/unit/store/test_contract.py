"""The StateStore contract: SQLite, PostgreSQL and the in-memory fake behave the same."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qrelease.model.events import EventDraft
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Failure, Health, Rollout, Sync
from qrelease.store import FencedError, Intent, Replica, Run, StateStore, StoreError, open_store

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    locations = {"sqlite": tmp_path / "state", "memory": "memory:"}
    location = locations.get(request.param) or request.getfixturevalue("postgres_url")
    with open_store(location) as opened:
        yield opened


def state(env: str, app: str, **fields: object) -> ObservedState:
    return ObservedState.model_validate({"env": env, "app": app, **fields})


def test_events_chain_filter_and_verify(store: StateStore) -> None:
    for index in range(6):
        env = ("dev", "prod")[index % 2]
        action = ("gate", "deploy", "hold")[index % 3]
        store.append(
            EventDraft(env=env, app="a", action=action, reason=str(index)),
            time=T0 + timedelta(minutes=index),
        )
    assert store.newest_seq() == store.count_events() == 6
    assert [e.seq for e in store.events(env="dev")] == [1, 3, 5]
    assert [e.seq for e in store.events(actions=["deploy"], descending=True)] == [5, 2]
    assert [e.seq for e in store.events(since=T0 + timedelta(minutes=4))] == [5, 6]
    assert [e.seq for e in store.events(after_seq=2, before_seq=5)] == [3, 4]
    assert [e.seq for e in store.iter_events(limit=2, descending=True)] == [6, 5]
    newest = store.last_event("prod", "a", "hold")
    assert newest is not None and newest.seq == 6
    report = store.verify()
    assert report.ok and report.checked == 6 and report.head_seq == 6


def test_observed_rows_round_trip_and_delete(store: StateStore) -> None:
    full = state(
        "prod",
        "bell",
        desired="1.1.0",
        deployed="1.0.0",
        sync=Sync.OUT_OF_SYNC,
        health=Health.HEALTHY,
        rollout=Rollout.FAILED,
        rollout_step="install",
        failure=Failure.TRANSIENT,
        attempts=3,
        retry_at=T0,
        updated_at=T0,
    )
    store.put_observed_many([full, state("dev", "bell")])
    assert store.get_observed("prod", "bell") == full
    assert [s.key for s in store.all_observed()] == [("dev", "bell"), ("prod", "bell")]
    assert list(store.observed_by_key()) == [("dev", "bell"), ("prod", "bell")]
    store.delete_observed("dev", "bell")
    store.delete_observed("dev", "nothing")
    assert [s.key for s in store.all_observed()] == [("prod", "bell")]


def test_a_transaction_is_all_or_nothing(store: StateStore) -> None:
    store.put_observed(state("prod", "bell", deployed="1.0.0"))
    with pytest.raises(RuntimeError), store.transaction():
        store.put_observed(state("prod", "bell", deployed="2.0.0"))
        store.append(EventDraft(env="prod", app="bell", action="deploy"), time=T0)
        raise RuntimeError("boom")
    kept = store.get_observed("prod", "bell")
    assert kept is not None and kept.deployed == "1.0.0"
    assert store.count_events() == 0


def test_runs_intents_and_meta(store: StateStore) -> None:
    run = store.begin_run("a" * 40, time=T0)
    last = store.last_run()
    assert last is not None and last.id == run and last.finished_at is None
    store.finish_run(run, "succeeded", {"changes": 1}, time=T0 + timedelta(seconds=3))
    finished = store.last_run()
    assert finished is not None and finished.outcome == "succeeded"
    assert finished.summary == {"changes": 1}
    with pytest.raises(StoreError):
        store.finish_run(run, "failed", {}, time=T0)
    first = store.put_intent("dev", "a", "deploy", {"to": "1.0.0"}, time=T0)
    second = store.put_intent("dev", "b", "deploy", {"to": "2.0.0"}, time=T0)
    store.clear_intent(first)
    store.clear_intent(first)
    assert [intent.id for intent in store.pending_intents()] == [second]
    assert store.get_meta("last_revision") is None
    store.set_meta("last_revision", "b" * 40)
    store.set_meta("last_revision", "c" * 40)
    assert store.get_meta("last_revision") == "c" * 40


def test_swap_meta_sets_a_key_only_from_the_expected_value(store: StateStore) -> None:
    assert store.swap_meta("cursor", None, "5")
    assert not store.swap_meta("cursor", None, "6")  # present: "absent" is not expected
    assert not store.swap_meta("cursor", "4", "6")
    assert store.get_meta("cursor") == "5"
    assert store.swap_meta("cursor", "5", "7") and store.get_meta("cursor") == "7"


def test_of_many_connections_swapping_one_value_exactly_one_wins(store: StateStore) -> None:
    store.set_meta("lease", "free")
    winners: list[int] = []
    start = threading.Barrier(4)

    def swap(index: int) -> None:
        with store.connect() as other:
            start.wait()
            if other.swap_meta("lease", "free", f"owner-{index}"):
                winners.append(index)

    threads = [threading.Thread(target=swap, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and store.get_meta("lease") == f"owner-{winners[0]}"


def test_another_thread_appends_through_its_own_connection(store: StateStore) -> None:
    def append_from_a_thread() -> None:
        with store.connect() as other:
            for index in range(20):
                other.append(EventDraft(env="dev", app="t", action="gate", reason=str(index)))

    threads = [threading.Thread(target=append_from_a_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count_events() == 40 and store.verify().ok


def test_copied_runs_and_intents_keep_their_ids_and_meta_lists_every_key(
    store: StateStore,
) -> None:
    runs = [
        Run(7, "a" * 40, T0, T0 + timedelta(seconds=1), "succeeded", {"n": [1]}),
        Run(9, None, T0 + timedelta(minutes=1), None, None, {}),
    ]
    for run in runs:
        store.restore_run(run)
    store.restore_intent(Intent(4, "dev", "a", "deploy", {"to": "1.0.0"}, T0))
    assert list(store.iter_runs()) == runs
    assert store.begin_run(None, time=T0) == 10
    assert store.pending_intents() == [Intent(4, "dev", "a", "deploy", {"to": "1.0.0"}, T0)]
    assert store.put_intent("dev", "b", "deploy", {}, time=T0) == 5
    store.set_meta("b", "2")
    store.set_meta("a", "1")
    assert store.meta_items() == {"a": "1", "b": "2"}


TTL = timedelta(seconds=15)


def test_a_lease_is_held_until_it_expires_and_every_acquisition_gets_a_new_token(
    store: StateStore,
) -> None:
    a = store.acquire_lease("env:prod", "replica-a", TTL, T0)
    assert a is not None and (a.owner, a.token, a.expires_at) == ("replica-a", 1, T0 + TTL)
    assert store.acquire_lease("env:prod", "replica-b", TTL, T0 + timedelta(seconds=14)) is None
    renewed = store.renew_lease(a, TTL, T0 + timedelta(seconds=10))
    assert renewed is not None and renewed.token == 1
    assert renewed.expires_at == T0 + timedelta(seconds=25)
    assert store.acquire_lease("env:prod", "replica-b", TTL, T0 + timedelta(seconds=20)) is None
    b = store.acquire_lease("env:prod", "replica-b", TTL, T0 + timedelta(seconds=25))
    assert b is not None and (b.owner, b.token) == ("replica-b", 2)
    assert store.renew_lease(a, TTL, T0 + timedelta(seconds=26)) is None  # taken over
    assert store.release_lease(a) is False
    assert [(lease.name, lease.owner, lease.token) for lease in store.leases()] == [
        ("env:prod", "replica-b", 2)
    ]
    assert store.release_lease(b) is True  # given up: anyone may take it at once
    c = store.acquire_lease("env:prod", "replica-c", TTL, T0 + timedelta(seconds=26))
    assert c is not None and c.token == 3


def test_an_expired_lease_nobody_took_is_still_renewable_by_its_holder(store: StateStore) -> None:
    a = store.acquire_lease("env:dev", "replica-a", TTL, T0)
    assert a is not None
    late = store.renew_lease(a, TTL, T0 + timedelta(minutes=5))
    assert late is not None and late.token == a.token
    assert late.expires_at == T0 + timedelta(minutes=5) + TTL


def test_a_write_under_a_lost_lease_is_refused_and_rolled_back(store: StateStore) -> None:
    a = store.acquire_lease("env:prod", "replica-a", TTL, T0)
    assert a is not None
    with store.transaction():
        store.check_fence("env:prod", "replica-a", a.token)
        store.put_observed(state("prod", "bell", deployed="1.0.0", owner="replica-a", fence=1))
    b = store.acquire_lease("env:prod", "replica-b", TTL, T0 + TTL)
    assert b is not None
    with pytest.raises(FencedError, match="held by replica-b \\(token 2\\)"), store.transaction():
        store.put_observed(state("prod", "bell", deployed="9.9.9"))
        store.check_fence("env:prod", "replica-a", a.token)
    kept = store.get_observed("prod", "bell")
    assert kept is not None and (kept.deployed, kept.owner, kept.fence) == ("1.0.0", "replica-a", 1)
    with pytest.raises(FencedError, match="never taken"):
        store.check_fence("env:nowhere", "replica-a", 1)


def test_two_replicas_racing_for_a_free_lease_get_one_winner(store: StateStore) -> None:
    winners: list[str] = []

    def race(owner: str) -> None:
        with store.connect() as mine:
            if mine.acquire_lease("env:staging", owner, TTL, T0) is not None:
                winners.append(owner)

    threads = [threading.Thread(target=race, args=(f"replica-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    (lease,) = store.leases()
    assert (lease.owner, lease.token) == (winners[0], 1)


def test_replicas_beat_and_are_forgotten(store: StateStore) -> None:
    one = Replica("a", "host-1", 101, "127.0.0.1:9001", ("dev",), T0, T0)
    store.heartbeat(one)
    store.heartbeat(Replica("b", "host-2", 202, "127.0.0.1:9002", None, T0, T0))
    later = Replica("a", "host-1", 101, "127.0.0.1:9001", ("dev",), T0, T0 + TTL)
    store.heartbeat(later)
    assert store.replicas() == [later, Replica("b", "host-2", 202, "127.0.0.1:9002", None, T0, T0)]
    store.forget_replica("a")
    assert [replica.id for replica in store.replicas()] == ["b"]


def test_a_gate_job_is_queued_once_claimed_once_and_answers_every_asker(
    store: StateStore,
) -> None:
    stale = timedelta(seconds=30)
    job = store.enqueue_gate_job("k1", {"program": "a.qs"}, T0)
    assert (job.state, job.attempts, job.result) == ("queued", 0, None)
    again = store.enqueue_gate_job("k1", {"program": "ignored"}, T0 + stale)
    assert again.payload == {"program": "a.qs"} and again.created_at == T0
    store.enqueue_gate_job("k2", {"program": "b.qs"}, T0 + timedelta(seconds=1))
    first = store.claim_gate_job("worker-1", T0 + timedelta(seconds=2), stale)
    second = store.claim_gate_job("worker-2", T0 + timedelta(seconds=2), stale)
    assert first is not None and second is not None
    assert (first.key, first.worker, first.attempts) == ("k1", "worker-1", 1)
    assert (second.key, second.worker) == ("k2", "worker-2")
    assert store.claim_gate_job("worker-3", T0 + timedelta(seconds=3), stale) is None
    assert store.heartbeat_gate_job("k1", "worker-1", 1, T0 + timedelta(seconds=20))
    assert store.finish_gate_job("k1", "worker-1", 1, {"passed": True}, T0 + timedelta(seconds=25))
    done = store.get_gate_job("k1")
    assert done is not None and (done.state, done.result) == ("done", {"passed": True})
    assert done.finished_at == T0 + timedelta(seconds=25)
    assert store.claim_gate_job("worker-3", T0 + timedelta(minutes=5), stale) is not None  # k2
    assert store.get_gate_job("missing") is None


def test_a_gate_job_whose_worker_went_silent_is_taken_again_and_the_old_attempt_is_refused(
    store: StateStore,
) -> None:
    stale = timedelta(seconds=30)
    store.enqueue_gate_job("k", {}, T0)
    lost = store.claim_gate_job("worker-1", T0, stale)
    assert lost is not None
    assert store.claim_gate_job("worker-2", T0 + timedelta(seconds=29), stale) is None
    taken = store.claim_gate_job("worker-2", T0 + timedelta(seconds=31), stale)
    assert taken is not None and (taken.worker, taken.attempts) == ("worker-2", 2)
    assert not store.heartbeat_gate_job("k", "worker-1", 1, T0 + timedelta(seconds=32))
    assert not store.finish_gate_job("k", "worker-1", 1, {"late": True}, T0 + timedelta(seconds=33))
    assert store.finish_gate_job("k", "worker-2", 2, {"passed": True}, T0 + timedelta(seconds=40))
    job = store.get_gate_job("k")
    assert job is not None and job.result == {"passed": True} and job.attempts == 2


def test_workers_claiming_at_once_take_each_job_once(store: StateStore) -> None:
    stale = timedelta(minutes=5)
    for index in range(20):
        store.enqueue_gate_job(f"k{index:02}", {"index": index}, T0 + timedelta(seconds=index))
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        with store.connect() as mine:
            while (job := mine.claim_gate_job(name, T0 + timedelta(minutes=1), stale)) is not None:
                with lock:
                    claimed.append(job.key)
                assert mine.finish_gate_job(job.key, name, job.attempts, {}, T0 + stale)

    threads = [threading.Thread(target=work, args=(f"worker-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"k{index:02}" for index in range(20)]


def job(job_id: str, status: JobStatus, minute: int, **fields: object) -> QuantumJob:
    values: dict[str, Any] = {
        "env": "prod",
        "job_id": job_id,
        "app": "bell",
        "version": "1.0.0",
        "status": status,
        "created_at": T0 + timedelta(minutes=minute),
        "target": "ionq.simulator",
    }
    return QuantumJob(**(values | fields))


def test_quantum_jobs_upsert_filter_and_prune(store: StateStore) -> None:
    ended = T0 + timedelta(minutes=3, seconds=30)
    done = job(
        "j1",
        JobStatus.SUCCEEDED,
        1,
        began_at=T0 + timedelta(minutes=2),
        ended_at=ended,
        cost=0.125,
        currency="USD",
    )
    store.put_jobs([job("j1", JobStatus.WAITING, 1), job("j2", JobStatus.EXECUTING, 2)])
    store.put_jobs(
        [
            done,
            job("j3", JobStatus.FAILED, 3, version="1.1.0"),
            job("x", JobStatus.WAITING, 0, env="dev"),
        ]
    )
    store.put_jobs([])
    assert store.jobs("prod") == [done, store.jobs("prod")[1], store.jobs("prod")[2]]
    assert [j.job_id for j in store.jobs("prod")] == ["j1", "j2", "j3"]
    assert store.jobs("prod", "bell", "1.0.0")[0] == done  # every field read back exactly
    assert [j.job_id for j in store.jobs("prod", version="1.1.0")] == ["j3"]
    assert store.jobs("prod", "other") == []
    assert [j.job_id for j in store.jobs("prod", since=T0 + timedelta(minutes=2))] == ["j2", "j3"]
    assert [j.job_id for j in store.open_jobs("prod", 10)] == ["j2"]
    assert [j.job_id for j in store.open_jobs("dev", 1)] == ["x"]
    assert store.prune_jobs("prod", T0 + timedelta(minutes=2)) == 1
    assert [j.job_id for j in store.jobs("prod")] == ["j2", "j3"]
    assert [j.job_id for j in store.jobs("dev")] == ["x"]


def test_quantum_jobs_roll_back_with_their_transaction(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.put_jobs([job("j1", JobStatus.WAITING, 1)])
        raise RuntimeError("abort")
    assert store.jobs("prod") == []
