"""An in-memory quantum backend for unit tests of the engine and planner.

It fakes our own boundary (the `QuantumBackend` Protocol), never qdk's internals; the real
backend is tested against real qdk in tests/test_quantum_qdk.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.quantum.base import (
    EstimateSummary,
    GateReport,
    GateResult,
    ProgramSource,
    QuantumBackend,
    TargetStatus,
)


@dataclass
class MemoryQuantum(QuantumBackend):
    """Gates that pass unless told otherwise; targets Available unless told otherwise."""

    failing_programs: dict[str, str] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)
    physical_qubits: int = 1000
    calls: list[str] = field(default_factory=list)

    def target_status(self, target_id: str) -> TargetStatus:
        """The configured availability (Available by default)."""
        return TargetStatus(target_id, self.availability.get(target_id, Availability.AVAILABLE))

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """Passed gates, or a Failed profile gate for a program listed in `failing_programs`."""
        self.calls.append(program.path)
        if program.path in self.failing_programs:
            failed = GateResult("profile", GateOutcome.FAILED, self.failing_programs[program.path])
            return GateReport((failed,))
        qir = f"; QIR of {program.path} for {quantum.target.profile}\n"
        estimate = EstimateSummary(self.physical_qubits, 1000)
        results = tuple(
            GateResult(g, GateOutcome.PASSED, "ok") for g in ("profile", "estimate", "smoke")
        )
        digest = hashlib.sha256(qir.encode()).hexdigest()
        return GateReport(results, qir=qir, qir_sha256=digest, estimate=estimate)
