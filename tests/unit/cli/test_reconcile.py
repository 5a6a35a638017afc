"""`plan --exit-code`, and `sync` / `reconcile --app` through a running controller.

Real git repos and SQLite; the controller is the in-process rig of tests/helpers/daemon
with in-memory deployers, reached over its real local HTTP API.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from qrelease.cli import main
from qrelease.daemon import Controller
from qrelease.daemon.lock import ControllerLock
from qrelease.store import open_store
from tests.helpers.cli import Cli
from tests.helpers.daemon import Api, Rig, synced, wait_for
from tests.helpers.gitops import GitOpsRepo, make_repo

QRELEASE = Path(sys.executable).parent / "qrelease"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
QUIET = {"interval": timedelta(minutes=10), "resync": timedelta(hours=1)}
EMPTY_DEV = b"environment: dev\nclassical: {kind: venv}\nquantum: {kind: local}\napps: {}\n"


def test_plan_exit_code_says_whether_changes_are_pending(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    cli = Cli(example_repo.path, tmp_path / "state")
    pending = cli("plan", "--exit-code")
    assert pending.exit_code == 2, pending.stderr
    assert pending.stdout.startswith("revision ") and "6 row(s) pending" in pending.stdout
    assert cli("plan").exit_code == 0  # without the flag, a plan that ran is a success
    data = json.loads(cli("plan", "--exit-code", "-o", "json", "--env", "dev").stdout)
    assert data["pending"] == 2 and {a["action"] for a in data["actions"]} == {"Deploy"}
    wide = cli("plan", "-o", "wide", "--app", "qrng").stdout.splitlines()
    assert wide[1].split()[:7] == ["ENV", "APP", "ACTION", "FROM", "TO", "SYNC", "CHECKS"]
    assert {line.split()[1] for line in wide[2:]} == {"qrng"}

    nothing = make_repo(tmp_path / "empty", {"releases/dev.yaml": EMPTY_DEV})
    quiet = Cli(nothing.path, tmp_path / "state2")("plan", "--exit-code")
    assert quiet.exit_code == 0, quiet.stderr
    assert "0 change(s), 0 row(s) pending" in quiet.stdout

    example_repo.write("manifests/qrng/9.9.9.yaml", "app: qrng\nversion: [not, semver]\n")
    example_repo.commit("a broken manifest")
    broken = cli("plan", "--exit-code")
    assert broken.exit_code == 1
    assert broken.stderr.startswith("manifests/qrng/9.9.9.yaml:")


def test_plan_names_a_misspelt_environment(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    result = Cli(example_repo.path, tmp_path / "state")("plan", "--env", "prd")
    assert result.exit_code == 1 and "did you mean prod?" in result.stderr


def test_sync_asks_the_controller_for_one_app_and_streams_it(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    with ControllerLock(rig.state):  # held as `controller run` holds it
        controller = rig.start(rig.config(source=QUIET))
        api = api_for(controller)
        wait_for("the first pass", lambda: synced(api))
        rig.soaked()
        rig.pin("prod", "bell-service", "1.1.0")
        rig.pin("prod", "qrng", "0.2.0")
        cli = Cli(rig.remote, rig.state)
        result = cli("sync", "--env", "prod", "--app", "bell-service")
        controller.close()
    assert result.exit_code == 0, result.stderr
    assert "prod/bell-service: install" in result.stderr  # streamed while the pass ran
    assert "prod/bell-service: Succeeded in " in result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[:4] for row in rows] == [["prod", "bell-service", "1.1.0", "1.1.0"]]
    with open_store(rig.state) as store:
        assert store.get_observed("prod", "qrng").deployed == "0.1.0"  # left for the next pass
        deploys = store.events(env="prod", actions=["deploy"])
        assert [(e.app, e.to_version) for e in deploys][-1] == ("bell-service", "1.1.0")


def test_sync_without_a_controller_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sync", "--state", str(tmp_path / "state")])
    assert result.exit_code == 1
    assert "no controller serves" in result.stderr and "qrelease controller run" in result.stderr


def test_sync_names_a_misspelt_app_before_asking(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    controller = rig.start(rig.config(source=QUIET))
    api_for(controller)
    result = Cli(rig.remote, rig.state)("sync", "--app", "qrgn")
    controller.close()
    assert result.exit_code == 1 and "did you mean qrng?" in result.stderr


def on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run `argv` with stderr on a pseudo-terminal, as in a user's shell: (exit, stdout, tty)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=env) as process:
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed: the process is done with it
                break
            if not chunk:
                break
            screen += chunk
        out = process.stdout.read() if process.stdout else b""
        code = process.wait()
    os.close(leader)
    return code, out.decode(), screen.decode(errors="replace")


def test_sync_on_a_terminal_draws_the_live_view_with_step_times(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    with ControllerLock(rig.state):
        controller = rig.start(rig.config(source=QUIET))
        api = api_for(controller)
        wait_for("the first pass", lambda: synced(api))
        rig.soaked()
        rig.pin("prod", "bell-service", "1.1.0")
        argv = [str(QRELEASE), "sync", "--env", "prod", "--repo", str(rig.remote)]
        code, out, screen = on_a_terminal([*argv, "--state", str(rig.state)])
        controller.close()
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn for a terminal, not written as plain lines
    shown = " ".join(ESCAPES.sub("", screen).split())
    assert re.search(
        r"✓ prod/bell-service Succeeded [0-9.]+m?s queued [0-9.]+m?s, .*install", shown
    )
    assert "prod/bell-service: install" not in shown  # the plain lines are for pipes
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [
        ["prod", "bell-service", "1.1.0", "1.1.0"],
        ["prod", "qrng", "0.1.0", "0.1.0"],
    ]
