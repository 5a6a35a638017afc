"""The gate worker: `python -m qrelease.quantum.gate_worker MEMORY_MIB`.

Limits its own address space, imports qdk, says `ready`, then answers one JSON request
line with one JSON report line until its stdin closes. Started and killed by
`qrelease.quantum.sandbox.GateSandbox`; not a command for people.
"""

from __future__ import annotations

import resource
import sys


def main(argv: list[str]) -> int:
    """Serve requests on stdin until it closes."""
    limit = int(argv[0]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    from qrelease.quantum.qdk import run_gates_here
    from qrelease.quantum.sandbox import parse_request, report_json

    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        program, quantum, baseline = parse_request(line)
        try:
            report = run_gates_here(program, quantum, baseline)
        except MemoryError:
            from qrelease.quantum.sandbox import stopped

            report = stopped("the gates ran out of memory (quantum gate memory limit)")
        print(report_json(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
