"""Gate results kept by content: computed once, reused, and traced to their first event."""

from __future__ import annotations

import threading
from pathlib import Path

from qrelease.model.events import EventDraft
from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult, ProgramSource
from qrelease.quantum.cache import GateCache, gate_key
from qrelease.quantum.reuse import GateReuse
from qrelease.store.memory import MemoryStore

PROGRAM = ProgramSource("manifests/a/programs/p.qs", "operation Main() : Unit {}")


def quantum(seed: int = 1, budget: int = 1000) -> Quantum:
    return Quantum.model_validate(
        {
            "program": "programs/p.qs",
            "entry": "Main()",
            "target": {"id": "ionq.simulator", "profile": "Base"},
            "gates": {
                "estimate": {"max_physical_qubits": budget},
                "smoke": {"seed": seed, "expect": {"()": 1.0}},
            },
        }
    )


def report(qubits: int = 450) -> GateReport:
    results = (
        GateResult("profile", GateOutcome.PASSED, "compiled", {}),
        GateResult("estimate", GateOutcome.PASSED, "fits", {"seconds": 0.5}),
        GateResult("smoke", GateOutcome.PASSED, "TVD 0", {}),
    )
    return GateReport(results, "; qir", "f" * 64, EstimateSummary(qubits, 4000))


class Counting:
    """A compute function that counts its calls (and can be made to wait)."""

    def __init__(self, result: GateReport, gate: threading.Event | None = None) -> None:
        self.calls = 0
        self.result = result
        self.gate = gate

    def __call__(self) -> GateReport:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        return self.result


def test_the_same_content_is_computed_once_and_the_key_covers_what_decides_it(
    tmp_path: Path,
) -> None:
    reuse = GateReuse(GateCache(tmp_path))
    compute = Counting(report())
    first = reuse.run(PROGRAM, quantum(), None, {"backend": "qdk"}, compute)
    again = reuse.run(PROGRAM, quantum(), None, {"backend": "qdk"}, compute)
    assert compute.calls == 1 and (reuse.computed, reuse.reused) == (1, 1)
    assert first.results == again.results
    key = first.results[0].details["cache_key"]
    assert key == gate_key(PROGRAM, quantum(), {"backend": "qdk"})
    assert key != gate_key(PROGRAM, quantum(seed=2), {"backend": "qdk"})  # the seed
    assert key != gate_key(PROGRAM, quantum(), {"backend": "qdk", "noise": "x"})  # the noise
    edited = ProgramSource(PROGRAM.path, PROGRAM.text + " ")
    assert key != gate_key(edited, quantum(), {"backend": "qdk"})  # the program text
    # a new process (a new cache object on the same directory) finds it on disk
    fresh = GateReuse(GateCache(tmp_path))
    fresh.run(PROGRAM, quantum(), None, {"backend": "qdk"}, compute)
    assert compute.calls == 1


def test_requests_for_the_same_content_wait_for_the_first() -> None:
    reuse = GateReuse(GateCache())
    release = threading.Event()
    compute = Counting(report(), release)
    results: list[GateReport] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                reuse.run(PROGRAM, quantum(), None, {"backend": "qdk"}, compute)
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert compute.calls == 1 and len(results) == 3


def test_the_estimate_is_judged_against_each_environments_running_release() -> None:
    reuse = GateReuse(GateCache())
    compute = Counting(report(450))
    grown = reuse.run(PROGRAM, quantum(), EstimateSummary(300, 4000), {}, compute)
    same = reuse.run(PROGRAM, quantum(), EstimateSummary(450, 4000), {}, compute)
    assert "(+50.0% vs baseline)" in grown.results[1].message
    assert "(+0.0% vs baseline)" in same.results[1].message
    assert compute.calls == 1
    tight = reuse.run(PROGRAM, quantum(budget=400), None, {}, Counting(report(450)))
    assert tight.results[1].outcome is GateOutcome.FAILED  # another budget is another key


def test_a_stopped_sandbox_is_not_kept() -> None:
    reuse = GateReuse(GateCache())
    stopped = GateReport((GateResult("sandbox", GateOutcome.FAILED, "ran too long"),))
    compute = Counting(stopped)
    reuse.run(PROGRAM, quantum(), None, {}, compute)
    reuse.run(PROGRAM, quantum(), None, {}, compute)
    assert compute.calls == 2


def test_a_repeated_result_is_recorded_as_reused_from_its_first_event() -> None:
    cache = GateCache()
    key = GateReuse(cache).run(PROGRAM, quantum(), None, {}, Counting(report())).results[0]
    details = {"gate": "smoke", "message": "TVD 0", "cache_key": key.details["cache_key"]}
    store = MemoryStore()

    def gate_event(env: str) -> EventDraft:
        return EventDraft(
            env=env,
            app="a",
            action="gate",
            to_version="1.0.0",
            revision="r1",
            reason="smoke: TVD 0",
            outcome="Passed",
            details=details,
        )

    (first,) = cache.annotate([gate_event("dev")])
    assert "reused_from" not in first.details
    recorded = store.append(first)
    cache.record_first([recorded])
    (second,) = cache.annotate([gate_event("staging")])
    pointer = {"seq": recorded.seq, "env": "dev", "app": "a", "version": "1.0.0", "revision": "r1"}
    assert second.details["reused_from"] == pointer
    assert second.reason == f"smoke: TVD 0 (reused from dev/a 1.0.0, event {recorded.seq})"
    cache.record_first([store.append(second)])  # a reuse never becomes the first
    assert cache.annotate([gate_event("prod")])[0].details["reused_from"] == pointer
