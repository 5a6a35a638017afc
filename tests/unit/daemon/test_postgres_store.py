"""The controller on a PostgreSQL store: passes recorded there, the flag over the file, reloads.

Real git remotes, a real embedded PostgreSQL, the real engine; the deployer and quantum
backends are the in-memory fakes (tests/helpers/daemon.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from qrelease.config import ControllerConfig, StoreConfig
from qrelease.daemon import Controller, run_controller
from qrelease.daemon import settings as daemon_settings
from qrelease.daemon.settings import Overrides
from qrelease.model.vocabulary import EventKind, PassOutcome
from qrelease.store import DB_NAME, open_store
from tests.helpers.daemon import Api, Rig, synced, wait_for


def test_one_controller_pass_is_recorded_in_postgresql(rig: Rig, postgres_url: str) -> None:
    code = run_controller(
        ControllerConfig(),
        repo=str(rig.remote),
        state_dir=rig.state,
        interval=None,
        listen=None,
        config_path=None,
        once=True,
        backends_factory=rig.backends,
        log_stream=rig.log,
        store_url=postgres_url,
    )
    assert code == 0, rig.log.getvalue()
    with open_store(postgres_url) as store:
        assert len(store.all_observed()) == 6
        assert store.count_events() > 0 and store.verify().ok
        last = store.last_run()
        assert last is not None and last.outcome == PassOutcome.SUCCEEDED
        assert store.get_meta("last_revision") == rig.work.head
    assert not (rig.state / DB_NAME).exists()


def test_a_running_controller_applies_a_pin_through_postgresql(
    rig: Rig, postgres_url: str, tmp_path: Path, api_for: Callable[[Controller], Api]
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text("")  # the store comes from the flag, so a reload must keep it
    # the test server trusts local connections, so any password is accepted
    with_password = postgres_url.replace("postgres@", "postgres:Hunter2Secret@", 1)
    overrides = Overrides(repo=str(rig.remote), state_dir=rig.state, store_url=with_password)
    config = rig.config(store=StoreConfig(url=with_password))
    controller = rig.start(config, overrides=overrides, config_path=path)
    api = api_for(controller)
    wait_for("first pass to sync everything", lambda: synced(api))
    rig.pin("dev", "bell-service", "1.1.0")
    wait_for("the pin to go live", lambda: api.row("dev", "bell-service")["deployed"] == "1.1.0")
    assert controller.reload()
    assert controller.config.store.url == with_password
    assert controller.close() == 0
    with open_store(postgres_url) as store:
        state = store.get_observed("dev", "bell-service")
        assert state is not None and state.deployed == "1.1.0"
        deploys = store.events(env="dev", app="bell-service", actions=[EventKind.DEPLOY])
        assert deploys and deploys[-1].to_version == "1.1.0"
        assert store.verify().ok
    assert not (rig.state / DB_NAME).exists()
    logged = [json.loads(line) for line in rig.log.getvalue().splitlines()]
    started = next(e for e in logged if e["event"] == "controller started")
    assert started["store"].startswith("postgresql://***@/test_")
    assert "Hunter2Secret" not in rig.log.getvalue()
    restart = [e for e in logged if e["event"] == "settings need a restart to change"]
    assert restart and "store.url" not in restart[0]["settings"]  # the flag still holds


def test_the_store_flag_beats_the_file_and_a_changed_url_needs_a_restart(tmp_path: Path) -> None:
    from_file = ControllerConfig(store=StoreConfig(url="postgresql://qrelease@db-a/qrelease"))
    flag = Overrides(repo=str(tmp_path), store_url="postgresql://qrelease@db-b/qrelease")
    assert daemon_settings.effective(from_file, flag).store.url == flag.store_url
    assert daemon_settings.effective(from_file, Overrides(repo=str(tmp_path))).store == (
        from_file.store
    )
    moved = from_file.model_copy(update={"store": StoreConfig(url="sqlite:///other.db")})
    assert daemon_settings.restart_needed(from_file, moved) == ["store.url"]
