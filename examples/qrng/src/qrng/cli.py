"""The `qrng` command: report the release pin, check it, or draw random numbers.

With no option it prints what its release pins (target, profile, QIR digest, version);
`--self-check` exits 0 only when the lock and program are present and consistent (the
release manifest's health command); `--run` says what runs, then draws numbers by running
the program on the local simulator, one shot per number, the measured bits read most
significant first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from qrng.release import (
    LockError,
    describe,
    job_tags,
    load_lock,
    read_program,
    release_dir,
    simulate,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qrng", description="A qrelease example app.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-check", action="store_true", help="exit 0 if the lock is sound")
    mode.add_argument("--run", action="store_true", help="draw random numbers on the simulator")
    mode.add_argument("--json", action="store_true", help="print the lock as JSON")
    parser.add_argument("--count", type=int, default=5, help="numbers to draw with --run")
    parser.add_argument("--seed", type=int, default=None, help="simulator seed for --run")
    return parser


def to_number(shot: Sequence[Any]) -> int:
    """Read one shot's measured results as an unsigned integer, first qubit most significant.

    >>> to_number(["One", "Zero", "One"])
    5
    """
    number = 0
    for result in shot:
        number = number * 2 + (1 if str(result) == "One" else 0)
    return number


def _package_version() -> str:
    """This distribution's installed version, or "unknown" when run from a source tree."""
    try:
        return version("qrng")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    release = release_dir()
    package_version = _package_version()
    try:
        lock = load_lock(release)
        qir = read_program(release, lock)
        if args.run:
            shots = simulate(qir, args.count, args.seed)
            print(describe(lock, package_version))
            for shot in shots:
                print(to_number(shot))
            return 0
    except LockError as error:
        print(f"qrng: {error}", file=sys.stderr)
        return 1
    if args.json:
        shown = {**lock, "package_version": package_version, "release_dir": str(release)}
        print(json.dumps(shown | {"job_tags": job_tags(lock)}))
    elif args.self_check:
        print(f"ok: {lock['app']} {lock['version']} pinned to {lock['target_id']}")
    else:
        print(describe(lock, package_version))
    return 0
