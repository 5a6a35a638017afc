"""`python -m benchmarks`: run the suite, print the table, write benchmarks/results.json."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks import suite
from benchmarks.harness import (
    Context,
    Sizes,
    load_average,
    results,
    table,
    write_results,
)
from benchmarks.worker import ModuleRun, isolated

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results.json"
DEFAULT_PROFILES = HERE / ".data" / "profiles"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions per side (default 5)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves it works")
    parser.add_argument(
        "--only",
        action="append",
        choices=[name.removeprefix("bench_") for name in suite.MODULES],
        help="run only this benchmark module (repeatable)",
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results.json path")
    parser.add_argument("--data", type=Path, help="keep generated data in this (new) directory")
    parser.add_argument(
        "--no-profile", action="store_true", help="do not cProfile the rows that miss"
    )
    return parser.parse_args(argv)


@contextmanager
def scratch(keep: Path | None) -> Iterator[Path]:
    """The run's data directory: `keep` if given, else a temporary one removed afterwards."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=False)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="qrelease-bench-") as directory:
        yield Path(directory)


def run_module(name: str, ctx: Context) -> ModuleRun:
    """One module, in a process of its own; progress and peak memory go to stderr."""
    print(f"running {name} ...", file=sys.stderr, flush=True)
    run = isolated(name, ctx)
    rss = f"{run.peak_rss_mib:.0f} MiB" if run.peak_rss_mib is not None else "unknown"
    print(f"  {name}: {run.seconds:.1f}s, peak RSS {rss}", file=sys.stderr, flush=True)
    return run


def main(argv: Sequence[str] | None = None, sizes: Sizes | None = None) -> int:
    """Run the selected benchmarks; exit 1 only when one of them crashed."""
    args = parse_args(argv)
    os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")
    sizes = sizes or (Sizes.quick() if args.quick else Sizes.full())
    names = [n for n in suite.MODULES if args.only is None or n.removeprefix("bench_") in args.only]
    started, load_before = time.perf_counter(), load_average()
    with scratch(args.data) as workdir:
        ctx = Context(
            sizes=sizes,
            reps=args.reps,
            workdir=workdir,
            quick=args.quick,
            profile_dir=None if args.no_profile else DEFAULT_PROFILES,
        )
        runs = [run_module(name, ctx) for name in names]
    rows = [row for run in runs for row in run.rows]
    total = time.perf_counter() - started
    print(table(rows))
    print(f"\ntotal: {total:.1f}s; load average before {load_before}, after {load_average()}")
    mode = "quick" if args.quick else "full"
    document = results(
        rows,
        mode=mode,
        reps=args.reps,
        total_seconds=total,
        load_before=load_before,
        modules=[run.as_json() for run in runs],
    )
    write_results(document, args.results)
    print(f"results: {args.results}")
    return 1 if any(row.kind == "error" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
