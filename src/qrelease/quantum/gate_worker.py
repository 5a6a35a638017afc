"""The gate worker: `python -m qrelease.quantum.gate_worker MEMORY_MIB SECONDS [MODULE...]`.

Limits its own address space, imports qdk (and any MODULE named, such as the resource
estimator `qdk.qre`, whose import takes seconds), says `ready`, then answers one JSON
request line with one JSON answer line until its stdin closes. Started and killed by
`qrelease.quantum.sandbox.GateSandbox`; not a command for people.

The controller kills a worker that outruns the time limit. In case the controller itself
is gone (killed with -9, say), each request also arms `alarm()` a little beyond the limit
with the default action, which ends the process without needing Python (or its GIL) to
run: an orphaned worker stuck in a runaway program never outlives its limit by much.

Answers go out on a private copy of the original stdout; file descriptor 1 itself is pointed
at stderr (which the sandbox discards), so nothing a program prints (a Qiskit module's
`print`, a native library writing to fd 1) can break the protocol. This process is the only
place a Qiskit program's module is executed (`qrelease.quantum.qdk.IN_GATE_WORKER`).
"""

from __future__ import annotations

import importlib
import math
import os
import resource
import signal
import sys

ALARM_MARGIN_SECONDS = 5


def main(argv: list[str]) -> int:
    """Serve requests on stdin until it closes."""
    limit = int(argv[0]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    alarm_after = math.ceil(float(argv[1])) + ALARM_MARGIN_SECONDS
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    import qrelease.quantum.qdk  # qdk is imported once, before saying ready

    qrelease.quantum.qdk.IN_GATE_WORKER = True
    for name in argv[2:]:
        importlib.import_module(name)  # the preloads, outside any request's time limit

    print("ready", file=protocol, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        signal.alarm(alarm_after)
        try:
            answer = _answer(line)
        finally:
            signal.alarm(0)
        print(answer, file=protocol, flush=True)
    return 0


def _answer(line: str) -> str:
    """The answer line to one request line: a gate report or a compile result."""
    from qrelease.quantum.base import CompileOutcome, Diagnostic
    from qrelease.quantum.qdk import compile_here, run_gates_here
    from qrelease.quantum.sandbox import (
        compiled_json,
        parse_compile_request,
        parse_request,
        report_json,
        request_kind,
        stopped,
    )

    out_of_memory = "ran out of memory (quantum gate memory limit)"
    if request_kind(line) == "compile":
        program, entry, profile = parse_compile_request(line)
        try:
            return compiled_json(compile_here(program, entry, profile))
        except MemoryError:
            return compiled_json(
                CompileOutcome((Diagnostic("sandbox", f"compiling {out_of_memory}"),))
            )
    program, quantum, baseline = parse_request(line)
    try:
        return report_json(run_gates_here(program, quantum, baseline))
    except MemoryError:
        return report_json(stopped(f"the gates {out_of_memory}"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
