"""The README's "A session" works as written: typed into bash on a fresh repo and state dir.

Nothing is prepared: no wheelhouse, no state dir. `qrelease` is found on PATH (the venv's
bin/ first, as after `. .venv/bin/activate`). Every command must exit 0 unless the next
one is `echo $?`, and what each prints must have the shape the README shows. When the
qdk that the example manifests pin is the one installed here, the session runs with
`UV_OFFLINE=1`: the example apps build locally and qdk comes from uv's cache.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.helpers.gitops import GIT_ENV
from tests.helpers.transcript import console_block, mismatch, parse, run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def example_qdk_pin() -> str:
    manifest = yaml.safe_load((ROOT / "manifests/bell-service/1.2.0.yaml").read_text())
    return next(p["version"] for p in manifest["classical"]["packages"] if p["name"] == "qdk")


def test_the_readme_session_runs_as_written(tmp_path: Path) -> None:
    steps = parse(console_block((ROOT / "README.md").read_text(encoding="utf-8"), "## A session"))
    assert [s.command.split()[1] for s in steps if s.command.startswith("qrelease ")][:3] == [
        "init",
        "validate",
        "plan",
    ]
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "QDK_PYTHON_TELEMETRY": "none",
        "COLUMNS": "200",
    }
    if version("qdk") == example_qdk_pin():
        env["UV_OFFLINE"] = "1"
    run(steps, tmp_path, env, timeout=900)
    for index, step in enumerate(steps):
        shown_exit = index + 1 < len(steps) and steps[index + 1].command == "echo $?"
        if not shown_exit:
            assert step.exit_code == 0, f"$ {step.command}\n" + "\n".join(step.printed)
        problem = mismatch(step.expected, step.printed)
        assert problem is None, f"$ {step.command}: {problem}\n" + "\n".join(step.printed)
    assert (tmp_path / "state" / "wheels").is_dir()  # the wheelhouse was made on first use
