"""The controller in-process: real bare git remotes, real HTTP on loopback, the real engine.

Deployer and quantum backends are the in-memory fakes (venvs and qdk are not the point
here; tests/test_daemon_process.py runs the real ones). Every wait is bounded.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qrelease.config import ControllerConfig
from qrelease.daemon import Controller, run_controller
from qrelease.daemon.controller import initial_view
from qrelease.daemon.lock import ControllerLock
from qrelease.daemon.logs import REDACTED, Redactor, make_logger
from qrelease.daemon.metrics import Metrics
from qrelease.daemon.reconciler import Reconciler
from qrelease.daemon.schedule import backoff, jittered, next_delay
from qrelease.daemon.settings import Overrides
from qrelease.daemon.state import ControllerState
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends
from qrelease.quantum.memory import MemoryQuantum
from qrelease.redaction import redact as scrub
from qrelease.store import open_store
from tests.helpers.clock import ManualClock
from tests.helpers.daemon import (
    SECRET,
    WAIT_SECONDS,
    Api,
    Rig,
    SlowQuantum,
    synced,
    wait_for,
)

# -- passes and polling ---------------------------------------------------------------


def test_first_pass_syncs_then_a_pushed_commit_is_applied_within_an_interval(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    controller = rig.start(rig.config(source={"interval": timedelta(milliseconds=500)}))
    api = api_for(controller)
    wait_for("first pass to sync everything", lambda: synced(api))
    assert api.status()["last_pass"]["trigger"] == "revision"
    revision = rig.pin("dev", "bell-service", "1.1.0")
    wait_for("the pin to go live", lambda: api.row("dev", "bell-service")["deployed"] == "1.1.0")
    status = api.status()
    assert status["revision"] == revision and status["last_pass"]["outcome"] == "succeeded"
    assert controller.close() == 0


def test_nothing_new_means_no_pass_until_resync(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    clock = ManualClock(datetime(2026, 5, 4, 9, 0, tzinfo=UTC))
    config = rig.config(
        source={"interval": timedelta(milliseconds=50), "resync": timedelta(minutes=5)}
    )
    controller = rig.start(config, clock=clock)
    api = api_for(controller)
    wait_for("first pass", lambda: api.status()["passes"] >= 1)
    polls = api.metric("qrelease_source_fetch_duration_seconds_count")
    wait_for(
        "a few idle polls",
        lambda: api.metric("qrelease_source_fetch_duration_seconds_count") >= polls + 4,
    )
    assert api.status()["passes"] == 1  # polls without a change run no pass
    clock.advance(timedelta(minutes=5))
    wait_for("a resync pass", lambda: api.status()["passes"] >= 2)
    assert api.status()["last_pass"]["trigger"] == "resync"
    assert controller.close() == 0


def test_probes_status_and_metrics(rig: Rig, api_for: Callable[[Controller], Api]) -> None:
    controller = rig.start()
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api))
    assert api.get("/healthz").json() == {"status": "alive"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["revision"] == rig.work.head
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert api.metric('qrelease_reconcile_passes_total{outcome="succeeded"}') == 1
    assert api.metric("qrelease_reconcile_duration_seconds_count") == 1
    assert api.metric('qrelease_gate_outcomes_total{gate="smoke",outcome="Passed"}') == 6
    assert api.metric('qrelease_apps{env="prod",health="Healthy",sync="Synced"}') == 2
    assert api.metric("qrelease_source_last_fetch_timestamp_seconds") == rig.clock().timestamp()
    assert api.metric("qrelease_source_up") == 1
    assert api.metric("qrelease_source_errors_total") == 0
    rows = api.status()["rows"]
    assert {"env", "app", "desired", "deployed", "sync", "health", "revision"} <= set(rows[0])
    assert api.get("/nope").status_code == 404
    assert controller.close() == 0


def test_a_policy_hold_shows_in_status_and_metrics_until_it_lifts(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    controller = rig.start()
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api))
    rig.pin("prod", "bell-service", "1.1.0")  # staging has run 1.1.0 for no time; prod soaks 1h

    def held() -> dict[str, object] | None:
        rows = {(row["env"], row["app"]): row for row in api.status()["rows"]}
        row = rows[("prod", "bell-service")]
        return row if row["rollout"] == "Held" else None

    row = wait_for("the hold", held)
    assert row["step"] == "soak" and "soak: Healthy in staging for" in row["message"]
    assert api.metric('qrelease_apps_held{cause="soak",env="prod"}') == 1
    rig.soaked()  # the controller judges again when the soak ends: no commit, no request
    wait_for("the soaked release live", lambda: not held())
    wait_for(  # metrics follow at the end of the pass, after the rows
        "the hold gone from the metrics",
        lambda: "qrelease_apps_held{" not in api.get("/metrics").text,
    )
    assert controller.close() == 0


def test_http_answers_during_a_long_pass_and_stop_waits_for_it(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    slow = SlowQuantum()
    rig.quantum = slow
    controller = rig.start()
    api = api_for(controller)
    assert slow.entered.wait(WAIT_SECONDS)
    assert api.get("/healthz").status_code == 200  # answered while the pass is held open
    assert api.status()["passes"] == 0
    controller.begin_stop("test")
    assert api.get("/readyz").json()["reasons"][-1] == "the controller is stopping"
    slow.release.set()
    assert controller.wait() == 0  # the pass in progress finished and was recorded
    with open_store(rig.state) as store:
        assert store.verify().ok and store.pending_intents() == []
        assert store.last_run() is not None and store.last_run().outcome == "succeeded"  # type: ignore[union-attr]


def test_grace_period_expiry_exits_1(rig: Rig) -> None:
    slow = SlowQuantum()
    rig.quantum = slow
    controller = rig.start(rig.config(grace_period=timedelta(milliseconds=300)))
    assert slow.entered.wait(WAIT_SECONDS)
    assert controller.close() == 1  # returned while the pass is still held open
    assert not controller._worker_done.is_set()
    slow.release.set()
    assert wait_for("the pass to end", lambda: controller._worker_done.wait(0.1))


def test_an_unusable_store_is_reported_and_exits_1(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    (rig.state / "qrelease.db").mkdir(parents=True)  # a directory where the database should be
    controller = rig.start()
    api = api_for(controller)
    ready = wait_for("a store error", lambda: api.get("/readyz").json()["store_error"])
    assert "unable to open database file" in ready
    assert controller.wait() == 1
    assert controller.fatal is not None and "cannot open the state" in controller.fatal


# -- source outages -------------------------------------------------------------------


def test_remote_moved_away_then_back_keeps_state_and_recovers(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    config = rig.config(
        source={"interval": timedelta(milliseconds=100), "max_backoff": timedelta(milliseconds=400)}
    )
    controller = rig.start(config)
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api))
    known_rows = api.status()["rows"]
    hidden = rig.root / "elsewhere.git"
    rig.remote.rename(hidden)
    ready = wait_for("readyz to fail", lambda: (r := api.get("/readyz")).status_code == 503 and r)
    assert "remote.git" in ready.json()["source_error"]
    assert "the last fetch failed" in ready.json()["reasons"]
    assert api.get("/healthz").status_code == 200
    wait_for("backoff", lambda: api.status()["source"]["consecutive_failures"] >= 3)
    status = api.status()
    assert status["rows"] == known_rows  # last-known-good keeps being served
    assert status["source"]["error"]
    assert api.metric("qrelease_source_errors_total") >= 3
    assert api.metric("qrelease_source_up") == 0
    hidden.rename(rig.remote)
    revision = rig.pin("staging", "qrng", "0.1.0")
    wait_for("recovery", lambda: api.get("/readyz").status_code == 200)
    wait_for("the new pin", lambda: api.row("staging", "qrng")["deployed"] == "0.1.0")
    assert api.status()["source"]["error"] is None and api.status()["revision"] == revision
    logged = [json.loads(line) for line in rig.log.getvalue().splitlines()]
    assert any(e["event"] == "source error" for e in logged)
    assert any(e["event"] == "source recovered" for e in logged)
    assert controller.close() == 0


def test_unreachable_from_the_start_is_not_ready_then_recovers(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    hidden = rig.root / "later.git"
    rig.remote.rename(hidden)
    controller = rig.start(rig.config(source={"max_backoff": timedelta(milliseconds=300)}))
    api = api_for(controller)
    body = wait_for("a source error", lambda: api.get("/readyz").json()["source_error"])
    assert "cannot clone" in body
    assert api.get("/readyz").json()["reasons"][0] == "the source has not been fetched yet"
    assert api.get("/healthz").status_code == 200
    hidden.rename(rig.remote)
    wait_for("ready", lambda: api.get("/readyz").status_code == 200)
    wait_for("first pass", lambda: synced(api))
    assert controller.close() == 0


def test_a_deleted_branch_is_a_source_error(rig: Rig, api_for: Callable[[Controller], Api]) -> None:
    controller = rig.start(rig.config(source={"branch": "release"}))
    api = api_for(controller)
    error = wait_for("a source error", lambda: api.get("/readyz").json()["source_error"])
    assert "refs/heads/release" in error
    assert controller.close() == 0


# -- GitPython must not leak in a long-running process ----------------------------------


def _open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _children(*, gate_workers: bool = False) -> set[str]:
    """Child processes: all but the quantum gate worker (long-lived by design), or just it."""
    pids: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        with (task / "children").open() as listing:
            pids.update(listing.read().split())
    return {pid for pid in pids if _is_gate_worker(pid) == gate_workers}


def _is_gate_worker(pid: str) -> bool:
    try:
        command = (Path("/proc") / pid / "cmdline").read_bytes()
    except OSError:
        return False  # gone meanwhile
    return b"qrelease.quantum.gate_worker" in command


def test_idle_and_changing_polls_leak_no_fds_or_processes(rig: Rig) -> None:
    config = rig.config()
    state = ControllerState(initial_view(config))
    with Reconciler(config, state, Metrics(), make_logger(stream=rig.log), rig.backends) as rec:
        rec.cycle()
        rec.cycle()  # warm: engine, store statements, loader cache
        fds_before, children_before = _open_fds(), _children()
        for _ in range(200):
            rec.cycle()
        fds_idle = _open_fds()
        for n in range(10):
            rig.pin("dev", "qrng", "0.1.0" if n % 2 == 0 else "0.2.0")
            rec.cycle()
        fds_changing = _open_fds()
        assert state.view.passes == 11  # the first, then one per change (idle polls run none)
        assert _children() == children_before == set()
        assert len(_children(gate_workers=True)) <= 1  # one worker, reused by every release
    print(f"open fds: {fds_before} before, {fds_idle} after 200 idle polls, {fds_changing} after")
    assert fds_idle <= fds_before
    assert fds_changing <= fds_before


# -- reload, lock, command-line entry point ---------------------------------------------


def test_reload_applies_interval_and_reports_restart_only_settings(
    rig: Rig, tmp_path: Path, api_for: Callable[[Controller], Api]
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[source]\ninterval = "10s"\n')
    overrides = Overrides(repo=str(rig.remote), state_dir=rig.state)  # listen from the file
    config = rig.config(source={"interval": timedelta(seconds=10)})
    controller = rig.start(config, overrides=overrides, config_path=path)
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api))
    assert api.status()["source"]["interval_seconds"] == 10
    path.write_text(
        'listen = "127.0.0.1:1"\n[source]\ninterval = "250ms"\n[gates]\ntimeout = "1m"\n'
    )
    assert controller.reload()
    wait_for("new interval", lambda: api.status()["source"]["interval_seconds"] == 0.25)
    path.write_text("[source]\ninterval = 0\n")
    assert not controller.reload()  # a bad file keeps the running settings
    assert api.status()["source"]["interval_seconds"] == 0.25
    logged = [json.loads(line) for line in rig.log.getvalue().splitlines()]
    restart = [e for e in logged if e["event"] == "settings need a restart to change"]
    assert restart and restart[0]["settings"] == ["listen", "gates"]
    assert controller.close() == 0


def test_second_controller_on_the_same_state_dir_is_refused(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    with ControllerLock(rig.state):
        code = run_controller(
            rig.config(),
            repo=None,
            state_dir=None,
            interval=None,
            listen=None,
            config_path=None,
            backends_factory=rig.backends,
        )
    assert code == 1
    err = capsys.readouterr().err
    assert "another controller" in err and f"pid {os.getpid()}" in err
    assert "controller.lock" in err


def test_run_controller_once_is_one_pass(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    def once() -> int:
        return run_controller(
            ControllerConfig(),
            repo=str(rig.remote),
            state_dir=rig.state,
            interval=None,
            listen=None,
            config_path=None,
            once=True,
            backends_factory=rig.backends,
            log_stream=rig.log,
        )

    assert once() == 0
    with open_store(rig.state) as store:
        assert len(store.all_observed()) == 6 and store.verify().ok
    rig.quantum.failing_programs["manifests/bell-service/programs/bell.qs"] = "profile says no"
    rig.pin("prod", "bell-service", "1.1.0")
    assert once() == 1


def test_once_against_a_missing_remote_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_controller(
        ControllerConfig(log_level="error"),
        repo=str(tmp_path / "missing.git"),
        state_dir=tmp_path / "state",
        interval=None,
        listen=None,
        config_path=None,
        once=True,
        backends_factory=lambda state: Backends(
            lambda e: MemoryDeployer(), lambda e: MemoryQuantum()
        ),
    )
    assert code == 1
    assert "cannot clone" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("interval", "listen", "message"),
    [
        (timedelta(0), None, "source.interval"),
        (None, "no-port", "listen"),
    ],
)
def test_bad_settings_are_usage_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    interval: timedelta | None,
    listen: str | None,
    message: str,
) -> None:
    code = run_controller(
        ControllerConfig(),
        repo=str(tmp_path),
        state_dir=tmp_path / "state",
        interval=interval,
        listen=listen,
        config_path=None,
    )
    assert code == 2
    assert capsys.readouterr().err.startswith(message)


def test_port_in_use_exits_1(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = run_controller(
            rig.config(),
            repo=None,
            state_dir=None,
            interval=None,
            listen=f"127.0.0.1:{port}",
            config_path=None,
            backends_factory=rig.backends,
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    with ControllerLock(rig.state):
        pass  # the lock was released


# -- logs, schedule -------------------------------------------------------------------


def test_redactor_hides_sensitive_keys_url_credentials_and_known_secrets() -> None:
    redact = Redactor(lambda: [SECRET, None, ""])
    event = redact(
        None,
        "info",
        {
            "event": f"calling https://bot:{SECRET}@git.example/r.git failed",
            "headers": {"Authorization": "Basic abc", "x-gitlab-token": SECRET, "accept": "*/*"},
            "password": "p",
            "items": [f"echo {SECRET}"],
            "count": 3,
        },
    )
    assert event == {
        "event": "calling https://***@git.example/r.git failed",
        "headers": {"Authorization": REDACTED, "x-gitlab-token": REDACTED, "accept": "*/*"},
        "password": REDACTED,
        "items": [f"echo {REDACTED}"],
        "count": 3,
    }
    assert scrub("ssh://git@host/x plain") == "ssh://***@host/x plain"


def test_logs_are_json_lines_with_redaction() -> None:
    stream = io.StringIO()
    log = make_logger("info", lambda: [SECRET], stream)
    log.debug("hidden")
    log.info("fetched", env="dev", app="qrng", revision="abc", step="install", note=SECRET)
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["fetched", "failed"]
    assert list(lines[0])[:3] == ["timestamp", "level", "event"]
    assert lines[0]["note"] == REDACTED and lines[0]["step"] == "install"
    assert SECRET not in stream.getvalue() and "RuntimeError" in lines[1]["exception"]


def test_backoff_doubles_to_the_cap_and_jitter_stays_within_ten_percent() -> None:
    interval, cap = timedelta(seconds=30), timedelta(minutes=10)
    waits = [backoff(interval, n, cap).total_seconds() for n in range(8)]
    assert waits == [30, 60, 120, 240, 480, 600, 600, 600]
    assert backoff(interval, 10_000, cap) == cap
    assert jittered(interval, 0.0) == timedelta(seconds=27)
    assert jittered(interval, 1.0) == timedelta(seconds=33)
    assert next_delay(interval, 0, cap, 0.5) == interval
    assert backoff(timedelta(minutes=20), 3, cap) == timedelta(minutes=20)  # cap below interval


def test_lock_file_names_the_holder(tmp_path: Path) -> None:
    lock = ControllerLock(tmp_path)
    lock.acquire()
    try:
        assert (tmp_path / "controller.lock").read_text().split() == [
            str(os.getpid()),
            "controller",
        ]
    finally:
        lock.release()
        lock.release()


def test_daemon_import_loads_no_heavy_sdk() -> None:
    code = (
        "import sys, qrelease.daemon; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'textual','azure','qdk'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_gates_section_sets_the_sandbox_limits(tmp_path: Path) -> None:
    from qrelease.config import ConfigError, load_config
    from qrelease.model.types import format_duration, parse_duration

    path = tmp_path / "controller.toml"
    path.write_text('[gates]\ntimeout = "90s"\nmemory_mib = 2048\n')
    limits = load_config(path).gates.limits()
    assert (limits.seconds, limits.memory_mib) == (90.0, 2048)
    assert load_config(None).gates.limits().seconds == 600.0
    path.write_text("[gates]\nmemory_mib = 10\n")
    with pytest.raises(ConfigError, match="memory_mib"):
        load_config(path)
    for text in ("1ms", "1h30m", "2d3h4m5s6ms", "0s"):  # budgets survive a round trip
        assert format_duration(parse_duration(text)) == text


def test_status_shows_every_planned_row_and_the_running_step_during_a_pass(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    slow = SlowQuantum()
    rig.quantum = slow
    controller = rig.start(rig.config(concurrency=1))  # one rollout at a time: a still picture
    api = api_for(controller)
    assert slow.entered.wait(WAIT_SECONDS)  # the first rollout is in its gates
    rows = {(r["env"], r["app"]): r for r in api.status()["rows"]}
    assert len(rows) == 6  # every row exists from the moment the plan is made
    assert {(r["health"], r["rollout"]) for r in rows.values()} == {("Progressing", "Running")}
    assert any(r["step"] == "quantum gates" for r in rows.values())
    with open_store(rig.state) as store:  # what the CLI and the TUI read says the same
        recorded = {s.key: s for s in store.all_observed()}
    assert {key: (s.health, s.rollout_step) for key, s in recorded.items()} == {
        key: (r["health"], r["step"]) for key, r in rows.items()
    }
    slow.release.set()
    wait_for("the pass to finish", lambda: synced(api))
    assert controller.close() == 0


def test_a_cycle_loads_git_once_and_takes_metrics_from_the_pass_report(
    rig: Rig, api_for: Callable[[Controller], Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    from qrelease.source.loader import Loader
    from qrelease.store.sqlite import Store

    loads: list[str] = []
    load = Loader.load
    monkeypatch.setattr(
        Loader, "load", lambda self, rev="HEAD": loads.append(rev) or load(self, rev)
    )
    reads: list[str] = []
    iter_events = Store.iter_events
    monkeypatch.setattr(
        Store, "iter_events", lambda self, **kw: reads.append("events") or iter_events(self, **kw)
    )
    controller = rig.start()
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api))
    assert len(loads) == 1  # plan, record, status view and metrics share the pass's snapshot
    smoke = 'qrelease_gate_outcomes_total{gate="smoke",outcome="Passed"}'
    # rows move with each rollout step; metrics with the pass's report, a moment later
    wait_for("the pass's metrics", lambda: api.metric(smoke) == 6)
    assert reads == []  # gate counts come from the report, not from re-reading the log
    assert controller.close() == 0
