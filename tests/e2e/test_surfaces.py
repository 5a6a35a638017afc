"""Every surface shows the same rows for the same state: `status`, `status --json`, `/status`, TUI.

The state is made the way it happens: a running controller (fake backends, real git, real
SQLite, real HTTP) takes a pin change through `qrelease reconcile`, which asks it for the
pass; a drifted release's repair fails its gates and a candidate fails its health check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from qrelease.cli import main
from qrelease.cli.render import STATUS_COLUMNS
from qrelease.daemon import Controller
from qrelease.daemon.lock import ControllerLock
from qrelease.tui.data import Dashboard
from tests.helpers.daemon import Api, Rig, synced, wait_for

QUIET = {"interval": timedelta(minutes=10), "resync": timedelta(hours=1)}
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def cli(rig: Rig, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--repo", str(rig.remote), "--state", str(rig.state)])
    return result.exit_code, result.stdout


def table_rows(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """The `status` table read back into columns (cells are separated by two spaces or more)."""
    header, *lines = text.splitlines()
    assert re.split(r"\s{2,}", header) == list(STATUS_COLUMNS)
    rows = {}
    for line in lines:
        cells = re.split(r"\s{2,}", line, maxsplit=len(STATUS_COLUMNS) - 1)
        row = dict(
            zip(STATUS_COLUMNS, cells + [""] * (len(STATUS_COLUMNS) - len(cells)), strict=True)
        )
        rows[(row["ENV"], row["APP"])] = row
    return rows


def as_table(row: dict[str, Any]) -> dict[str, str]:
    """A JSON row as the table shows it."""
    rollout = (
        row["rollout"] + (f" ({row['step']})" if row["step"] else "") if row["rollout"] else "-"
    )
    cells = [
        *(row["env"], row["app"], row["desired"] or "-", row["deployed"] or "-", row["sync"]),
        *(row["health"], rollout, row["target"] or "-", row["availability"], row["message"]),
    ]
    return dict(zip(STATUS_COLUMNS, cells, strict=True))


def test_every_surface_shows_the_same_rows(rig: Rig, api_for: Callable[[Controller], Api]) -> None:
    with ControllerLock(rig.state):  # held as `controller run` holds it
        controller = rig.start(rig.config(source=QUIET))
        api = api_for(controller)
        wait_for("the first pass", lambda: synced(api))
        rig.deployer.drift[("dev", "qrng")] = "qrelease.lock.json is missing"
        rig.quantum.failing_programs["manifests/qrng/programs/qrng.qs"] = "UseOfDynamicBool"
        rig.deployer.unhealthy.add("1.1.0")
        rig.soaked()
        rig.pin("prod", "bell-service", "1.1.0")
        code, _ = cli(rig, "reconcile")
        assert code == 1  # two desired changes did not go live
        web = {(r["env"], r["app"]): r for r in api.status()["rows"]}
        code, out = cli(rig, "status", "--json")
        assert code == 0
        as_json = {(r["env"], r["app"]): r for r in json.loads(out)}
        code, out = cli(rig, "status")
        table = table_rows(out)
        dashboard = Dashboard(str(rig.remote), rig.state, lambda env: rig.quantum, lambda: NOW)
        with dashboard.watcher() as watcher:
            watcher.poll()  # the first frame reads only the store
            watcher.poll()  # the second, Git's environment files
            board = watcher.poll(reload_git=True)
        controller.close()
    assert board is not None and board.complete
    tui = {(row.env, row.app): row.as_json() for row in board.rows.values()}
    assert web == as_json == tui
    assert table == {key: as_table(row) for key, row in web.items()}
    repaired, candidate = web[("dev", "qrng")], web[("prod", "bell-service")]
    # the drift repair failed its gates: OutOfSync, as the planner decided, not "Synced"
    assert (repaired["sync"], repaired["rollout"], repaired["step"]) == (
        "OutOfSync",
        "Failed",
        "gates",
    )
    # the candidate failed before the switch: what runs is still the healthy 1.0.0
    assert (candidate["deployed"], candidate["sync"], candidate["health"]) == (
        "1.0.0",
        "OutOfSync",
        "Healthy",
    )
    assert candidate["rollout"] == "Failed" and "health check failed" in candidate["message"]
