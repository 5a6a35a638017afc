"""The local quantum backend: compile, estimate and simulate Q#, OpenQASM 3 and Qiskit
programs with the real qdk.

This is the only module that imports qdk, so the SDK's untyped surface and its quirks stay
here. The controller runs the gates in a worker process (`sandbox.py`), which calls
`run_gates_here`. qdk's interpreter is a native object that must be created, used and
dropped on one thread ("unsendable"), so in-process qdk work runs on `_QDK_THREAD`, a
single thread that also serialises releases; each release gets its own fresh `qdk.Context`,
never the global interpreter. A bad program never raises: each qdk error becomes a Failed
gate naming the qdk error code and the place in the program,
`manifests/<app>/programs/<file>.qs:LINE:COLUMN`.

An OpenQASM 3 program is parsed first with qdk's parser, which has no file system (only
the standard includes resolve), then imported into the session as one operation
(`qasm_import.program()`) that every gate compiles, estimates and runs exactly like a Q#
entry. A Qiskit program is a Python module: it is executed only inside the sandboxed gate
worker (`qiskit_to_openqasm` refuses to run anywhere else), its circuit is converted to
OpenQASM 3 by qdk's Qiskit backend, and from there it is gated as OpenQASM.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import re
import threading
import time
import traceback
import types
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import qdk
from qdk import qsharp
from qdk.estimator import EstimatorError

from qrelease.model.manifest import EstimateGate, ProgramKind, Quantum, SmokeGate, TargetProfile
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.quantum import catalog
from qrelease.quantum.base import (
    CompileOutcome,
    Diagnostic,
    EstimateSummary,
    GateReport,
    GateResult,
    ProgramSource,
    TargetStatus,
)
from qrelease.quantum.cache import GateCache, qdk_version, qiskit_version
from qrelease.quantum.gates import canonical_key, choose_estimate, judge_estimate, judge_smoke
from qrelease.quantum.noise import (
    MEASUREMENTS,
    ONE_QUBIT_GATES,
    TWO_QUBIT_GATES,
    NoiseModel,
    NoiseProblem,
    resolve_noise,
)
from qrelease.quantum.noise import describe as describe_noise
from qrelease.quantum.power import shot_blocks
from qrelease.quantum.reuse import GateReuse
from qrelease.quantum.sandbox import GateSandbox, Sandbox

_QDK_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qrelease-qdk")
_CODE = re.compile(r"^\s*(Qdk\.[A-Za-z0-9_.]+)", re.MULTILINE)
_SUMMARY = re.compile(r"^\s*[x×]\s+(.+)$", re.MULTILINE)
_DETAIL = re.compile(r"^\s*(?:`->|╰─▶)\s+(.+)$", re.MULTILINE)
_HELP = re.compile(r"^\s*help:\s+(.+(?:\n[ \t]+\S.*)*)", re.MULTILINE)
_LOCATION = re.compile(r"\[([^\[\]\s]+):(\d+):(\d+)\]")
_QUBITS = re.compile(r'"required_num_qubits"="(\d+)"')
_SOURCE_LABEL = "line_0"
_QASM_NAME = "program"
QASM_ENTRY = f"qasm_import.{_QASM_NAME}()"
"""The operation an imported OpenQASM program becomes (ProgramType.File: it allocates its
own qubits and returns its output bits)."""
_NO_SEARCH_PATH = "/nonexistent/qrelease-no-includes"
_QASM_LABELS = (f"{_NO_SEARCH_PATH}/{_QASM_NAME}.qasm", f"./{_QASM_NAME}.qasm")
IN_GATE_WORKER = False
"""Set by the gate worker process; Qiskit programs are executed nowhere else."""
_FRONTIER_SHOWN = 8
_QDK_VERSION = qdk_version()
_T = TypeVar("_T")


class QdkFailure(Exception):
    """A qdk call failed; carries what the user needs to fix the program."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.render() for d in diagnostics))
        self.diagnostics = diagnostics


def diagnostics_of(error_text: str, program_path: str, entry: str) -> list[Diagnostic]:
    """Every diagnostic in a qdk error message, with `line_0` mapped to the program path."""
    starts = [match.start() for match in _CODE.finditer(error_text)]
    if not starts:
        first_line = next((line for line in error_text.splitlines() if line.strip()), "")
        return [Diagnostic("qdk", first_line.strip() or "unknown error")]
    ends = [*starts[1:], len(error_text)]
    blocks = [error_text[start:end] for start, end in zip(starts, ends, strict=True)]
    return [_diagnostic(block, program_path, entry) for block in blocks]


def _diagnostic(block: str, program_path: str, entry: str) -> Diagnostic:
    """One diagnostic from its block of miette-rendered text."""
    code = _CODE.search(block)
    summary = _SUMMARY.search(block)
    detail = _DETAIL.search(block)
    hint = _HELP.search(block)
    parts = [m.group(1).strip() for m in (summary, detail) if m]
    message = ": ".join(parts) or "error"
    if hint:
        message += f" (help: {' '.join(hint.group(1).split())})"
    return Diagnostic(code.group(1) if code else "qdk", message, _where(block, program_path, entry))


def _where(block: str, program_path: str, entry: str) -> str | None:
    """`path:line:col` for a diagnostic's first labelled span, if it has one."""
    location = _LOCATION.search(block)
    if location is None:
        return None
    label, line, column = location.groups()
    if label == _SOURCE_LABEL or label in _QASM_LABELS:
        label = program_path
    elif label == "<entry>":
        label = f"entry {entry}"
    return f"{label}:{line}:{column}"


def _is_qdk_failure(error: BaseException) -> bool:
    """True for errors a bad program can cause in qdk, including Rust panics."""
    if isinstance(error, Exception | EstimatorError):
        return True
    return type(error).__name__ == "PanicException"


def _guarded(step: Callable[[], _T], program: ProgramSource, entry: str) -> _T:
    """Run one qdk step, turning anything a bad program can cause into a QdkFailure."""
    try:
        return step()
    except BaseException as error:
        if not _is_qdk_failure(error):
            raise
        if type(error).__name__ == "PanicException":
            internal = Diagnostic("qdk.panic", f"qdk internal error: {str(error).strip()}")
            raise QdkFailure([internal]) from error
        raise QdkFailure(diagnostics_of(str(error), program.path, entry)) from error


class _Session:
    """A fresh qdk interpreter for one release; lives and dies on the qdk thread."""

    def __init__(self, profile: TargetProfile) -> None:
        self.started = time.perf_counter()
        qdk_profile = getattr(qsharp.TargetProfile, profile.value)
        self._context: Any = qdk.Context(target_profile=qdk_profile)

    def load(self, source: str) -> None:
        """Evaluate the program's declarations, capturing any output instead of printing it."""
        self._context.eval(source, save_events=True)

    def load_openqasm(self, source: str) -> str:
        """Import an OpenQASM 3 program as one operation; returns its entry expression.

        Includes were checked by `check_openqasm` (only the standard ones); the search path
        points nowhere, so nothing is read from this machine's file system either way.
        """
        from qdk.openqasm import ProgramType

        self._context.import_openqasm(
            source, name=_QASM_NAME, program_type=ProgramType.File, search_path=_NO_SEARCH_PATH
        )
        return QASM_ENTRY

    def compile(self, entry: str) -> str:
        """The QIR text of `entry` for the session's profile."""
        return str(self._context.compile(entry))

    def estimate(self, entry: str) -> list[EstimateSummary]:
        """The Pareto frontier of (physical qubits, runtime) from qdk.qre (see `_qre_frontier`)."""
        return _qre_frontier(self._context.logical_counts(entry))

    def shots(
        self, entry: str, shots: int, seed: int, noise: NoiseModel | None = None
    ) -> dict[str, int]:
        """A seeded histogram; each block of shots has its own seed, hashed from (seed, block).

        qdk seeds shot i of one run with seed + i, so blocks keep runs of neighbouring seeds
        apart (see `power.shot_blocks`). With a noise model the shots run on qdk's noisy
        simulation (`noise_config`).
        """
        config = None if noise is None else noise_config(noise)
        histogram: Counter[str] = Counter()
        for block_seed, size in shot_blocks(seed, shots):
            batch: list[dict[str, object]] = self._context.run(
                entry, size, seed=block_seed, save_events=True, noise=config
            )
            histogram.update(canonical_key(shot["result"]) for shot in batch)
        return dict(histogram)

    def close(self) -> None:
        """Break the context's reference cycle so that it is freed here, on the qdk thread."""
        self._context.code = types.SimpleNamespace()
        del self._context
        gc.collect()


ESTIMATOR = (
    "qdk.qre: GateBased(error_rate=1e-3, gate_time=50 ns, measurement_time=100 ns), "
    "SurfaceCode x Litinski19Factory, error budget 1e-3"
)
"""What the estimate gate assumes: the architecture of qdk's legacy default
(qubit_gate_ns_e3: 50 ns gates, 100 ns measurements, 1e-3 error rates, surface code,
error budget 1e-3), on the maintained estimator `qdk.qre`."""


def _qre_frontier(counts: Any) -> list[EstimateSummary]:
    """qdk.qre's estimates for the program's logical counts, fewest qubits first.

    qre prints a warning when nothing fits the error budget; it is captured (the gate
    worker's stdout is its protocol channel) and becomes the failure's message.
    """
    from qdk.qre import estimate
    from qdk.qre.application import QSharpApplication
    from qdk.qre.models import GateBased, Litinski19Factory, SurfaceCode

    architecture = GateBased(error_rate=1e-3, gate_time=50, measurement_time=100)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        table = estimate(
            QSharpApplication(counts),
            architecture,
            SurfaceCode.q() * Litinski19Factory.q(),
            max_error=1e-3,
        )
    frontier = sorted(
        (EstimateSummary(int(entry.qubits), int(entry.runtime)) for entry in table),
        key=lambda summary: (summary.physical_qubits, summary.runtime_ns),
    )
    if not frontier:
        message = " ".join(printed.getvalue().split()) or "qdk.qre produced no estimate"
        raise RuntimeError(message)
    return frontier


def noise_config(model: NoiseModel) -> Any:
    """qdk's per-gate Pauli noise for a resolved noise model (see `noise.py`)."""
    from qdk.simulation import NoiseConfig

    config = NoiseConfig()
    for name in ONE_QUBIT_GATES:
        getattr(config, name).set_depolarizing(model.depolarizing_one)
    for name in TWO_QUBIT_GATES:
        getattr(config, name).set_depolarizing(model.depolarizing_two)
    config.ccx.set_depolarizing(model.depolarizing_toffoli)
    for name in MEASUREMENTS:
        getattr(config, name).set_bitflip(model.readout)
    return config


def required_qubits(qir: str) -> int | None:
    """The `required_num_qubits` attribute of a QIR entry point, if present.

    >>> required_qubits('attributes #0 = { "required_num_qubits"="2" }')
    2
    """
    match = _QUBITS.search(qir)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class _Compiled:
    """The profile gate's result and, when compilation worked, the QIR."""

    result: GateResult
    qir: str | None = None
    entry: str = ""


class QdkBackend:
    """Runs the quantum gates locally with qdk; target status comes from the catalog.

    Gates run in sandboxed worker processes (see `sandbox.py`) with a time and a memory
    limit; by default every backend shares one worker. A `GatePool` runs several releases
    side by side. `isolated=False` runs them in this process instead, on the qdk thread,
    with no limits (tests that patch qdk use it). With a `cache`, a release whose content
    ran before (in any environment or pass) reuses that result (see `reuse.py`).
    """

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        isolated: bool = True,
        cache: GateCache | None = None,
    ) -> None:
        self._sandbox = sandbox if sandbox is not None or not isolated else _shared_sandbox()
        self.reuse = None if cache is None else GateReuse(cache)

    @property
    def workers(self) -> int:
        """How many releases' gates (or compile checks) run side by side."""
        return 1 if self._sandbox is None else self._sandbox.workers

    def close(self) -> None:
        """Stop this backend's worker processes (the shared default worker stays)."""
        if self._sandbox is not None and self._sandbox not in _SHARED:
            self._sandbox.close()

    def compile(self, program: ProgramSource, entry: str, profile: TargetProfile) -> CompileOutcome:
        """Whether `entry` compiles for `profile`, with qdk's diagnostics when it does not."""
        if self._sandbox is not None:
            return self._sandbox.compile(program, entry, profile)
        return _QDK_THREAD.submit(compile_here, program, entry, profile).result()

    def target_status(self, target_id: str) -> TargetStatus:
        """Available for catalog targets (simulated locally), Unavailable once retired,
        Unknown for anything else."""
        spec = catalog.resolve(target_id)
        if spec is None:
            text = catalog.pin_findings(target_id, TargetProfile.BASE, None)[0].message
            return TargetStatus(target_id, Availability.UNKNOWN, message=text)
        if spec.status is catalog.Lifecycle.RETIRED:
            text = f"retired: {spec.note}"
            return TargetStatus(target_id, Availability.UNAVAILABLE, message=text)
        text = "local backend: simulated with qdk; profile and qubits are catalog defaults"
        if spec.status is catalog.Lifecycle.DEPRECATED:
            text += f"; deprecated: {spec.note}"
        available = Availability.AVAILABLE
        return TargetStatus(target_id, available, spec.profile, spec.qubits, message=text)

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """Profile, estimate and smoke gates for one release; never raises for a bad program."""
        if self.reuse is None:
            return self._run(program, quantum, baseline)
        identity = {"backend": "qdk", "noise": _noise_identity(quantum)}
        if quantum.kind is ProgramKind.QISKIT:
            identity["qiskit"] = qiskit_version()
        return self.reuse.run(
            program, quantum, baseline, identity, lambda: self._run(program, quantum, None)
        )

    def _run(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """The gates, computed: in the sandbox, or on the qdk thread."""
        if self._sandbox is not None:
            return self._sandbox.run(program, quantum, baseline)
        return _QDK_THREAD.submit(_run_gates, program, quantum, baseline).result()


def _noise_identity(quantum: Quantum) -> dict[str, Any] | str | None:
    """The resolved noise figures (part of the cache key: new catalog figures, new results)."""
    smoke = quantum.gates.smoke
    if smoke is None:
        return None
    try:
        model = resolve_noise(smoke, quantum.target.id)
    except NoiseProblem as problem:
        return str(problem)
    return None if model is None else model.as_json()


_SHARED: list[Sandbox] = []
_SHARED_LOCK = threading.Lock()


def _shared_sandbox() -> Sandbox:
    """The process's default sandbox, started on first use and stopped at exit."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(GateSandbox())  # its worker is stopped at exit
        return _SHARED[0]


def run_gates_here(
    program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
) -> GateReport:
    """The gates in this process and thread: what the sandbox's worker process calls."""
    return _run_gates(program, quantum, baseline)


def compile_here(program: ProgramSource, start: str, profile: TargetProfile) -> CompileOutcome:
    """Compile a program for `profile` in a fresh session (what `qrelease validate` asks for).

    `start` is the Q# entry, the Qiskit circuit's name, or "" for OpenQASM.
    """
    session = _Session(profile)
    try:
        entry = load_program(session, program, start, profile)
        qir = _guarded(lambda: session.compile(entry), program, entry)
    except QdkFailure as failure:
        return CompileOutcome(tuple(_explained(failure, profile).diagnostics))
    finally:
        session.close()
    return CompileOutcome((), required_qubits(qir), hashlib.sha256(qir.encode()).hexdigest())


def load_program(
    session: _Session, program: ProgramSource, start: str, profile: TargetProfile
) -> str:
    """Load a program of any kind into the session; returns the entry expression to run.

    Raises QdkFailure with the program's diagnostics.
    """
    kind = ProgramKind.of(program.path)
    if kind is ProgramKind.QSHARP or kind is None:
        _guarded(lambda: session.load(program.text), program, start)
        return start
    source = program
    if kind is ProgramKind.QISKIT:
        source = qiskit_to_openqasm(program, start, profile)
    check_openqasm(source)
    return _guarded(lambda: session.load_openqasm(source.text), source, QASM_ENTRY)


def check_openqasm(program: ProgramSource) -> None:
    """Parse an OpenQASM program without a file system; QdkFailure on any syntax error or
    include other than the standard ones (qdk would otherwise read it from this machine)."""
    from qdk.openqasm import parse

    parsed = _guarded(lambda: parse(program.text, path=program.path), program, QASM_ENTRY)
    problems = [d for d in parsed.diagnostics if str(d.severity).endswith("Error")]
    if problems:
        raise QdkFailure([_qasm_diagnostic(d) for d in problems])


def _qasm_diagnostic(diagnostic: Any) -> Diagnostic:
    """One diagnostic of qdk's OpenQASM parser, at its `path:line:col`."""
    location = _LOCATION.search(str(diagnostic))
    where = None if location is None else ":".join(location.groups())
    message = str(diagnostic.message)
    if message.startswith("Not Found: Could not resolve include file"):
        message += " (only the standard includes stdgates.inc and qelib1.inc: inline the rest)"
    return Diagnostic(str(diagnostic.code or "Qdk.Qasm.Include"), message, where)


def qiskit_to_openqasm(
    program: ProgramSource, circuit: str, profile: TargetProfile
) -> ProgramSource:
    """Execute a Qiskit module, take its circuit and convert it to OpenQASM 3 with qdk's
    Qiskit backend (the conversion its own `qir()` and `run()` use).

    Only inside the gate worker: the module is code from Git, and the controller process
    never runs it. The result is named `<path> (as OpenQASM 3)` in diagnostics.
    """
    if not IN_GATE_WORKER:
        raise QdkFailure(
            [Diagnostic("qrelease.qiskit", "Qiskit programs run only in the sandboxed gate worker")]
        )
    made = _qiskit_circuit(program, circuit)
    try:
        from qdk.qiskit import QSharpBackend

        qdk_profile = getattr(qsharp.TargetProfile, profile.value)
        backend = QSharpBackend(target_profile=qdk_profile)
        text = backend._qasm(made)  # qdk's own circuit -> OpenQASM 3 conversion (private)
    except Exception as error:
        cause = error.__cause__ or error
        text = f"qdk could not convert the circuit to OpenQASM 3: {cause}"
        raise QdkFailure([Diagnostic("Qdk.Qiskit.Export", text, f"circuit {circuit}")]) from error
    return ProgramSource(f"{program.path} (as OpenQASM 3)", str(text))


def _qiskit_circuit(program: ProgramSource, name: str) -> Any:
    """The QuantumCircuit a Qiskit module names (called first when it is a function)."""
    module = types.ModuleType("qrelease_qiskit_program")
    module.__file__ = program.path
    _run_python(program, lambda: exec(compile(program.text, program.path, "exec"), vars(module)))  # noqa: S102 the worker's job
    found = vars(module).get(name)
    if found is None:
        text = f"{program.path} defines no {name!r}"
        raise QdkFailure([Diagnostic("Qiskit.Circuit", text, f"circuit {name}")])
    from qiskit import QuantumCircuit

    if not isinstance(found, QuantumCircuit) and callable(found):
        found = _run_python(program, found)
    if not isinstance(found, QuantumCircuit):
        kind = type(found).__name__
        text = f"{name} is a {kind}, not a QuantumCircuit (or a function returning one)"
        raise QdkFailure([Diagnostic("Qiskit.Circuit", text, f"circuit {name}")])
    return found


def _run_python(program: ProgramSource, step: Callable[[], _T]) -> _T:
    """Run a step of a Qiskit module; an exception becomes a diagnostic at its line there."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return step()
    except SyntaxError as error:
        where = f"{program.path}:{error.lineno or 1}:{error.offset or 1}"
        raise QdkFailure([Diagnostic("Python.SyntaxError", str(error.msg), where)]) from None
    except Exception as error:
        frames = [
            f for f in traceback.extract_tb(error.__traceback__) if f.filename == program.path
        ]
        place = f"{program.path}:{frames[-1].lineno}:1" if frames else None
        problem = f"{type(error).__name__}: {error}"
        raise QdkFailure([Diagnostic(f"Python.{type(error).__name__}", problem, place)]) from None


def _run_gates(
    program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
) -> GateReport:
    """Every gate in one fresh session; runs on the qdk thread."""
    session = _Session(quantum.target.profile)
    try:
        compiled = _profile_gate(session, program, quantum)
        if compiled.qir is None:  # it did not compile; a pin the catalog refuses still runs on
            return _report(compiled, _blocked("estimate"), _blocked("smoke"), None)
        estimate, summary = _estimate_gate(session, program, quantum, compiled.entry, baseline)
        smoke = _smoke_gate(session, program, quantum, compiled.entry)
        return _report(compiled, estimate, smoke, summary)
    finally:
        session.close()


def _report(
    compiled: _Compiled, estimate: GateResult, smoke: GateResult, summary: EstimateSummary | None
) -> GateReport:
    """The gate report, with the QIR digest when compilation worked."""
    digest = None if compiled.qir is None else hashlib.sha256(compiled.qir.encode()).hexdigest()
    results = (compiled.result, estimate, smoke)
    return GateReport(results, qir=compiled.qir, qir_sha256=digest, estimate=summary)


def _blocked(gate: str) -> GateResult:
    """A gate that did not run because the profile gate failed."""
    return GateResult(gate, GateOutcome.SKIPPED, "not run: profile gate failed")


def _not_configured(gate: str) -> GateResult:
    """A gate that the manifest does not configure."""
    return GateResult(gate, GateOutcome.SKIPPED, f"not configured: no quantum.gates.{gate}")


def _profile_gate(session: _Session, program: ProgramSource, quantum: Quantum) -> _Compiled:
    """Compile the entry for the pinned profile and check the pin against the target."""
    pin = quantum.target
    started = session.started
    try:
        entry = load_program(session, program, quantum.start, pin.profile)
        qir = _guarded(lambda: session.compile(entry), program, entry)
    except QdkFailure as failure:
        failure = _explained(failure, pin.profile)
        problems = [d.render() for d in failure.diagnostics]
        problems += catalog.pin_problems(pin.id, pin.profile, None)
        details = _failure_details(failure, pin.id, pin.profile, started)
        return _Compiled(GateResult("profile", GateOutcome.FAILED, "; ".join(problems), details))
    checked = catalog.check_pin(pin.id, pin.profile, required_qubits(qir))
    details = checked.details | {"seconds": _since(started), "program_kind": str(quantum.kind)}
    if quantum.kind is ProgramKind.QISKIT:
        details["qiskit"] = qiskit_version()
    language = "" if quantum.kind is ProgramKind.QSHARP else f"{quantum.kind.label} "
    message = f"{language}compiled for {pin.profile}; {checked.message}"
    if checked.outcome is not GateOutcome.PASSED:
        message = f"{language}compiled for {pin.profile}, but {checked.message}"
    return _Compiled(GateResult("profile", checked.outcome, message, details), qir, entry)


NO_UNRESTRICTED_QIR = (
    f"qdk {_QDK_VERSION} generates no QIR for the Unrestricted profile, and a release carries"
    " its compiled QIR; pin the Adaptive profile (qdk.sim.adaptive) if the program fits it"
)


def _explained(failure: QdkFailure, profile: TargetProfile) -> QdkFailure:
    """qdk's failure, with its refusal to generate Unrestricted QIR said plainly."""
    if profile is not TargetProfile.UNRESTRICTED:
        return failure
    diagnostics = [
        Diagnostic(d.code, NO_UNRESTRICTED_QIR, d.where)
        if d.code.endswith("UnsupportedRuntimeCapabilities")
        else d
        for d in failure.diagnostics
    ]
    return QdkFailure(diagnostics)


def _failure_details(
    failure: QdkFailure, target_id: str, profile: TargetProfile, started: float
) -> dict[str, Any]:
    """Gate details for a qdk failure: its diagnostics, the pin and the time spent."""
    return {
        "target": target_id,
        "profile": str(profile),
        "diagnostics": [vars(d) for d in failure.diagnostics],
        "seconds": _since(started),
    }


def _estimate_gate(
    session: _Session,
    program: ProgramSource,
    quantum: Quantum,
    entry: str,
    baseline: EstimateSummary | None,
) -> tuple[GateResult, EstimateSummary | None]:
    """Estimate resources and judge them against the manifest's budget."""
    budget: EstimateGate | None = quantum.gates.estimate
    if budget is None:
        return _not_configured("estimate"), None
    started = time.perf_counter()
    try:
        frontier = _guarded(lambda: session.estimate(entry), program, entry)
    except QdkFailure as failure:
        text = f"resource estimation failed: {failure}"
        details = _failure_details(failure, quantum.target.id, quantum.target.profile, started)
        return GateResult("estimate", GateOutcome.FAILED, text, details), None
    summary = choose_estimate(frontier, budget)
    judged = judge_estimate(summary, budget, baseline)
    shown = [vars(point) for point in frontier[:_FRONTIER_SHOWN]]
    details = judged.details | {"estimator": ESTIMATOR, "frontier": shown}
    return _timed(GateResult("estimate", judged.outcome, judged.message, details), started), summary


def _smoke_gate(
    session: _Session, program: ProgramSource, quantum: Quantum, entry: str
) -> GateResult:
    """Run seeded shots on the local simulator (noisy when asked) and compare with `expect`."""
    smoke: SmokeGate | None = quantum.gates.smoke
    if smoke is None:
        return _not_configured("smoke")
    started = time.perf_counter()
    try:
        model = resolve_noise(smoke, quantum.target.id)
    except NoiseProblem as problem:
        details = {"noise": smoke.noise if isinstance(smoke.noise, str) else None}
        return GateResult("smoke", GateOutcome.FAILED, str(problem), details)
    try:
        observed = _guarded(
            lambda: session.shots(entry, smoke.shots, smoke.seed, model),
            program,
            entry,
        )
    except QdkFailure as failure:
        details = _failure_details(failure, quantum.target.id, quantum.target.profile, started)
        return GateResult("smoke", GateOutcome.FAILED, f"simulation failed: {failure}", details)
    judged = judge_smoke(observed, smoke)
    message = judged.message + describe_noise(model, smoke, quantum.target.id)
    details = judged.details | {"noise": None if model is None else model.as_json()}
    return _timed(GateResult("smoke", judged.outcome, message, details), started)


def _timed(result: GateResult, started: float) -> GateResult:
    """The result with the seconds the gate took added to its details."""
    details = result.details | {"seconds": _since(started)}
    return GateResult(result.gate, result.outcome, result.message, details)


def _since(started: float) -> float:
    """Seconds elapsed since a perf_counter reading, rounded to milliseconds."""
    return round(time.perf_counter() - started, 3)
