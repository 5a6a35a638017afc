"""`qrelease worker` processes with the real qdk on a real PostgreSQL.

Two worker processes take gate jobs from the store; the one running a long job is killed
with SIGKILL mid-gate, and the other takes the job over once the dead one's heartbeats stop.
The asking side is the controller's `QueuedGates`, told never to run a job itself, so every
result must come from a worker; the in-memory backend it holds counts any run it makes.
"""

from __future__ import annotations

import os

os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from qrelease.gatequeue import QueuedGates, job_key, job_payload
from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import GateReport, ProgramSource
from qrelease.quantum.memory import MemoryQuantum
from qrelease.store import StateStore, open_store
from tests.helpers import PROJECT_ROOT
from tests.helpers.daemon import wait_for

pytestmark = pytest.mark.slow

BELL_PATH = "manifests/bell-service/programs/bell.qs"
BELL = ProgramSource(BELL_PATH, (PROJECT_ROOT / BELL_PATH).read_text())
HEARTBEAT = timedelta(seconds=1)
STALE = HEARTBEAT * 6  # what [gates] heartbeat = "1s" gives the workers
CONFIG = """
log_level = "info"

[gates]
workers = 1
heartbeat = "1s"
"""


def bell(shots: int, seed: int) -> Quantum:
    """The Bell example's gates with a smoke test of `shots` (more shots, a longer job)."""
    expect = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}
    smoke = {"shots": shots, "seed": seed, "expect": expect}
    return Quantum.model_validate(
        {
            "program": "programs/bell.qs",
            "entry": "Bell.Main()",
            "target": {"id": "ionq.simulator", "profile": "Base"},
            "gates": {"smoke": smoke},
        }
    )


@dataclass
class Worker:
    """One `qrelease worker` process with its own state dir and log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def text(self) -> str:
        return self.log.read_text()


def asked(run: Callable[[], GateReport]) -> Future[GateReport]:
    """Ask for gates on a daemon thread: a waiting controller never blocks the test's end."""
    future: Future[GateReport] = Future()

    def ask() -> None:
        try:
            future.set_result(run())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=ask, daemon=True).start()
    return future


def claimed_by(store: StateStore, key: str, workers: dict[str, Worker]) -> str | None:
    """The worker running the job with `key`, once one does (both must still be alive)."""
    for worker in workers.values():
        code = worker.process.poll()
        assert code is None, f"{worker.name} exited with {code}: {worker.text()}"
    job = store.get_gate_job(key)
    return job.worker if job is not None and job.state == "running" else None


@pytest.fixture
def workers(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, Worker]]:
    started: dict[str, Worker] = {}
    config = tmp_path / "controller.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "QDK_PYTHON_TELEMETRY": "none"}
    for name in ("worker-1", "worker-2"):
        log = tmp_path / f"{name}.log"
        argv = [sys.executable, "-m", "qrelease", "worker", "--name", name, "--poll", "0.1"]
        argv += ["--state", str(tmp_path / name), "--config", str(config)]
        argv += ["--store", postgres_url]
        with log.open("w") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        started[name] = Worker(name, process, log)
    try:
        yield started
    finally:
        for worker in started.values():
            if worker.process.poll() is None:
                worker.process.terminate()
                worker.process.wait(60)


def test_a_worker_killed_mid_gate_leaves_its_job_to_the_other(
    workers: dict[str, Worker], postgres_url: str
) -> None:
    here = MemoryQuantum()  # the controller side: it must never run a job itself
    long_job, short_jobs = bell(100_000, seed=1), [bell(2_000, seed=s) for s in (2, 3, 4)]
    long_key = job_key(job_payload(BELL, long_job, None))
    with open_store(postgres_url) as store:
        gates = QueuedGates(
            here,
            store,
            "controller-a",
            claim_after=timedelta(hours=1),
            stale=STALE,
            heartbeat=HEARTBEAT,
            poll=timedelta(milliseconds=50),
        )
        first = asked(lambda: gates.run_gates(BELL, long_job, None))
        running = wait_for(  # the workers start qdk first: slow on a busy host
            "a worker to claim the long job", lambda: claimed_by(store, long_key, workers), 300
        )
        victim = workers[running]
        victim.kill()  # mid-gate: the job is running and its worker is gone
        survivor = workers[next(name for name in workers if name != running)]
        others = [asked(lambda q=q: gates.run_gates(BELL, q, None)) for q in short_jobs]
        reports = [first.result(timeout=600)] + [f.result(timeout=600) for f in others]
        job = store.get_gate_job(long_key)

    assert here.calls == []  # every job ran on a worker
    for report in reports:
        assert _outcomes(report) == {"profile": "Passed", "estimate": "Skipped", "smoke": "Passed"}
    assert {r.details["worker"] for r in reports[0].results} == {survivor.name}
    assert job is not None and job.state == "done"
    assert (job.attempts, job.worker) == (2, survivor.name)  # taken again once, not lost
    assert victim.process.returncode == -signal.SIGKILL
    assert survivor.text().count('"event": "gate job finished"') >= 1


def test_a_stopped_worker_finishes_the_job_in_hand(
    workers: dict[str, Worker], postgres_url: str
) -> None:
    here = MemoryQuantum()
    job = bell(50_000, seed=11)
    key = job_key(job_payload(BELL, job, None))
    with open_store(postgres_url) as store:
        gates = QueuedGates(
            here, store, "controller-a", claim_after=timedelta(hours=1), stale=STALE
        )
        answer = asked(lambda: gates.run_gates(BELL, job, None))
        name = wait_for("a worker to claim the job", lambda: claimed_by(store, key, workers), 300)
        workers[name].process.terminate()  # SIGTERM: finish this job, take no other
        report = answer.result(timeout=600)
    assert workers[name].process.wait(120) == 0
    assert here.calls == [] and {r.details["worker"] for r in report.results} == {name}
    assert '"signal": "SIGTERM"' in workers[name].text()


def _outcomes(report: GateReport) -> dict[str, str]:
    return {r.gate: str(GateOutcome(r.outcome)) for r in report.results}
