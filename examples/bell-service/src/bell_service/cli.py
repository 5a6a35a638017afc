"""The `bell-service` command: report the release pin, check it, or run the Bell program.

With no option it prints what its release pins (target, profile, QIR digest, version);
`--self-check` exits 0 only when the lock and program are present and consistent (the
release manifest's health command); `--run` says what runs (as with no option), then samples the program on the local simulator.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from importlib.metadata import PackageNotFoundError, version

from bell_service.release import (
    LockError,
    describe,
    job_tags,
    load_lock,
    read_program,
    release_dir,
    simulate,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bell-service", description="A qrelease example app.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-check", action="store_true", help="exit 0 if the lock is sound")
    mode.add_argument("--run", action="store_true", help="sample the Bell program locally")
    mode.add_argument("--json", action="store_true", help="print the lock as JSON")
    parser.add_argument("--shots", type=int, default=100, help="shots for --run (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="simulator seed for --run")
    return parser


def _package_version() -> str:
    """This distribution's installed version, or "unknown" when run from a source tree."""
    try:
        return version("bell-service")
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
            counts = Counter(str(shot) for shot in simulate(qir, args.shots, args.seed))
            print(describe(lock, package_version))
            for outcome, count in sorted(counts.items()):
                print(f"{outcome}: {count}")
            return 0
    except LockError as error:
        print(f"bell-service: {error}", file=sys.stderr)
        return 1
    if args.json:
        shown = {**lock, "package_version": package_version, "release_dir": str(release)}
        print(json.dumps(shown | {"job_tags": job_tags(lock)}))
    elif args.self_check:
        print(f"ok: {lock['app']} {lock['version']} pinned to {lock['target_id']}")
    else:
        print(describe(lock, package_version))
    return 0
