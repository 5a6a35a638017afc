"""`qrelease worker`: a process that runs quantum gate jobs from the shared store.

Controllers with `[gates] queue = true` put each release's gates into the store as a job
keyed by content (`gatequeue.py`); any number of workers, on any machine that reaches the
store, claim them (`SKIP LOCKED` on PostgreSQL) and run them in their own sandboxed qdk
workers, beating while they run. A worker killed mid-job simply stops beating: the next
claim takes the job again as a new attempt, and the late worker's result is refused.

SIGTERM or SIGINT stops the worker after the job in hand (its result is worth keeping); a
second signal exits at once, which leaves that job to be taken again.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import TextIO

from qrelease.config import ControllerConfig
from qrelease.daemon.logs import make_logger
from qrelease.gatequeue import GateWorker
from qrelease.store.base import GateJob
from qrelease.wiring import open_state


def _default_name() -> str:
    return f"worker@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerOptions:
    """How one `qrelease worker` runs: its name in each job's record, how often an empty
    queue is polled, and when it stops by itself (`once`: when the queue is empty;
    `max_jobs`: after that many jobs)."""

    name: str = field(default_factory=_default_name)
    poll: timedelta = timedelta(seconds=1)
    once: bool = False
    max_jobs: int | None = None


def run_worker(
    config: ControllerConfig,
    store_url: str | None,
    options: WorkerOptions,
    stop: threading.Event | None = None,
    stream: TextIO | None = None,
) -> int:
    """Work the gate queue until stopped; returns the exit code."""
    from qrelease.quantum.qdk import QdkBackend
    from qrelease.quantum.sandbox import GatePool

    log = make_logger(config.log_level, stream=stream or sys.stderr)
    stop = stop or threading.Event()
    main = threading.current_thread() is threading.main_thread()
    told: list[str] = []
    restore = _stop_on_signals(stop, told.append) if main else None
    backend = QdkBackend(GatePool(config.gates.limits()))

    def claimed(job: GateJob) -> None:
        program = job.payload.get("program", {}).get("path")
        target = job.payload.get("quantum", {}).get("target", {}).get("id")
        log.info(
            "gate job claimed",
            job=job.key[:16],
            attempt=job.attempts,
            program=program,
            target=target,
        )

    try:
        with open_state(config.state_dir, store_url) as store:
            gates = config.gates
            worker = GateWorker(
                store,
                backend,
                options.name,
                stale=gates.stale,
                heartbeat=gates.heartbeat,
            )
            log.info("worker started", worker=options.name, sandboxes=backend.workers)
            while not stop.is_set():
                job = worker.run_once(on_claim=claimed)
                if job is not None:
                    log.info(
                        "gate job finished",
                        job=job.key[:16],
                        done=worker.done,
                        refused=worker.refused,
                    )
                    if (
                        options.max_jobs is not None
                        and worker.done + worker.refused >= options.max_jobs
                    ):
                        break
                elif options.once:
                    break
                else:
                    stop.wait(options.poll.total_seconds())
            log.info(
                "worker stopped",
                worker=options.name,
                done=worker.done,
                refused=worker.refused,
                signal=told[0] if told else None,
            )
    finally:
        backend.close()
        if restore is not None:
            restore()
    return 0


def _stop_on_signals(stop: threading.Event, told: Callable[[str], None]) -> Callable[[], None]:
    """SIGTERM/SIGINT set `stop` (the job in hand finishes); a second one exits at once.

    The handler only notes the signal (`told` gets its name); the loop does the rest.
    """
    signals = (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)  # the job in hand is left to be taken again
        stop.set()
        told(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, handler) for signum in signals}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
