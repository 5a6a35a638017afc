"""Running the CLI in-process (click's CliRunner) against a real repo and state dir."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from qrelease.cli import main
from qrelease.model.events import EventDraft
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.store import open_store

EXAMPLE_PINS = {
    ("dev", "bell-service"): ("1.2.0", "quantinuum.sim.h2-1e"),
    ("dev", "qrng"): ("0.2.0", "ionq.simulator"),
    ("staging", "bell-service"): ("1.1.0", "ionq.qpu.aria-1"),
    ("staging", "qrng"): ("0.2.0", "ionq.simulator"),
    ("prod", "bell-service"): ("1.0.0", "ionq.simulator"),
    ("prod", "qrng"): ("0.1.0", "rigetti.sim.qvm"),
}
"""What the bundled example environments pin: (env, app) -> (version, target)."""


class Cli:
    """The qrelease command line on one repo and one state dir."""

    def __init__(self, repo: Path, state: Path) -> None:
        self.repo = repo
        self.state = state

    def __call__(self, *args: str, where: bool = True) -> Result:
        """Run `qrelease ARGS --repo R --state S` (the locations left out when `where` is off)."""
        located = [*args, "--repo", str(self.repo), "--state", str(self.state)] if where else args
        return CliRunner().invoke(main, list(located))

    def record(self, env: str, app: str, **fields: Any) -> ObservedState:
        """Store a row as the engine would have recorded it (Synced and Healthy by default)."""
        version, target = EXAMPLE_PINS.get((env, app), ("1.0.0", None))
        values: dict[str, Any] = {
            "desired": version,
            "deployed": version,
            "sync": Sync.SYNCED,
            "health": Health.HEALTHY,
            "target": target,
            "availability": Availability.AVAILABLE,
            "rollout": Rollout.SUCCEEDED,
            **fields,
        }
        state = ObservedState(env=env, app=app, **values)
        with open_store(self.state) as store:
            store.put_observed(state)
        return state

    def record_all(self) -> None:
        """Every example pin recorded Synced and Healthy."""
        for env, app in EXAMPLE_PINS:
            self.record(env, app)

    def event(self, time: datetime | None = None, **fields: Any) -> None:
        """Append one audit event (at `time`, default now)."""
        with open_store(self.state) as store:
            store.append(EventDraft(**fields), time=time or datetime.now(UTC))
