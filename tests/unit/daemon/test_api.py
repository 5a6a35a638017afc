"""The local API: a CLI reconcile asks the running controller instead of racing it."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import timedelta

import httpx
from click.testing import CliRunner

from qrelease.cli import main
from qrelease.daemon import Controller
from qrelease.daemon.api import ENDPOINT_NAME, RECONCILE_PATH, TOKEN_NAME, read_endpoint
from qrelease.daemon.lock import ControllerLock
from qrelease.store import open_store
from tests.helpers.daemon import Api, Rig, synced, wait_for

QUIET = {"interval": timedelta(minutes=10), "resync": timedelta(hours=1)}


def test_reconcile_asks_the_running_controller_and_nothing_runs_twice(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    with ControllerLock(rig.state):  # held as `controller run` holds it
        controller = rig.start(rig.config(source=QUIET))
        api = api_for(controller)
        wait_for("the first pass", lambda: synced(api))
        rig.soaked()
        revision = rig.pin("prod", "bell-service", "1.1.0")
        result = CliRunner().invoke(
            main, ["reconcile", "--repo", str(rig.remote), "--state", str(rig.state)]
        )
        controller.close()
    assert result.exit_code == 0, result.output
    assert "another controller" in result.stderr and "asking it to run the pass" in result.stderr
    assert "prod/bell-service: install" in result.stderr  # streamed as the pass ran
    prod = [line for line in result.stdout.splitlines() if line.startswith("prod ")]
    assert any("bell-service  1.1.0" in line and "Synced" in line for line in prod)
    with open_store(rig.state) as store:
        deploys = store.events(env="prod", app="bell-service", actions=["deploy"])
        assert [(e.to_version, e.revision) for e in deploys][-1] == ("1.1.0", revision)
        assert [e.to_version for e in deploys].count("1.1.0") == 1  # recorded once
        assert store.events(actions=["recover"]) == []
        assert store.verify().ok
    assert not (rig.state / TOKEN_NAME).exists() and not (rig.state / ENDPOINT_NAME).exists()


def test_the_api_needs_the_token_from_the_state_dir(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    controller = rig.start(rig.config(source=QUIET))
    api = api_for(controller)
    token_file = rig.state / TOKEN_NAME
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    endpoint = read_endpoint(rig.state)
    assert endpoint is not None and endpoint[0] == f"http://{controller.http.address}"
    refused = api.client.post(RECONCILE_PATH, json={}, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert api.client.post(RECONCILE_PATH, json={}).status_code == 401
    headers = {"Authorization": f"Bearer {endpoint[1]}"}
    bad = api.client.post(RECONCILE_PATH, json={"retry": "always"}, headers=headers)
    assert bad.status_code == 400
    with httpx.Client(base_url=endpoint[0], timeout=10) as client:
        response = client.post(RECONCILE_PATH, json={"env": "dev"}, headers=headers)
    events = [json.loads(line) for line in response.text.splitlines()]
    report = events[-1]["report"]
    assert {row["env"] for row in report["rows"]} == {"dev"} and report["converged"]
    controller.close()


def test_a_second_reconcile_is_refused_while_one_holds_the_state_dir(rig: Rig) -> None:
    with ControllerLock(rig.state, role="reconcile"):
        result = CliRunner().invoke(
            main, ["reconcile", "--repo", str(rig.remote), "--state", str(rig.state)]
        )
    assert result.exit_code == 1
    assert (
        "another reconcile" in result.stderr and "try again when it has finished" in result.stderr
    )
