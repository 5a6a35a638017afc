"""The quantum backend Protocol and its value types, with an in-memory fake for unit tests.

The engine only sees `QuantumBackend`; `qdk.py` (local) and `azure.py` implement it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from qrelease.model.jobs import JobCursor, QuantumJob
from qrelease.model.manifest import Quantum, TargetProfile
from qrelease.model.vocabulary import Availability, GateOutcome


@dataclass(frozen=True)
class ProgramSource:
    """A program (Q#, OpenQASM 3 or Qiskit, by its path's suffix) as read from Git: its
    repo path (for diagnostics) and its text."""

    path: str
    text: str


@dataclass(frozen=True)
class Diagnostic:
    """One qdk error, located in the program's repo path where qdk gave a place.

    >>> Diagnostic("Qdk.Qsc.X", "bad", "manifests/a/p.qs:3:9").line
    3
    """

    code: str
    message: str
    where: str | None = None

    def render(self) -> str:
        """`path:line:col: code: message`, the way compilers and the CLI print problems."""
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.code}: {self.message}"

    @property
    def path(self) -> str | None:
        """The file (or `entry X`) the diagnostic points into, if it has a place."""
        return None if self.where is None else self.where.rsplit(":", 2)[0]

    @property
    def line(self) -> int | None:
        """The 1-based line the diagnostic points at, if it has a place."""
        if self.where is None:
            return None
        parts = self.where.rsplit(":", 2)
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


@dataclass(frozen=True)
class CompileOutcome:
    """Whether a program compiled for a profile: its diagnostics, or its QIR digest and size."""

    diagnostics: tuple[Diagnostic, ...] = ()
    qubits: int | None = None
    qir_sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True when the program compiled."""
        return not self.diagnostics


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate with a message a person can act on."""

    gate: str
    outcome: GateOutcome
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EstimateSummary:
    """The figures of a resource estimate that budgets and growth reports use."""

    physical_qubits: int
    runtime_ns: int


@dataclass(frozen=True)
class GateReport:
    """Every gate's result for one release, plus the compiled artifact when compilation worked."""

    results: tuple[GateResult, ...]
    qir: str | None = None
    qir_sha256: str | None = None
    estimate: EstimateSummary | None = None

    @property
    def passed(self) -> bool:
        """True when no gate Failed or was Inconclusive."""
        return all(r.outcome in (GateOutcome.PASSED, GateOutcome.SKIPPED) for r in self.results)

    def failures(self) -> list[GateResult]:
        """The gates that stop the release."""
        return [
            r for r in self.results if r.outcome in (GateOutcome.FAILED, GateOutcome.INCONCLUSIVE)
        ]


@dataclass(frozen=True)
class TargetStatus:
    """What is known of a quantum target right now."""

    target_id: str
    availability: Availability
    profile: TargetProfile | None = None
    qubits: int | None = None
    queue_time: timedelta | None = None
    message: str = ""


class GateRunner(Protocol):
    """Computes a release's gates (a sandbox, or the shared queue of gate jobs)."""

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """Profile, estimate and smoke gates for one release; never raises for a bad program."""
        ...


class QuantumBackend(Protocol):
    """Runs the quantum gates for a release and reports target availability."""

    def target_status(self, target_id: str) -> TargetStatus:
        """Availability, profile and size of a target."""
        ...

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """Profile, estimate and smoke gates for one release; never raises for a bad program."""
        ...


@dataclass(frozen=True)
class JobRead:
    """One bounded read of a workspace's job list: this environment's jobs and where to go on.

    `listed` counts every job the service listed (tagged for this environment or not).
    """

    jobs: list[QuantumJob]
    cursor: JobCursor
    listed: int


class JobReader(Protocol):
    """Where a quantum environment's jobs are read: its Azure Quantum workspace."""

    def read_jobs(self, cursor: JobCursor, limit: int) -> JobRead:
        """Up to `limit` jobs of the workspace's list from `cursor`, oldest created first."""
        ...

    def refresh_jobs(self, jobs: Sequence[QuantumJob], now: datetime) -> list[QuantumJob]:
        """The jobs as the service reports them now (one it no longer has is Cancelled)."""
        ...
