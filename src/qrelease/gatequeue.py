"""Quantum gates through a queue in the shared store: gate workers on other machines run them.

With several controllers on one PostgreSQL store, simulation-heavy gates need not run on
the controllers: `QueuedGates` (a `QuantumBackend`) turns each release's gates into a job
keyed by its content (program text and path, entry, target pin, gate spec, baseline, qdk
version) and waits for its result, and `qrelease worker` processes (`GateWorker`) take jobs
from the queue and run them in the local sandboxed qdk worker. The same content is one
job however many environments, passes or replicas ask, and a finished job answers them
all, so the same gates never run twice.

A worker beats while it runs a job; a job whose worker fell silent (killed, partitioned) is
taken by the next claim as a new attempt, and the silent one can no longer heartbeat or
finish it. Nothing depends on a worker being there: a job no worker has claimed within
`claim_after` (of being queued, or of its worker falling silent) is run by the waiting
controller itself, exactly as without a queue. A job that lost `MAX_ATTEMPTS` workers is
given up as Inconclusive.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any, Protocol

from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import (
    EstimateSummary,
    GateReport,
    GateResult,
    ProgramSource,
    QuantumBackend,
    TargetStatus,
)
from qrelease.store.base import GateJob, StateStore

MAX_ATTEMPTS = 3
FORMAT = 1
"""The job payload's format; part of the key, so a changed format never reuses old results."""


def _now() -> datetime:
    return datetime.now(UTC)


def qdk_versions() -> dict[str, str]:
    """The installed qdk packages and qiskit (their versions change gate results)."""
    found = {}
    for name in ("qdk", "qsharp", "qiskit"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def job_payload(
    program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
) -> dict[str, Any]:
    """Everything a worker needs to run the gates, and nothing else (it is also the key)."""
    return {
        "format": FORMAT,
        "program": {"path": program.path, "text": program.text},
        "quantum": quantum.model_dump(mode="json"),
        "baseline": asdict(baseline) if baseline is not None else None,
        "qdk": qdk_versions(),
    }


def job_key(payload: dict[str, Any]) -> str:
    """The content key of a payload: sha256 of its canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def decode_job(
    payload: dict[str, Any],
) -> tuple[ProgramSource, Quantum, EstimateSummary | None]:
    """A payload back into the arguments of `run_gates`."""
    program = ProgramSource(payload["program"]["path"], payload["program"]["text"])
    baseline = payload.get("baseline")
    return (
        program,
        Quantum.model_validate(payload["quantum"]),
        EstimateSummary(**baseline) if baseline else None,
    )


def encode_report(report: GateReport) -> dict[str, Any]:
    """A gate report as a job result (JSON)."""
    return {
        "results": [
            {"gate": r.gate, "outcome": str(r.outcome), "message": r.message, "details": r.details}
            for r in report.results
        ],
        "qir": report.qir,
        "qir_sha256": report.qir_sha256,
        "estimate": asdict(report.estimate) if report.estimate is not None else None,
    }


def decode_report(result: dict[str, Any]) -> GateReport:
    """A job result back into a gate report."""
    estimate = result.get("estimate")
    return GateReport(
        tuple(
            GateResult(r["gate"], GateOutcome(r["outcome"]), r["message"], r.get("details") or {})
            for r in result["results"]
        ),
        result.get("qir"),
        result.get("qir_sha256"),
        EstimateSummary(**estimate) if estimate else None,
    )


def _with_job(report: GateReport, job: GateJob, reused: bool) -> GateReport:
    """The report with each result naming the job that produced it."""
    note = {"gate_job": job.key[:16], "worker": job.worker, "reused": reused}
    results = tuple(
        GateResult(r.gate, r.outcome, r.message, {**r.details, **note}) for r in report.results
    )
    return GateReport(results, report.qir, report.qir_sha256, report.estimate)


def _given_up(job: GateJob) -> GateReport:
    message = (
        f"the gate job was taken by {job.attempts} workers that all fell silent "
        f"(last {job.worker}); not run again"
    )
    return GateReport((GateResult("profile", GateOutcome.INCONCLUSIVE, message),))


class StoreOpener(Protocol):
    """What opens a handle of the shared store for the calling thread (a `StateStore`'s
    `connect`, or the wiring's opener of a store URL)."""

    def connect(self) -> StateStore:
        """A handle of the store; the caller closes it."""
        ...


@dataclass
class QueuedGates:
    """A QuantumBackend whose gates run as jobs in the shared store (see the module doc).

    `local` answers target status and runs a job here when no worker claimed it within
    `claim_after`. Each call opens its own handle from `store`, so the gates of several
    releases may wait side by side on the plan's threads.
    """

    local: QuantumBackend
    store: StoreOpener
    name: str
    clock: Callable[[], datetime] = _now
    sleep: Callable[[float], None] = time.sleep
    poll: timedelta = timedelta(milliseconds=200)
    claim_after: timedelta = timedelta(seconds=10)
    stale: timedelta = timedelta(seconds=30)
    heartbeat: timedelta = timedelta(seconds=5)

    def target_status(self, target_id: str) -> TargetStatus:
        """From the local backend."""
        return self.local.target_status(target_id)

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """Queue the gates (or find them done) and wait for a worker, or run them here."""
        with self.store.connect() as store:
            return self._wait(store, program, quantum, baseline)

    def _wait(
        self,
        store: StateStore,
        program: ProgramSource,
        quantum: Quantum,
        baseline: EstimateSummary | None,
    ) -> GateReport:
        payload = job_payload(program, quantum, baseline)
        key = job_key(payload)
        asked = self.clock()
        job = store.enqueue_gate_job(key, payload, asked)
        while True:
            if job.state == "done" and job.result is not None:
                return _with_job(decode_report(job.result), job, reused=job.created_at < asked)
            if job.attempts >= MAX_ATTEMPTS and self._silent(job):
                return _given_up(job)
            if self._ours_to_run(job, asked):
                claimed = store.claim_gate_job(self.name, self.clock(), self.stale, key=key)
                if claimed is not None:
                    run_claimed(store, self.local, claimed, self.name, self.clock, self.heartbeat)
            else:
                self.sleep(self.poll.total_seconds())
            found = store.get_gate_job(key)
            assert found is not None
            job = found

    def _silent(self, job: GateJob) -> bool:
        beat = job.heartbeat_at
        return job.state == "running" and beat is not None and beat < self.clock() - self.stale

    def _ours_to_run(self, job: GateJob, asked: datetime) -> bool:
        """No worker claimed it for `claim_after`: since it was queued, or since its worker
        fell silent (a silent worker's job goes to the other workers first)."""
        now = self.clock()
        if job.state == "queued":
            return now - max(asked, job.created_at) >= self.claim_after
        beat = job.heartbeat_at
        return (
            job.state == "running"
            and beat is not None
            and now - max(asked, beat) >= self.stale + self.claim_after
        )


def run_claimed(
    store: StateStore,
    backend: QuantumBackend,
    job: GateJob,
    name: str,
    clock: Callable[[], datetime],
    heartbeat: timedelta,
) -> bool:
    """Run a claimed job's gates, beating meanwhile; True when its result was stored."""
    stop = threading.Event()

    def beat() -> None:
        with store.connect() as beat_store:  # a handle of this thread's own
            while not stop.wait(heartbeat.total_seconds()):
                if not beat_store.heartbeat_gate_job(job.key, name, job.attempts, clock()):
                    return  # taken again: our result will be refused

    beating = threading.Thread(target=beat, name=f"gate-job-{job.key[:8]}", daemon=True)
    beating.start()
    try:
        report = backend.run_gates(*decode_job(job.payload))
    except Exception as error:  # a worker bug must not leave the job running forever
        message = f"the gate worker failed: {type(error).__name__}: {error}"
        report = GateReport((GateResult("profile", GateOutcome.INCONCLUSIVE, message),))
    finally:
        stop.set()
        beating.join()
    return store.finish_gate_job(job.key, name, job.attempts, encode_report(report), clock())


@dataclass
class GateWorker:
    """A `qrelease worker`'s work: claims gate jobs from the store and runs them, one per
    `run_once` (the process's loop, signals and polling are in `daemon/worker.py`)."""

    store: StateStore
    backend: QuantumBackend
    name: str = f"worker@{socket.gethostname()}"
    clock: Callable[[], datetime] = _now
    stale: timedelta = timedelta(seconds=30)
    heartbeat: timedelta = timedelta(seconds=5)
    done: int = 0
    refused: int = 0
    """Jobs whose result was refused: another worker took them over meanwhile."""

    def run_once(self, on_claim: Callable[[GateJob], None] | None = None) -> GateJob | None:
        """Claim and run one job (told to `on_claim` first); the job, or None when the
        queue had none."""
        job = self.store.claim_gate_job(self.name, self.clock(), self.stale)
        if job is None:
            return None
        if on_claim is not None:
            on_claim(job)
        if run_claimed(self.store, self.backend, job, self.name, self.clock, self.heartbeat):
            self.done += 1
        else:
            self.refused += 1
        return job
