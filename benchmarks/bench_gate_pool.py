"""Gates reused by content, and gates on a pool of workers, against the same raw qdk work.

Ten distinct Q# programs (a GHZ state on 2 to 11 qubits, each with estimate and smoke
gates) stand for the programs of a fleet. The first row gives qrelease 100 releases that
share those 10 programs (each program in ten releases, as the same release does in several
environments and passes) and compares it with raw qdk running the 10 programs once each:
with gates kept by content, the 90 repeats should cost next to nothing. The second row runs
the 10 distinct programs' gates on a pool of two sandboxed workers (as the engine's gate
phase does) against the same gates on one worker: the pool should take at most 1/1.7 of
the time on two cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from benchmarks.bench_gates import raw_qdk_gates
from benchmarks.harness import Action, Context, Row, plain, ratio_row
from qrelease.model.manifest import Quantum
from qrelease.quantum.base import GateReport, ProgramSource

PROGRAMS = 10
RELEASES = 100
REUSE_TARGET = 1.2
POOL_TARGET = round(1 / 1.7, 2)  # the pool's time over one worker's: a speedup of 1.7x


def ghz(qubits: int) -> tuple[ProgramSource, Quantum]:
    """A GHZ program on `qubits` qubits, pinned to a local simulator, with every gate."""
    text = (
        f"namespace Ghz{qubits} {{ operation Main() : Result[] {{ use qs = Qubit[{qubits}];"
        f" H(qs[0]); for i in 1..{qubits - 1} {{ CNOT(qs[0], qs[i]); }} MResetEachZ(qs) }} }}"
    )
    zeros = "[" + ", ".join(["Zero"] * qubits) + "]"
    ones = "[" + ", ".join(["One"] * qubits) + "]"
    quantum = Quantum.model_validate(
        {
            "program": f"programs/ghz{qubits}.qs",
            "entry": f"Ghz{qubits}.Main()",
            "target": {"id": "qdk.sim.base", "profile": "Base"},
            "gates": {
                "estimate": {"max_physical_qubits": 1_000_000},
                "smoke": {"shots": 1000, "seed": qubits, "expect": {zeros: 0.5, ones: 0.5}},
            },
        }
    )
    return ProgramSource(f"manifests/ghz/programs/ghz{qubits}.qs", text), quantum


def programs() -> list[tuple[ProgramSource, Quantum]]:
    """The ten distinct programs."""
    return [ghz(qubits) for qubits in range(2, 2 + PROGRAMS)]


def _passed(report: GateReport) -> GateReport:
    """Fail loudly if the gates did not all pass (then both sides did different work)."""
    if not report.passed:
        raise AssertionError(f"gates did not pass: {report.failures()}")
    return report


def _raw(releases: list[tuple[ProgramSource, Quantum]]) -> Callable[[], Any]:
    """Reference: raw qdk runs each distinct program's gate work once, in this process."""

    def run() -> list[dict[str, Any]]:
        return [raw_qdk_gates(quantum, program.text) for program, quantum in releases]

    return run


def run(ctx: Context) -> list[Row]:
    """The reuse row and the pool row."""
    from qrelease.quantum.cache import GateCache
    from qrelease.quantum.qdk import QdkBackend
    from qrelease.quantum.sandbox import GateLimits, GatePool

    distinct = programs()
    one = GatePool(GateLimits(workers=1))
    two = GatePool(GateLimits(workers=2))
    try:

        @contextmanager
        def hundred_releases() -> Iterator[Action]:
            backend = QdkBackend(one, cache=GateCache())  # an empty cache each trial
            releases = [distinct[i % PROGRAMS] for i in range(RELEASES)]
            yield lambda: [_passed(backend.run_gates(p, q, None)) for p, q in releases]

        def on(pool: GatePool) -> Action:
            backend = QdkBackend(pool)  # no cache: every program's gates run
            workers = pool.workers

            def gates() -> list[GateReport]:
                with ThreadPoolExecutor(workers) as threads:
                    return [
                        _passed(r)
                        for r in threads.map(lambda pq: backend.run_gates(*pq, None), distinct)
                    ]

            return gates

        reuse = ratio_row(
            ctx,
            f"gates of {RELEASES} releases sharing {PROGRAMS} programs",
            REUSE_TARGET,
            hundred_releases,
            plain(_raw(distinct)),
            reference_name=f"raw qdk: the gate work of the {PROGRAMS} programs once each "
            "(fresh Context per program, in process)",
            notes=[
                "qrelease: QdkBackend with an empty GateCache per trial, one sandboxed "
                f"worker (started by the untimed warm-up), {RELEASES} run_gates calls; each "
                f"program's gates run once, the other {RELEASES - PROGRAMS} come from the "
                "cache (estimate re-judged against the running release)",
            ],
            warmup=True,
        )
        pool = ratio_row(
            ctx,
            f"gates of {PROGRAMS} programs on a pool of 2 workers vs one worker",
            POOL_TARGET,
            plain(on(two)),
            plain(on(one)),
            reference_name=f"the same {PROGRAMS} releases' gates on a pool of 1 worker",
            notes=[
                f"target {POOL_TARGET}x of one worker's time = a speedup of at least 1.7x; "
                f"{os.cpu_count()} CPUs; no cache; both pools' workers started by the "
                "untimed warm-up",
            ],
            warmup=True,
        )
    finally:
        one.close()
        two.close()
    return [reuse, pool]
