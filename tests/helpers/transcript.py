"""Run a README console transcript in bash and compare what it prints with what it shows.

A transcript is a ```console block: `$ command` lines, each followed by what it printed.
`...` stands for any number of lines. Lines are compared in shape, not value: runs of
spaces count as one, hex ids, numbers and durations match any of their kind, so a
revision, a histogram count or a step time may differ while every word must be there.
The whole block runs in one bash process (so `echo $?` shows the previous command's
exit), stdout and stderr together, as a terminal shows them.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MARK = "::qrelease-transcript::"
ANY_LINES = "..."
_HEX = re.compile(r"\b[0-9a-f]{7,64}\b")
_DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:ms|s|m\d+s|m|h)\b")
_NUMBER = re.compile(r"\d+")
_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?(?:\.\d+)?(?:[+-]\d\d:\d\d| UTC)?")


@dataclass
class Step:
    """One `$` command of a transcript and the lines shown after it."""

    command: str
    expected: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    exit_code: int | None = None


def console_block(markdown: str, heading: str) -> str:
    """The first ```console block after the heading line `heading`."""
    start = markdown.index(f"\n{heading}\n")
    block = re.search(r"```console\n(.*?)```", markdown[start:], re.DOTALL)
    assert block is not None, f"no console block under {heading}"
    return block.group(1)


def parse(block: str) -> list[Step]:
    """The steps of a console block; a command's trailing `# comment` is the reader's only."""
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            command = re.sub(r"\s+#[^'\"]*$", "", line[2:]).strip()
            steps.append(Step(command))
        elif steps:
            steps[-1].expected.append(line.rstrip())
    return steps


def run(steps: Sequence[Step], cwd: Path, env: Mapping[str, str], timeout: float) -> None:
    """Run every step in one bash process in `cwd`; fill in what each printed and its exit."""
    script = ["set +e"]
    for index, step in enumerate(steps):
        script += [f"echo '{MARK}start {index}'", f"{step.command} 2>&1", f'echo "{MARK}exit $?"']
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", "\n".join(script)],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    current: Step | None = None
    for line in done.stdout.splitlines():
        if line.startswith(f"{MARK}start "):
            current = steps[int(line.split()[-1])]
        elif line.startswith(f"{MARK}exit ") and current is not None:
            current.exit_code = int(line.split()[-1])
        elif current is not None:
            current.printed.append(line.rstrip())
    assert all(step.exit_code is not None for step in steps), done.stdout + done.stderr


def shape(line: str) -> str:
    """A line with its values replaced by their kind, and runs of spaces made one.

    >>> shape("dev  bell-service  1.2.0   Synced")
    'dev bell-service N.N.N Synced'
    >>> shape("revision 990c02769969: 6 change(s) in 1.5s")
    'revision HEX: N change(s) in DURATION'
    """
    line = _TIME.sub("TIME", line)
    line = _HEX.sub("HEX", line)
    line = _DURATION.sub("DURATION", line)
    line = _NUMBER.sub("N", line)
    return " ".join(line.split())


def mismatch(expected: Sequence[str], printed: Sequence[str]) -> str | None:
    """Why `printed` does not have the shape of `expected` (None when it does).

    Expected lines must appear in order; `...` lets any number of lines pass between them,
    and without it the next line must follow at once.
    """
    position = 0
    skipping = False
    for want in expected:
        if want.strip() == ANY_LINES:
            skipping = True
            continue
        target = shape(want)
        while position < len(printed) and shape(printed[position]) != target:
            if not skipping:
                return f"expected {want!r}, got {printed[position]!r}"
            position += 1
        if position == len(printed):
            return f"expected {want!r} but the output ended"
        position += 1
        skipping = False
    if position < len(printed) and not skipping:
        return f"unexpected output from {printed[position]!r} on"
    return None
