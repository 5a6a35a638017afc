"""The real controller process: started as `python -c` on the entry point, stopped by signals.

One test runs the real backends (uv virtualenvs from the example wheels, qdk gates) end to
end; the others use the in-memory backends, since what they check is the process: the
state dir lock, SIGHUP and SIGINT. Every wait is bounded; every process is reaped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qrelease.config import WebhookConfig
from qrelease.daemon.webhooks import sign
from qrelease.examples.demo import build_wheelhouse
from qrelease.store import open_store
from tests.helpers.daemon import SECRET, wait_for
from tests.helpers.gitops import GIT_ENV, GitOpsRepo, relaxed

DEFAULT_SECRET_ENV = WebhookConfig().secret_env

ENTRY = """
import sys
from datetime import timedelta
from pathlib import Path

from qrelease.config import ControllerConfig, load_config
from qrelease.daemon import run_controller
from qrelease.daemon.reconciler import local_backends

repo, state, listen, config_path, backends, interval = sys.argv[1:]
factory = local_backends
if backends == "memory":
    from qrelease.deployers.memory import MemoryDeployer
    from qrelease.engine import Backends
    from qrelease.quantum.memory import MemoryQuantum

    deployer, quantum = MemoryDeployer(), MemoryQuantum()
    factory = lambda state_dir: Backends(lambda env: deployer, lambda env: quantum)
sys.exit(
    run_controller(
        load_config(Path(config_path)) if config_path else ControllerConfig(),
        repo=repo,
        state_dir=Path(state),
        interval=timedelta(seconds=float(interval)) if interval else None,
        listen=listen,
        config_path=Path(config_path) if config_path else None,
        backends_factory=factory,
    )
)
"""


class Daemon:
    """One controller process, its log file and an HTTP client once it listens."""

    def __init__(self, root: Path, name: str, args: list[str]) -> None:
        self.log_path = root / f"{name}.log"
        self._log = self.log_path.open("w")
        env = {**os.environ, **GIT_ENV, "QDK_PYTHON_TELEMETRY": "none", DEFAULT_SECRET_ENV: SECRET}
        self.process = subprocess.Popen(
            [sys.executable, "-c", ENTRY, *args],
            cwd=root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client: httpx.Client | None = None

    def events(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def started(self, timeout: float = 20.0) -> httpx.Client:
        """Wait for the 'controller started' event; a client for its listen address."""

        def listening() -> str | None:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.output()}")
            found = [e["listen"] for e in self.events() if e["event"] == "controller started"]
            return found[0] if found else None

        address = wait_for("the controller to listen", listening, timeout)
        self.client = httpx.Client(base_url=f"http://{address}", timeout=5.0)
        return self.client

    def status(self) -> dict[str, Any]:
        assert self.client is not None
        body: dict[str, Any] = self.client.get("/status").json()
        return body

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def exit_code(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log_path.read_text()[-4000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._log.close()
        if self.client is not None:
            self.client.close()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(name: str, *args: str) -> Daemon:
        started.append(Daemon(tmp_path, name, list(args)))
        return started[-1]

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def remote(example_repo: GitOpsRepo, tmp_path: Path) -> Path:
    """A bare remote holding the example content (prod without its soak and Friday window:
    the daemons run on the real clock); the work tree pushes to it."""
    example_repo.write("releases/prod.yaml", relaxed(example_repo.read("releases/prod.yaml")))
    example_repo.commit("prod: no soak, no windows")
    bare = tmp_path / "remote.git"
    example_repo.git("clone", "--quiet", "--bare", str(example_repo.path), str(bare))
    example_repo.git("remote", "add", "origin", str(bare))
    return bare


def pin(repo: GitOpsRepo, env: str, app: str, version: str) -> str:
    path = f"releases/{env}.yaml"
    lines = [
        f"  {app}: {version}" if line.startswith(f"  {app}: ") else line
        for line in repo.read(path).splitlines()
    ]
    repo.write(path, "\n".join(lines) + "\n")
    revision = repo.commit(f"pin {app} {version} in {env}")
    repo.git("push", "--quiet", "origin", "main")
    return revision


def deployed(daemon: Daemon, env: str, app: str) -> str | None:
    rows = {(r["env"], r["app"]): r for r in daemon.status()["rows"]}
    version = rows.get((env, app), {}).get("deployed")
    return None if version is None else str(version)


def assert_no_half_switch(state: Path) -> None:
    for current in state.glob("envs/*/*/current"):
        target = current.resolve()
        assert (target / "COMPLETE").is_file(), f"{current} -> {target} is incomplete"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(dest)
    return dest


@pytest.mark.slow
def test_real_daemon_applies_pushes_answers_probes_and_stops_cleanly_on_sigterm(
    daemons: Any, remote: Path, example_repo: GitOpsRepo, tmp_path: Path, wheelhouse: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "wheels").symlink_to(wheelhouse)
    daemon = daemons("real", str(remote), str(state), "127.0.0.1:0", "", "real", "1")
    client = daemon.started()
    assert client.get("/healthz").status_code == 200
    wait_for("first pass", lambda: daemon.status()["passes"] >= 1, timeout=180)
    rows = daemon.status()["rows"]
    assert {(r["sync"], r["health"]) for r in rows} == {("Synced", "Healthy")}, rows
    assert client.get("/readyz").status_code == 200
    # a push plus a webhook: the pass starts at once
    revision = pin(example_repo, "prod", "bell-service", "1.1.0")
    signature = {"X-Qrelease-Signature": sign(b"{}", SECRET)}
    assert client.post("/hooks/git", content=b"{}", headers=signature).status_code == 202
    wait_for("the webhook pass", lambda: deployed(daemon, "prod", "bell-service") == "1.1.0", 60)
    # rows move with each rollout step; the pass's report comes when the pass ends
    wait_for("its report", lambda: daemon.status()["last_pass"]["revision"] == revision, 60)
    last = daemon.status()["last_pass"]
    assert last["revision"] == revision and last["trigger"] == "webhook:generic"
    # a push alone: picked up by the next poll
    revision = pin(example_repo, "prod", "qrng", "0.2.0")
    wait_for("the polled pass", lambda: daemon.status()["revision"] == revision, 60)
    last = daemon.status()["last_pass"]
    assert last["trigger"] == "revision"
    assert deployed(daemon, "prod", "qrng") == "0.2.0"
    metrics = client.get("/metrics").text
    assert 'qrelease_reconcile_passes_total{outcome="succeeded"} 3.0' in metrics
    assert 'qrelease_gate_outcomes_total{gate="smoke",outcome="Passed"}' in metrics
    daemon.signal(signal.SIGTERM)
    assert daemon.exit_code(40) == 0, daemon.output()
    assert daemon.events()[-1]["event"] == "controller stopped"
    with open_store(state) as store:
        assert store.verify().ok and store.pending_intents() == []
        assert store.last_run() is not None and store.last_run().finished_at is not None  # type: ignore[union-attr]
    assert_no_half_switch(state)


def test_second_controller_on_the_same_state_exits_1_naming_the_first(
    daemons: Any, remote: Path, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    first = daemons("first", str(remote), state, "127.0.0.1:0", "", "memory", "")
    first.started()
    second = daemons("second", str(remote), state, "127.0.0.1:0", "", "memory", "")
    assert second.exit_code() == 1
    assert "another controller" in second.output()
    assert f"pid {first.process.pid}" in second.output()
    assert first.process.poll() is None  # the first one is unaffected
    first.signal(signal.SIGINT)
    assert first.exit_code() == 0, first.output()


def test_sighup_reloads_the_interval_and_sigint_stops(
    daemons: Any, remote: Path, tmp_path: Path
) -> None:
    config = tmp_path / "controller.toml"
    config.write_text('[source]\ninterval = "30s"\n')
    daemon = daemons(
        "hup", str(remote), str(tmp_path / "state"), "127.0.0.1:0", str(config), "memory", ""
    )
    daemon.started()
    wait_for("first pass", lambda: daemon.status()["passes"] >= 1)
    assert daemon.status()["source"]["interval_seconds"] == 30
    config.write_text('[source]\ninterval = "2s"\nresync = "1h"\n')
    daemon.signal(signal.SIGHUP)
    wait_for("the reload", lambda: daemon.status()["source"]["interval_seconds"] == 2)
    assert daemon.status()["source"]["resync_seconds"] == 3600
    assert daemon.process.poll() is None
    daemon.signal(signal.SIGINT)
    assert daemon.exit_code() == 0, daemon.output()
    assert [e["event"] for e in daemon.events() if e["event"] in ("reloaded", "stopping")] == [
        "reloaded",
        "stopping",
    ]


DEMO_ENTRY = """
import sys
from pathlib import Path

from qrelease.examples.run import run_demo
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends
from qrelease.quantum.memory import MemoryQuantum

deployer, quantum = MemoryDeployer(), MemoryQuantum()
factory = lambda state_dir: Backends(lambda env: deployer, lambda env: quantum)
sys.exit(run_demo(Path(sys.argv[1]), sys.argv[2], backends_factory=factory))
"""


def test_demo_creates_its_remote_prints_the_guide_and_runs_the_controller(
    tmp_path: Path, wheelhouse: Path
) -> None:
    state = tmp_path / ".qrelease"
    (state / "wheels").mkdir(parents=True)
    for wheel in wheelhouse.glob("*.whl"):
        (state / "wheels" / wheel.name).symlink_to(wheel)  # already built: nothing to rebuild
    log_path = tmp_path / "demo.log"
    env = {**os.environ, **GIT_ENV, "QDK_PYTHON_TELEMETRY": "none"}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", DEMO_ENTRY, str(state), "127.0.0.1:0"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            listen = wait_for("the demo controller", lambda: _listen_address(log_path), 30)
            with httpx.Client(base_url=f"http://{listen}", timeout=5.0) as client:
                wait_for("the first demo pass", lambda: client.get("/status").json()["passes"], 20)
                rows = client.get("/status").json()["rows"]
                assert len(rows) == 6 and {r["sync"] for r in rows} == {"Synced"}
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)
    output = log_path.read_text()
    remote = ".qrelease/demo-remote.git"  # relative to where the demo runs, as the guide prints
    assert (tmp_path / remote / "HEAD").is_file()
    assert f"GitOps remote  {remote}" in output
    assert f"qrelease tui --repo {remote} --state {state}" in output
    assert "qrelease promote bell-service --to staging" in output
    assert "/hooks/git" in output and "/metrics" in output


def _listen_address(log_path: Path) -> str | None:
    for line in log_path.read_text().splitlines():
        if line.startswith("{") and json.loads(line)["event"] == "controller started":
            return str(json.loads(line)["listen"])
    return None
