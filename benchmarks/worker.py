"""Run one benchmark module in a process of its own and write its rows as JSON.

Each module gets a fresh interpreter so that no row is measured in a heap, a thread pool
or a cache that an earlier module left behind: a row measures what it sets up, nothing
else. Data on disk (the generated repo) is still shared through the run's directory.
The child also reports its peak RSS, so a module that holds too much memory shows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import suite
from benchmarks.harness import Context, Row, Sizes

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ModuleRun:
    """What one module's process produced: its rows, wall time and peak memory."""

    name: str
    rows: list[Row]
    seconds: float
    peak_rss_mib: float | None

    def as_json(self) -> dict[str, Any]:
        """The JSON form stored in results.json (rows are stored separately)."""
        return {
            "name": self.name,
            "seconds": round(self.seconds, 1),
            "peak_rss_mib": self.peak_rss_mib,
        }


def isolated(name: str, ctx: Context) -> ModuleRun:
    """Module `name` run by a child interpreter; an ERROR row if it crashes."""
    started = time.perf_counter()
    out = ctx.workdir / f"rows-{name}.json"
    argv = [sys.executable, "-m", "benchmarks.worker", name, "--out", str(out)]
    argv += ["--workdir", str(ctx.workdir), "--reps", str(ctx.reps)]
    argv += ["--sizes", json.dumps(asdict(ctx.sizes))]
    argv += ["--quick"] if ctx.quick else []
    argv += ["--profile-dir", str(ctx.profile_dir)] if ctx.profile_dir else []
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(argv, env={**os.environ, "PYTHONPATH": path}, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        error = Row(name, "error", notes=(f"ERROR: worker exited {done.returncode}",))
        return ModuleRun(name, [error], seconds, None)
    written = json.loads(out.read_text(encoding="utf-8"))
    rows = [Row.from_json(row) for row in written["rows"]]
    return ModuleRun(name, rows, seconds, written["peak_rss_mib"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the module named on the command line; rows go to --out."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("module", choices=suite.MODULES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--reps", type=int, required=True)
    parser.add_argument("--sizes", required=True, help="Sizes as a JSON object")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile-dir", type=Path)
    args = parser.parse_args(argv)
    ctx = Context(
        sizes=Sizes(**json.loads(args.sizes)),
        reps=args.reps,
        workdir=args.workdir,
        quick=args.quick,
        profile_dir=args.profile_dir,
    )
    rows = suite.runner(args.module)(ctx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    written = {"rows": [row.as_json() for row in rows], "peak_rss_mib": round(peak, 1)}
    args.out.write_text(json.dumps(written), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
