"""Every benchmark runs end to end at a tiny size with one repetition (timings not asserted).

`make bench` is not part of `make test`; this keeps the suite from rotting between runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import suite
from benchmarks.__main__ import main
from benchmarks.harness import Context, Row, Sizes

pytestmark = pytest.mark.slow


def _tiny(workdir: Path) -> Context:
    return Context(sizes=Sizes.tiny(), reps=1, workdir=workdir, quick=True, profile_dir=None)


def _measured(row: Row) -> bool:
    """True when a row carries real measurements for what its kind needs.

    Timings and sizes must be positive; a soak row's growth (RSS, open fds) may be 0 or less.
    """
    if row.ours is None:
        return False
    if row.name.startswith("soak:"):
        return row.kind == "absolute" and len(row.ours.samples) == 1
    if row.ours.median <= 0:
        return False
    return row.kind == "absolute" or (row.reference is not None and row.reference.median > 0)


@pytest.mark.parametrize("name", suite.MODULES)
def test_benchmark_runs_at_a_tiny_size(name: str, tmp_path: Path) -> None:
    rows = suite.runner(name)(_tiny(tmp_path))
    assert rows
    for row in rows:
        assert row.kind in ("ratio", "absolute"), row
        assert _measured(row), row
        assert row.verdict in ("PASS", "MISS"), row
        assert len(row.ours.samples if row.ours else ()) == 1


def test_main_prints_the_table_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    argv = ["--reps", "1", "--no-profile", "--results", str(results)]
    argv += ["--data", str(tmp_path / "data")]
    code = main([*argv, "--only", "history"], sizes=Sizes.tiny())
    assert code == 0
    out = capsys.readouterr().out
    assert "history of one env" in out
    document = json.loads(results.read_text())
    keys = {"date", "machine", "load_average", "mode", "reps", "total_seconds", "modules", "rows"}
    assert keys <= set(document)
    assert {"platform", "cpu_count", "python"} <= set(document["machine"])
    ratio = next(row for row in document["rows"] if row["kind"] == "ratio")
    assert ratio["qrelease"]["median"] > 0 and ratio["reference"]["median"] > 0
    assert ratio["ratio"] == pytest.approx(
        ratio["qrelease"]["median"] / ratio["reference"]["median"]
    )
    assert ratio["verdict"] in ("PASS", "MISS")
