"""Gates run once per content: the same release in another environment or pass reuses them.

A release's gates depend on its program, entry, pin and gate settings, and on the qdk that
runs them; not on the environment. So a result is kept under its content key (`gate_key`)
and handed out again; every result names its key, and when the engine records it after the
first time, the audit event says `reused_from`: the event that first recorded it
(`GateCache.annotate`). Requests for the same key that arrive while the first is still
running wait for it rather than run the gates twice. The one environment-dependent part,
the estimate's growth against the release running there, is judged again on every use. A
gate the sandbox had to stop is not a fact about the program and is never kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult, ProgramSource
from qrelease.quantum.cache import GateCache, gate_key
from qrelease.quantum.gates import judge_estimate


class GateReuse:
    """Answers gate requests from the cache, computing each distinct one once."""

    def __init__(self, cache: GateCache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._running: dict[str, Future[GateReport]] = {}
        self.computed = 0
        self.reused = 0

    def run(
        self,
        program: ProgramSource,
        quantum: Quantum,
        baseline: EstimateSummary | None,
        identity: Mapping[str, Any],
        compute: Callable[[], GateReport],
    ) -> GateReport:
        """The gates of one release, from the cache when the same content ran before."""
        key = gate_key(program, quantum, identity)
        cached = self.cache.get(key)
        if cached is not None:
            self.reused += 1
            return _with_baseline(_keyed(cached.report, key), quantum, baseline)
        with self._lock:
            running = self._running.get(key)
            owner = running is None
            if running is None:
                running = self._running[key] = Future()
        if not owner:
            self.reused += 1
            return _with_baseline(_keyed(running.result(), key), quantum, baseline)
        try:
            report = compute()
            if not any(result.gate == "sandbox" for result in report.results):
                self.cache.put(key, report)
            self.computed += 1
            running.set_result(report)
        except BaseException as error:
            running.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._running[key]
        return _with_baseline(_keyed(report, key), quantum, baseline)


def _keyed(report: GateReport, key: str) -> GateReport:
    """The report with every result naming its cache key (so its first event can be found)."""
    results = tuple(
        GateResult(r.gate, r.outcome, r.message, r.details | {"cache_key": key})
        for r in report.results
    )
    return GateReport(results, report.qir, report.qir_sha256, report.estimate)


def _with_baseline(
    report: GateReport, quantum: Quantum, baseline: EstimateSummary | None
) -> GateReport:
    """The report with its estimate judged against this environment's running release."""
    budget = quantum.gates.estimate
    if budget is None or report.estimate is None:
        return report
    results = []
    for result in report.results:
        if result.gate == "estimate" and result.outcome is not GateOutcome.SKIPPED:
            judged = judge_estimate(report.estimate, budget, baseline)
            kept = {k: v for k, v in result.details.items() if k not in judged.details}
            result = GateResult("estimate", judged.outcome, judged.message, kept | judged.details)
        results.append(result)
    return GateReport(tuple(results), report.qir, report.qir_sha256, report.estimate)
