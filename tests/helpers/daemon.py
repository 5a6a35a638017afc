"""A controller in-process over a real bare remote and fake backends, and an HTTP client for it."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from qrelease.config import ControllerConfig, SourceConfig, WebhookConfig
from qrelease.daemon import Controller
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends
from qrelease.model.environment import Environment
from qrelease.model.manifest import Quantum
from qrelease.quantum.base import EstimateSummary, GateReport, ProgramSource
from qrelease.quantum.memory import MemoryQuantum
from tests.helpers.clock import ManualClock
from tests.helpers.gitops import GitOpsRepo

SECRET = "daemon-test-secret-Zq9"
SECRET_ENV = "QRELEASE_TEST_WEBHOOK_SECRET"
WAIT_SECONDS = 10.0
MONDAY = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
"""Where a rig's clock starts: clear of the example prod environment's Friday deny window."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class SlowQuantum(MemoryQuantum):
    """Gates that block until `release` is set: to hold a pass open."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        self.entered.set()
        self.release.wait(WAIT_SECONDS)
        return super().run_gates(program, quantum, baseline)


class Rig:
    """A GitOps work tree, its bare remote, a state dir and fake backends."""

    def __init__(self, work: GitOpsRepo, root: Path) -> None:
        self.work = work
        self.root = root
        self.remote = root / "remote.git"
        self.state = root / "state"
        self.deployer = MemoryDeployer()
        self.quantum: MemoryQuantum = MemoryQuantum()
        self.log = io.StringIO()
        self.clock = ManualClock(MONDAY)  # the controller's clock; tests move it past soaks
        work.git("clone", "--quiet", "--bare", str(work.path), str(self.remote))
        work.git("remote", "add", "origin", str(self.remote))
        self.controllers: list[Controller] = []

    def backends(self, state_dir: Path) -> Backends:
        return Backends(self._deployer, self._quantum)

    def _deployer(self, env: Environment) -> MemoryDeployer:
        return self.deployer

    def _quantum(self, env: Environment) -> MemoryQuantum:
        return self.quantum

    def config(self, **changes: Any) -> ControllerConfig:
        source = {"url": str(self.remote), "interval": timedelta(milliseconds=200)}
        source.update(changes.pop("source", {}))
        values: dict[str, Any] = {
            "source": SourceConfig(**source),
            "state_dir": self.state,
            "listen": "127.0.0.1:0",
            "grace_period": timedelta(seconds=5),
            "webhook": WebhookConfig(secret_env=SECRET_ENV),
        }
        values.update(changes)
        return ControllerConfig(**values)

    def start(self, config: ControllerConfig | None = None, **kwargs: Any) -> Controller:
        kwargs.setdefault("clock", self.clock)
        controller = Controller(
            config or self.config(),
            backends_factory=self.backends,
            log_stream=self.log,
            **kwargs,
        )
        self.controllers.append(controller)
        controller.start()
        return controller

    def soaked(self) -> None:
        """Move the clock past every soak of the example environments (the longest is 1h)."""
        self.clock.advance(timedelta(hours=2))

    def pin(self, env: str, app: str, version: str, push: bool = True) -> str:
        path = f"releases/{env}.yaml"
        lines = [
            f"  {app}: {version}" if line.startswith(f"  {app}: ") else line
            for line in self.work.read(path).splitlines()
        ]
        self.work.write(path, "\n".join(lines) + "\n")
        revision = self.work.commit(f"pin {app} {version} in {env}")
        if push:
            self.work.git("push", "--quiet", "origin", "main")
        return revision

    def close(self) -> None:
        for controller in self.controllers:
            if controller.http.alive:
                controller.close()


class Api:
    """An HTTP client for one running controller."""

    def __init__(self, controller: Controller) -> None:
        self.client = httpx.Client(base_url=f"http://{controller.http.address}", timeout=5.0)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/status").json()
        return body

    def row(self, env: str, app: str) -> dict[str, Any]:
        rows = {(r["env"], r["app"]): r for r in self.status()["rows"]}
        return dict(rows.get((env, app), {}))

    def metric(self, line_start: str) -> float:
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(line_start + " ") or line.startswith(line_start + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def close(self) -> None:
        self.client.close()


def synced(api: Api) -> bool:
    """Every row Synced, and the cycle that synced them over (its next poll scheduled).

    Rows turn Synced before their cycle ends; a test that then moves the clock (`soaked`)
    would have that cycle schedule its next one for now, and a pin pushed meanwhile would
    be deployed by it rather than by the pass the test asks for.
    """
    status = api.status()
    rows = status["rows"]
    done = status["source"]["next_poll_at"] is not None and status["passes"] > 0
    return done and bool(rows) and all(r["sync"] == "Synced" for r in rows)
