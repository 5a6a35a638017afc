"""Gates as jobs in the shared store: one run per content, workers that die, no worker at all.

Real stores (SQLite file, PostgreSQL) and the in-memory quantum backend, which counts the
gate runs; time is a manual clock that the waiting side's `sleep` moves. The gate worker
processes with real qdk are tested in tests/integration/test_gate_workers.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qrelease.gatequeue import (
    MAX_ATTEMPTS,
    GateWorker,
    QueuedGates,
    decode_report,
    encode_report,
    job_key,
    job_payload,
)
from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, ProgramSource
from qrelease.quantum.memory import MemoryQuantum
from qrelease.store import StateStore, open_store
from tests.helpers.clock import ManualClock
from tests.helpers.daemon import wait_for

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
PROGRAM = ProgramSource("manifests/bell/programs/bell.qs", "operation Main() : Unit {}")
QUANTUM = Quantum.model_validate(
    {
        "program": "programs/bell.qs",
        "entry": "Bell.Main()",
        "target": {"id": "ionq.simulator", "profile": "Base"},
    }
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    location = (
        tmp_path / "state" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    with open_store(location) as opened:
        yield opened


def queued(
    store: StateStore, clock: ManualClock, quantum: MemoryQuantum, name: str, **kw: object
) -> QueuedGates:
    return QueuedGates(
        quantum,
        store,
        name,
        clock=clock,
        sleep=lambda s: clock.advance(timedelta(seconds=s)),
        **kw,  # type: ignore[arg-type]
    )


def test_the_payload_key_covers_everything_that_changes_a_result() -> None:
    base = job_key(job_payload(PROGRAM, QUANTUM, None))
    assert base == job_key(job_payload(PROGRAM, QUANTUM, None))
    other_text = ProgramSource(PROGRAM.path, PROGRAM.text + " ")
    assert job_key(job_payload(other_text, QUANTUM, None)) != base
    seeded = QUANTUM.model_copy(update={"entry": "Bell.Other()"})
    assert job_key(job_payload(PROGRAM, seeded, None)) != base
    assert job_key(job_payload(PROGRAM, QUANTUM, EstimateSummary(10, 20))) != base
    report = MemoryQuantum().run_gates(PROGRAM, QUANTUM, None)
    assert decode_report(encode_report(report)) == report


def test_a_worker_runs_the_job_and_every_later_asker_reuses_its_result(store: StateStore) -> None:
    clock = ManualClock(T0)
    controller_side, worker_side = MemoryQuantum(), MemoryQuantum()
    worker = GateWorker(store, worker_side, "worker-1", clock=clock)

    def sleep(seconds: float) -> None:  # while the controller waits, the worker works
        worker.run_once()
        clock.advance(timedelta(seconds=seconds))

    gates = QueuedGates(controller_side, store, "controller-a", clock=clock, sleep=sleep)
    first = gates.run_gates(PROGRAM, QUANTUM, None)
    assert first.passed and worker_side.calls == [PROGRAM.path] and controller_side.calls == []
    assert {r.details["worker"] for r in first.results} == {"worker-1"}
    assert not first.results[0].details["reused"]
    clock.advance(timedelta(minutes=5))
    with store.connect() as other:  # another replica, another environment, same content
        again = QueuedGates(MemoryQuantum(), other, "controller-b", clock=clock).run_gates(
            PROGRAM, QUANTUM, None
        )
    assert again.qir == first.qir and again.results[0].details["reused"]
    assert worker_side.calls == [PROGRAM.path]  # the gates ran once


def test_without_a_worker_the_controller_runs_its_own_job(store: StateStore) -> None:
    clock = ManualClock(T0)
    here = MemoryQuantum()
    report = queued(store, clock, here, "controller-a").run_gates(PROGRAM, QUANTUM, None)
    assert report.passed and here.calls == [PROGRAM.path]
    assert clock() >= T0 + timedelta(seconds=10)  # it waited claim_after for a worker first
    assert {r.details["worker"] for r in report.results} == {"controller-a"}


def test_a_job_whose_worker_fell_silent_is_run_again_and_the_late_result_refused(
    store: StateStore,
) -> None:
    clock = ManualClock(T0)
    payload = job_payload(PROGRAM, QUANTUM, None)
    store.enqueue_gate_job(job_key(payload), payload, T0)
    lost = store.claim_gate_job("worker-dead", T0, timedelta(seconds=30))  # then killed
    assert lost is not None
    rescuer = GateWorker(store, MemoryQuantum(), "worker-2", clock=clock)
    assert not rescuer.run_once()  # still within its heartbeat allowance
    clock.advance(timedelta(seconds=31))
    assert rescuer.run_once() and rescuer.done == 1
    assert not store.finish_gate_job(
        lost.key, "worker-dead", lost.attempts, {"results": []}, clock()
    )
    job = store.get_gate_job(lost.key)
    assert job is not None and job.worker == "worker-2" and job.attempts == 2
    report = queued(store, clock, MemoryQuantum(), "controller-a").run_gates(PROGRAM, QUANTUM, None)
    assert report.passed and report.results[0].details["worker"] == "worker-2"


def test_a_job_that_lost_every_attempt_is_inconclusive(store: StateStore) -> None:
    clock = ManualClock(T0)
    payload = job_payload(PROGRAM, QUANTUM, None)
    store.enqueue_gate_job(job_key(payload), payload, T0)
    for attempt in range(MAX_ATTEMPTS):
        assert store.claim_gate_job(f"worker-{attempt}", clock(), timedelta(seconds=30))
        clock.advance(timedelta(seconds=31))
    here = MemoryQuantum()
    report = queued(store, clock, here, "controller-a").run_gates(PROGRAM, QUANTUM, None)
    assert [r.outcome for r in report.results] == [GateOutcome.INCONCLUSIVE]
    assert f"taken by {MAX_ATTEMPTS} workers" in report.results[0].message
    assert here.calls == []


class BlockingQuantum(MemoryQuantum):
    """Gates that run until the test lets them finish."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def run_gates(self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None):  # type: ignore[no-untyped-def]
        self.started.set()
        self.release.wait(10)
        return super().run_gates(program, quantum, baseline)


def test_a_working_worker_beats_and_keeps_its_job(store: StateStore) -> None:
    clock = ManualClock(T0)
    payload = job_payload(PROGRAM, QUANTUM, None)
    store.enqueue_gate_job(job_key(payload), payload, T0)
    slow = BlockingQuantum()
    done: list[int] = []

    def work() -> None:  # a worker process of its own: its own store handle, on its thread
        with store.connect() as mine:
            busy = GateWorker(
                mine, slow, "worker-1", clock=clock, heartbeat=timedelta(milliseconds=20)
            )
            busy.run_once()
            done.append(busy.done)

    running = threading.Thread(target=work)
    running.start()
    assert slow.started.wait(10)
    clock.advance(timedelta(minutes=5))  # long past the staleness bound, but it beats
    wait_for(
        "a heartbeat at the new time",
        lambda: (
            (job := store.get_gate_job(job_key(payload))) is not None
            and job.heartbeat_at == clock()
        ),
    )
    assert not GateWorker(store, MemoryQuantum(), "worker-2", clock=clock).run_once()
    slow.release.set()
    running.join(10)
    assert done == [1]
