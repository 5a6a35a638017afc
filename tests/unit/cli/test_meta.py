"""`qrelease version` (client and controller) and `qrelease completion`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease import __version__
from qrelease.cli import main
from qrelease.daemon import Controller
from tests.helpers.daemon import Api, Rig

QUIET = {"interval": timedelta(minutes=10), "resync": timedelta(hours=1)}
QRELEASE = Path(sys.executable).parent / "qrelease"


def test_the_version_is_the_installed_distributions() -> None:
    assert __version__ == installed_version("qrelease")
    done = subprocess.run([QRELEASE, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout == f"qrelease, version {__version__}\n"


def test_version_without_a_controller_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["version", "--state", str(tmp_path / "state")])
    assert result.exit_code == 0, result.stderr
    client, server = result.stdout.splitlines()
    assert client.startswith(f"client      qrelease {__version__} (Python ")
    assert server == f"controller  not reachable: no controller serves {tmp_path / 'state'}"


def test_version_asks_the_running_controller(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    controller = rig.start(rig.config(source=QUIET))
    api_for(controller)
    url = f"http://{controller.http.address}"
    result = CliRunner().invoke(main, ["version", "--state", str(rig.state), "-o", "json"])
    controller.close()
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["client"]["version"] == __version__
    assert data["controller"] == {
        "reachable": True,
        "url": url,
        "version": __version__,
        "pid": os.getpid(),
    }


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_clicks(shell: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0, result.stderr
    assert "_QRELEASE_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout


def test_completion_completes_commands_and_options_in_bash() -> None:
    """What bash's completion function asks the program, with the variables it sets."""

    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_QRELEASE_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        done = subprocess.run([QRELEASE], env=env, capture_output=True, text=True, check=True)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("qrelease sta") == ["status"]
    assert {"get", "wait", "sync", "version", "completion"} <= set(complete("qrelease "))
    assert "--exit-code" in complete("qrelease plan --")
    assert complete("qrelease status -o ") == ["table", "wide", "json", "yaml"]


def test_a_misspelt_command_is_refused_with_the_closest_names() -> None:
    result = CliRunner().invoke(main, ["stauts"])
    assert result.exit_code == 2
    assert "No such command 'stauts'; did you mean status" in result.stderr
    assert "did you mean" not in CliRunner().invoke(main, ["xyzzy"]).stderr
    done = subprocess.run([QRELEASE, "histroy"], capture_output=True, text=True)
    assert done.returncode == 2 and "did you mean history?" in done.stderr
