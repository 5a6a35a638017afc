"""Run the qdk gates of a release in a child process with a memory and a time limit.

A Q# program is code from Git: a loop that never ends, or a smoke test of a hundred
million shots, must fail its release and nothing else. So the gates run in a worker
process (`python -m qrelease.quantum.gate_worker`) that sets its own address-space limit
and is killed when a release's gates outrun the time limit; the next release starts a
fresh worker. The worker lives across releases, so qdk is imported once, and its heap
holds only the gates' own objects (qdk's per-session garbage collection stays cheap
however large the controller's heap is). Requests and reports are JSON lines on its
stdin and stdout; one release at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from pydantic_core import to_jsonable_python

from qrelease.model.manifest import Quantum, TargetProfile
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import (
    CompileOutcome,
    Diagnostic,
    EstimateSummary,
    GateReport,
    GateResult,
    ProgramSource,
)

WORKER_MODULE = "qrelease.quantum.gate_worker"
STARTUP_SECONDS = 60.0
"""How long a new worker may take to import qdk and say it is ready."""
ESTIMATOR_MODULES = ("qdk.qre", "qdk.qre.application", "qdk.qre.models")
"""Imported by a gate worker before it says ready, so no release's time limit pays for them."""


@dataclass(frozen=True)
class GateLimits:
    """What gates may use: wall-clock seconds and address space in MiB per release, and how
    many worker processes run releases side by side."""

    seconds: float = 600.0
    memory_mib: int = 4096
    workers: int = 1


class SandboxError(Exception):
    """The worker could not be started or answered with something that is not a report."""


def request_json(program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None) -> str:
    """One request line for a release's gates."""
    body = {
        "kind": "gates",
        "program": {"path": program.path, "text": program.text},
        "quantum": quantum.model_dump(mode="json"),
        "baseline": None if baseline is None else to_jsonable_python(baseline),
    }
    return json.dumps(body)


def compile_request_json(program: ProgramSource, entry: str, profile: TargetProfile) -> str:
    """One request line for compiling a program's entry for a profile."""
    body = {
        "kind": "compile",
        "program": {"path": program.path, "text": program.text},
        "entry": entry,
        "profile": str(profile),
    }
    return json.dumps(body)


def parse_request(line: str) -> tuple[ProgramSource, Quantum, EstimateSummary | None]:
    """A gates request line read back in the worker."""
    body = json.loads(line)
    baseline = body["baseline"]
    return (
        ProgramSource(**body["program"]),
        Quantum.model_validate(body["quantum"]),
        None if baseline is None else EstimateSummary(**baseline),
    )


def parse_compile_request(line: str) -> tuple[ProgramSource, str, TargetProfile]:
    """A compile request line read back in the worker."""
    body = json.loads(line)
    return ProgramSource(**body["program"]), body["entry"], TargetProfile(body["profile"])


def request_kind(line: str) -> str:
    """`gates` or `compile`: what a request line asks the worker for."""
    kind = json.loads(line).get("kind", "gates")
    return kind if isinstance(kind, str) else "gates"


def report_json(report: GateReport) -> str:
    """One report line."""
    return json.dumps({"report": to_jsonable_python(report)})


def parse_report(line: str) -> GateReport:
    """A report line read back in the controller."""
    try:
        return report_from(json.loads(line)["report"])
    except (ValueError, KeyError, TypeError) as error:
        raise SandboxError(
            f"the gate worker sent something that is not a report: {error}"
        ) from None


def report_from(body: dict[str, Any]) -> GateReport:
    """A gate report from its JSON form (as the worker sends it and the gate cache keeps it)."""
    estimate = body.get("estimate")
    return GateReport(
        results=tuple(
            GateResult(r["gate"], GateOutcome(r["outcome"]), r["message"], r["details"])
            for r in body["results"]
        ),
        qir=body.get("qir"),
        qir_sha256=body.get("qir_sha256"),
        estimate=None if estimate is None else EstimateSummary(**estimate),
    )


def compiled_json(outcome: CompileOutcome) -> str:
    """One compile-result line."""
    return json.dumps({"compiled": to_jsonable_python(outcome)})


def parse_compiled(line: str) -> CompileOutcome:
    """A compile-result line read back in the caller."""
    try:
        return compiled_from(json.loads(line)["compiled"])
    except (ValueError, KeyError, TypeError) as error:
        raise SandboxError(
            f"the gate worker sent something that is not a compile result: {error}"
        ) from None


def compiled_from(body: dict[str, Any]) -> CompileOutcome:
    """A compile outcome from its JSON form."""
    return CompileOutcome(
        tuple(Diagnostic(**d) for d in body["diagnostics"]),
        body.get("qubits"),
        body.get("qir_sha256"),
    )


def stopped(message: str) -> GateReport:
    """The report of gates the sandbox had to stop: one Failed result saying why."""
    return GateReport((GateResult("sandbox", GateOutcome.FAILED, message),))


class Sandbox(Protocol):
    """Where gates and compile checks run: one worker (`GateSandbox`) or several (`GatePool`)."""

    @property
    def workers(self) -> int:
        """How many requests it serves side by side."""
        ...

    def run(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """One release's gates."""
        ...

    def compile(self, program: ProgramSource, entry: str, profile: TargetProfile) -> CompileOutcome:
        """One compile check."""
        ...

    def close(self) -> None:
        """Stop the worker processes."""
        ...


class _Stopped(str):
    """Why the sandbox had to stop a request (instead of an answer line)."""


class GateSandbox:
    """One worker process at a time, started on first use and replaced after a kill."""

    def __init__(
        self, limits: GateLimits | None = None, preload: tuple[str, ...] = ESTIMATOR_MODULES
    ) -> None:
        self.limits = limits or GateLimits()
        self.preload = preload
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.started = 0  # workers started so far (a kill shows up as a restart)
        self._finalize: Callable[[], object] = lambda: None

    @property
    def workers(self) -> int:
        """One request at a time."""
        return 1

    def run(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """The gates' report, or a Failed `sandbox` result when the worker had to be stopped."""
        answer = self._exchange(request_json(program, quantum, baseline), "the gates")
        return stopped(answer) if isinstance(answer, _Stopped) else parse_report(answer)

    def compile(self, program: ProgramSource, entry: str, profile: TargetProfile) -> CompileOutcome:
        """Whether the program compiles for the profile; a stopped worker is a `sandbox` error."""
        line = compile_request_json(program, entry, profile)
        answer = self._exchange(line, "compiling the program")
        if isinstance(answer, _Stopped):
            return CompileOutcome((Diagnostic("sandbox", str(answer)),))
        return parse_compiled(answer)

    def _exchange(self, request: str, doing: str) -> str:
        """Send one request line and wait for its answer line, or say why the worker stopped."""
        with self._lock:
            process = self._worker()
            assert process.stdin is not None
            try:
                process.stdin.write(request + "\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                return _Stopped(self._died(process))
            try:
                line = self._lines.get(timeout=self.limits.seconds)
            except queue.Empty:
                self._kill()
                return _Stopped(
                    f"{doing} ran longer than {self.limits.seconds:g} s and were stopped "
                    "(quantum gate time limit)"
                )
            if line is None:
                return _Stopped(self._died(process))
            return line

    def close(self) -> None:
        """Stop the worker (it also exits by itself when the controller goes)."""
        with self._lock:
            self._kill()

    def _worker(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._kill()
        # one thread per worker: the pool is the parallelism, and numpy's BLAS threads
        # would reserve address space against the memory limit
        threads = dict.fromkeys(
            ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "RAYON_NUM_THREADS"), "1"
        )
        env = {**os.environ, **threads, "QDK_PYTHON_TELEMETRY": "none"}
        limits = self.limits
        argv = [sys.executable, "-m", WORKER_MODULE, str(limits.memory_mib), str(limits.seconds)]
        argv += self.preload
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=env,
            bufsize=1,
        )
        self._lines = queue.Queue()
        assert process.stdout is not None
        threading.Thread(
            target=_pump, args=(process.stdout, self._lines), daemon=True, name="qrelease-gates"
        ).start()
        self._process = process
        self._finalize = weakref.finalize(self, _stop, process)  # also at exit, or if dropped
        self.started += 1
        try:
            ready = self._lines.get(timeout=STARTUP_SECONDS)
        except queue.Empty:
            ready = None
        if ready != "ready":
            reason = self._died(process)
            raise SandboxError(f"the quantum gate worker did not start: {reason}")
        return process

    def _died(self, process: subprocess.Popen[str]) -> str:
        code = _wait(process, 5.0)
        self._kill()  # reaps it and closes its pipes
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return (
                f"the gate worker died of {name}; a program that outgrows the quantum gate "
                f"memory limit ({self.limits.memory_mib} MiB) ends this way"
            )
        return f"the gate worker exited with code {code}"

    def _kill(self) -> None:
        self._process = None
        self._finalize()  # the finalizer of the last worker: kills, reaps, closes (only once)


def _pump(stdout: IO[str], lines: queue.Queue[str | None]) -> None:
    """Hand every line the worker writes to the waiting caller; None at end of stream."""
    try:
        for line in stdout:
            lines.put(line.rstrip("\n"))
    except (OSError, ValueError):
        pass  # the stream was closed under us by a kill
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    """Kill a worker unless it has exited, reap it, close its pipes."""
    if process.poll() is None:
        process.kill()
    _wait(process, 5.0)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _wait(process: subprocess.Popen[str], seconds: float) -> int | None:
    """Its exit code, waiting at most `seconds`; None while it still runs."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


class GatePool:
    """`limits.workers` sandboxes; each request takes a free one, so releases run side by side.

    Workers start on first use, so a pool that only ever serves one request at a time runs
    one worker process.
    """

    def __init__(
        self, limits: GateLimits | None = None, preload: tuple[str, ...] = ESTIMATOR_MODULES
    ) -> None:
        self.limits = limits or GateLimits()
        count = max(1, self.limits.workers)
        self.sandboxes = [GateSandbox(self.limits, preload) for _ in range(count)]
        self._free: queue.LifoQueue[GateSandbox] = queue.LifoQueue()
        for sandbox in reversed(self.sandboxes):
            self._free.put(sandbox)

    @property
    def workers(self) -> int:
        """How many releases run side by side."""
        return len(self.sandboxes)

    @property
    def started(self) -> int:
        """Worker processes started so far, over every sandbox."""
        return sum(sandbox.started for sandbox in self.sandboxes)

    def run(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """One release's gates on the next free worker."""
        sandbox = self._free.get()
        try:
            return sandbox.run(program, quantum, baseline)
        finally:
            self._free.put(sandbox)

    def compile(self, program: ProgramSource, entry: str, profile: TargetProfile) -> CompileOutcome:
        """One compile check on the next free worker."""
        sandbox = self._free.get()
        try:
            return sandbox.compile(program, entry, profile)
        finally:
            self._free.put(sandbox)

    def close(self) -> None:
        """Stop every worker."""
        for sandbox in self.sandboxes:
            sandbox.close()
