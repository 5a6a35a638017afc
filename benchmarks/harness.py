"""The shared harness: sizes, timing in alternation, result rows, the table and results.json.

A performance goal here is a ratio against the raw tool doing the same work, so both sides
run in the same process, in the same run, alternating (ABBA order, so neither side always
goes first into a warm or cold cache), several repetitions each. A benchmark module turns
its measurements into `Row`s; this module renders them.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import platform
import pstats
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Action = Callable[[], object]
Trial = Callable[[], AbstractContextManager[Action]]
"""A trial sets up (untimed), yields the action that is timed, then cleans up (untimed)."""


def plain(action: Action) -> Trial:
    """A trial with nothing to set up or clean up."""
    return lambda: nullcontext(action)


@dataclass(frozen=True)
class Sizes:
    """How much data each benchmark generates."""

    apps: int
    versions: int
    history_commits: int
    events: int
    reconcile_apps: int
    scale_apps: int = 10_000
    """Apps of the scale rows (issue 20): x 3 versions x 3 environments."""
    scale_events: int = 1_000_000
    """Events of the scale history and audit rows."""

    @classmethod
    def full(cls) -> Sizes:
        """The sizes of the performance goals (issue 8)."""
        return cls(
            apps=1000,
            versions=5,
            history_commits=2000,
            events=100_000,
            reconcile_apps=1000,
        )

    @classmethod
    def quick(cls) -> Sizes:
        """Small sizes that still exercise every code path."""
        return cls(
            apps=40,
            versions=5,
            history_commits=20,
            events=2000,
            reconcile_apps=20,
            scale_apps=300,
            scale_events=20_000,
        )

    @classmethod
    def tiny(cls) -> Sizes:
        """The smallest sizes, for the smoke test."""
        return cls(
            apps=6,
            versions=2,
            history_commits=4,
            events=300,
            reconcile_apps=2,
            scale_apps=30,
            scale_events=2000,
        )


@dataclass
class Context:
    """What every benchmark gets: sizes, repetitions, a scratch dir and shared fixtures.

    `profile_dir`, when set, is where a missed row's cProfile data is saved (and its
    hottest functions are added to the row's notes).
    """

    sizes: Sizes
    reps: int
    workdir: Path
    quick: bool = False
    profile_dir: Path | None = None
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, build: Callable[[], Any]) -> Any:
        """A fixture built once per run and reused by every benchmark that asks for it."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]


@dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated wall-clock timings, in seconds."""

    median: float
    min: float
    max: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        """Summarise timings."""
        values = tuple(samples)
        return cls(statistics.median(values), min(values), max(values), values)

    def as_json(self) -> dict[str, Any]:
        """The JSON form stored in results.json."""
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "samples": list(self.samples),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Stats | None:
        """Read back `as_json` (None stays None)."""
        return None if data is None else cls.of(data["samples"])


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    `kind` is "ratio" (ours / reference median, target is the highest ratio that passes),
    "absolute" (ours median, target is the most that passes), "pending"
    (not measurable yet; no numbers, `notes` say why) or "error" (the benchmark crashed).
    `unit` is what the numbers of an absolute row are: "s" (seconds, the default), "MiB",
    or a count such as "fds"; ratio rows always time in seconds.
    """

    name: str
    kind: str
    target: float | None = None
    ours: Stats | None = None
    reference: Stats | None = None
    reference_name: str = ""
    notes: tuple[str, ...] = ()
    unit: str = "s"

    @property
    def ratio(self) -> float | None:
        """qrelease median / reference median, for ratio rows."""
        if self.kind != "ratio" or self.ours is None or self.reference is None:
            return None
        return self.ours.median / self.reference.median

    @property
    def value(self) -> float | None:
        """The number compared with the target: the ratio, or seconds for absolute rows."""
        if self.kind == "absolute" and self.ours is not None:
            return self.ours.median
        return self.ratio

    @property
    def verdict(self) -> str:
        """PASS, MISS, PENDING (not measurable yet) or ERROR (the benchmark crashed)."""
        if self.kind == "error":
            return "ERROR"
        value = self.value
        if value is None or self.target is None:
            return "PENDING"
        return "PASS" if value <= self.target else "MISS"

    def as_json(self) -> dict[str, Any]:
        """The JSON form stored in results.json."""
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "qrelease": self.ours.as_json() if self.ours else None,
            "reference_name": self.reference_name,
            "reference": self.reference.as_json() if self.reference else None,
            "ratio": self.ratio,
            "value": self.value,
            "verdict": self.verdict,
            "notes": list(self.notes),
            "unit": self.unit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """Read back `as_json` (derived fields are recomputed)."""
        return cls(
            name=data["name"],
            kind=data["kind"],
            target=data["target"],
            ours=Stats.from_json(data["qrelease"]),
            reference=Stats.from_json(data["reference"]),
            reference_name=data["reference_name"],
            notes=tuple(data["notes"]),
            unit=data.get("unit", "s"),
        )


def measure(trial: Trial) -> float:
    """Run one trial: untimed setup and a garbage collection, the timed action, cleanup."""
    with trial() as action:
        gc.collect()
        started = time.perf_counter()
        action()
        return time.perf_counter() - started


def alternate(
    ours: Trial, reference: Trial, reps: int, *, warmup: bool = False
) -> tuple[Stats, Stats]:
    """Time both sides `reps` times each, alternating in ABBA order.

    `warmup` runs each side once, untimed, first (to fill caches such as uv's).
    """
    if warmup:
        measure(ours)
        measure(reference)
    ours_times: list[float] = []
    reference_times: list[float] = []
    for rep in range(reps):
        pairs = [(ours, ours_times), (reference, reference_times)]
        for trial, sink in pairs if rep % 2 == 0 else reversed(pairs):
            sink.append(measure(trial))
    return Stats.of(ours_times), Stats.of(reference_times)


def repeat(trial: Trial, reps: int) -> Stats:
    """Time one side `reps` times."""
    return Stats.of(measure(trial) for _ in range(reps))


def ratio_row(
    ctx: Context,
    name: str,
    target: float,
    ours: Trial,
    reference: Trial,
    *,
    reference_name: str,
    notes: Iterable[str] = (),
    warmup: bool = False,
) -> Row:
    """Measure qrelease against its reference and make the row; profile ours if it misses."""
    ours_stats, reference_stats = alternate(ours, reference, ctx.reps, warmup=warmup)
    row = Row(name, "ratio", target, ours_stats, reference_stats, reference_name, tuple(notes))
    if row.verdict == "MISS" and ctx.profile_dir is not None:
        row = with_profile(row, ours, ctx.profile_dir)
    return row


def with_profile(row: Row, trial: Trial, profile_dir: Path) -> Row:
    """The row with the hottest functions of one profiled qrelease trial added to its notes."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    path = profile_dir / (re.sub(r"[^a-z0-9]+", "-", row.name.lower()).strip("-") + ".prof")
    lines = profile(trial, path)
    heading = f"cProfile of one qrelease trial (saved as {path}); hottest:"
    return replace(row, notes=(*row.notes, heading, *lines))


def profile(trial: Trial, path: Path, limit: int = 8) -> list[str]:
    """Run one trial under cProfile, save the stats to `path`, return the top lines.

    Two short lists: functions by own time (where the CPU or the waiting is), then
    qrelease's own functions by cumulative time (which step it belongs to).
    """
    profiler = cProfile.Profile()
    with trial() as action:
        gc.collect()
        profiler.runcall(action)
    profiler.dump_stats(str(path))
    entries = pstats.Stats(profiler).stats
    rows = [(key, value[2], value[3]) for key, value in entries.items()]
    own = sorted(rows, key=lambda r: r[1], reverse=True)[:limit]
    ours = [r for r in rows if "/qrelease/" in r[0][0]]
    ours = sorted(ours, key=lambda r: r[2], reverse=True)[:limit]
    return [f"  self {tt:7.3f}s  cum {ct:7.3f}s  {_where(key)}" for key, tt, ct in own] + [
        f"  qrelease cum {ct:7.3f}s  {_where(key)}" for key, _tt, ct in ours
    ]


def _where(key: tuple[str, int, str]) -> str:
    """`file.py:line(function)` with the path trimmed to the package."""
    filename, line, function = key
    filename = re.sub(r"^.*/(site-packages|src|lib/python3\.\d+)/", "", filename)
    return f"{filename}:{line}({function})" if line else function


def pending_row(name: str, reason: str, reference_name: str = "") -> Row:
    """A row that cannot be measured yet (`reason` says why); it carries no numbers."""
    return Row(
        name,
        "pending",
        reference_name=reference_name,
        notes=(f"not yet measurable: {reason}",),
    )


# -- output ---------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    """A duration with a unit that keeps three significant figures readable."""
    if value >= 1:
        return f"{value:.2f}s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f}ms"
    return f"{value * 1e6:.0f}µs"


def _amount(value: float, unit: str) -> str:
    """A number in its unit: seconds scaled for reading, anything else to one decimal."""
    return _seconds(value) if unit == "s" else f"{round(value, 1):g} {unit}"


def _stats_cell(stats: Stats | None, unit: str) -> str:
    if stats is None:
        return "-"
    return f"{_amount(stats.median, unit)} [{_amount(stats.min, unit)}-{_amount(stats.max, unit)}]"


def _value_cell(row: Row) -> str:
    if row.value is None:
        return "-"
    if row.kind != "absolute":
        return f"{row.value:.3f}x"
    return f"{row.value:.1f}s" if row.unit == "s" else _amount(row.value, row.unit)


def _target_cell(row: Row) -> str:
    if row.target is None:
        return "-"
    if row.kind != "absolute":
        return f"<= {row.target:g}x"
    return f"<= {row.target:g}s" if row.unit == "s" else f"<= {row.target:g} {row.unit}"


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.name,
        _stats_cell(row.ours, row.unit if row.kind == "absolute" else "s"),
        _stats_cell(row.reference, "s"),
        _value_cell(row),
        _target_cell(row),
        row.verdict,
    )


TABLE_HEADER = (
    "benchmark",
    "qrelease median [min-max]",
    "reference median [min-max]",
    "value",
    "target",
    "result",
)


def table(rows: Iterable[Row]) -> str:
    """The results as an aligned text table, each row's notes indented beneath it."""
    rows = list(rows)
    cells = [TABLE_HEADER, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row, line in zip(rows, cells[1:], strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if row.reference_name:
            lines.append(f"    reference: {row.reference_name}")
        lines.extend(f"    {note}" if note[:1].isspace() else f"    - {note}" for note in row.notes)
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides us."""
    return [round(value, 2) for value in os.getloadavg()]


def results(
    rows: Iterable[Row],
    *,
    mode: str,
    reps: int,
    total_seconds: float,
    load_before: list[float],
    modules: list[dict[str, Any]],
) -> dict[str, Any]:
    """The results.json document.

    Keys: date (ISO 8601 UTC), machine (platform, machine, processor, cpu_count, python,
    implementation), load_average (before and after the run: 1/5/15-minute), mode ("full"
    or "quick"), reps, total_seconds (the whole run), modules (name, seconds, peak_rss_mib
    of each module's process), rows (see `Row.as_json`: name, kind, target,
    qrelease/reference as {median, min, max, samples} in seconds, reference_name, ratio,
    value, verdict, notes).
    """
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "mode": mode,
        "reps": reps,
        "total_seconds": round(total_seconds, 1),
        "modules": modules,
        "rows": [row.as_json() for row in rows],
    }


def write_results(document: dict[str, Any], path: Path) -> None:
    """Write results.json (pretty, stable key order)."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
