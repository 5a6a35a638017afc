"""Many app releases from one commit to Healthy: a full `Engine.reconcile` with real venvs.

One environment pins N apps (1,000 in the full run, 20 with --quick), each with its own
tiny hash-pinned wheel from a local find-links directory. The pass runs everything for
real (intents, audit events in SQLite, the VenvDeployer's installs, both health checks,
switches) except the quantum gates, which use MemoryQuantum: the qdk gates are measured on
their own by bench_gates. The goal is absolute: <= 120 s for 1,000 apps on 2 cores.

Wrappers around the installer and the deployer add up where the pass spends its time, so
the row says where the time goes even when it passes; a miss also gets a cProfile run.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.fixtures import wheel_builder
from benchmarks.gitdata import BELL_PROGRAM, app_name, environment_yaml, fast_import, manifest_yaml
from benchmarks.harness import Action, Context, Row, Stats, Trial, with_profile
from qrelease.config import ControllerConfig
from qrelease.deployers.installers import Installer, Sources, default_installer
from qrelease.deployers.venv import VenvDeployer
from qrelease.engine import Backends, Engine, PassReport
from qrelease.model.vocabulary import Rollout
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.repo import GitRepo
from qrelease.store import open_store

TARGET_SECONDS = 120.0
TARGET_APPS = 1000
PROFILED_APPS = 20
VERSION = "1.0.0"


class StepClock:
    """Seconds and calls per named step."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def timed(self, step: str, call: Callable[..., Any]) -> Callable[..., Any]:
        """`call`, adding its duration to `step`."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[step] += time.perf_counter() - started
                self.calls[step] += 1

        return wrapper


class TimedInstaller:
    """An Installer that times the real one's steps."""

    def __init__(self, inner: Installer, clock: StepClock) -> None:
        self.name = inner.name
        self._inner, self._clock = inner, clock

    def create_venv(self, venv: Path) -> None:
        """Timed `create_venv`."""
        self._clock.timed(f"{self.name} venv", self._inner.create_venv)(venv)

    def install(self, venv: Path, requirements: Path, sources: Sources) -> None:
        """Timed `install`."""
        self._clock.timed(f"{self.name} pip install", self._inner.install)(
            venv, requirements, sources
        )

    def relocate(self, venv: Path, final: Path) -> None:
        """Timed `relocate`."""
        self._clock.timed("relocate", self._inner.relocate)(venv, final)


class TimedDeployer:
    """A VenvDeployer whose Deployer methods are timed."""

    def __init__(self, inner: VenvDeployer, clock: StepClock) -> None:
        for method in ("observe", "prepare", "check_health", "switch", "retire", "remove"):
            setattr(self, method, clock.timed(method, getattr(inner, method)))


class TimedQuantum:
    """MemoryQuantum with its gate runs timed."""

    def __init__(self, clock: StepClock) -> None:
        inner = MemoryQuantum()
        self.target_status = inner.target_status
        self.run_gates = clock.timed("gates (MemoryQuantum)", inner.run_gates)


class Fleet:
    """N apps with one release each, pinned in one environment, and their wheels."""

    def __init__(self, root: Path, apps: int) -> None:
        self.root, self.apps = root, apps
        build = wheel_builder()
        wheels = self.wheels = root / "wheels"
        sha = {app_name(a): build(wheels, app_name(a), VERSION).sha256 for a in range(apps)}
        files = {
            f"manifests/{app}/{VERSION}.yaml": manifest_yaml(app, VERSION, sha256=digest)
            for app, digest in sha.items()
        }
        files |= {f"manifests/{app}/programs/bell.qs": BELL_PROGRAM for app in sha}
        pins = dict.fromkeys(sha, VERSION)
        files["releases/dev.yaml"] = environment_yaml(
            "dev", pins, find_links=str(wheels), no_index=True
        )
        self.revision = fast_import(root / "gitops.git", [files])[-1]

    @contextmanager
    def trial(self, clock: StepClock, results: list[PassReport]) -> Iterator[Action]:
        """A reconcile pass over a fresh state dir."""
        state = self.root / f"state-{len(results)}"
        installer = TimedInstaller(default_installer(), clock)
        deployer = VenvDeployer(state, installer=installer, allowed_sources=[str(self.wheels)])
        timed, quantum = TimedDeployer(deployer, clock), TimedQuantum(clock)
        backends = Backends(lambda env: timed, lambda env: quantum)
        with GitRepo(self.root / "gitops.git") as repo, open_store(state) as store:
            # the controller's default concurrency: what `qrelease controller run` does
            engine = Engine(repo, store, backends, concurrency=ControllerConfig().concurrency)
            yield lambda: results.append(engine.reconcile(self.revision))


def healthy(result: PassReport, apps: int) -> None:
    """Fail loudly unless every app reached Healthy (otherwise less work was timed)."""
    outcomes = Counter(app.outcome for app in result.apps)
    if outcomes[Rollout.SUCCEEDED] != apps:
        failed = sorted(app.key for app in result.apps if app.outcome != Rollout.SUCCEEDED)
        raise AssertionError(f"outcomes {dict(outcomes)}; not Healthy: {failed[:5]}")


def breakdown(clock: StepClock, wall: float, cpu: dict[str, float]) -> list[str]:
    """Where the pass spent its wall time, from the step clock and the CPU counters."""
    seconds, calls = clock.seconds, clock.calls
    deployer = ("observe", "prepare", "check_health", "switch", "retire")
    installer = [
        step for step in seconds if step.endswith(("venv", "install")) or step == "relocate"
    ]
    lines = [
        f"{step}: {seconds[step]:.1f}s over {calls[step]} calls "
        f"({seconds[step] / max(1, calls[step]) * 1e3:.0f} ms each)"
        for step in (*installer, *deployer, "gates (MemoryQuantum)")
        if calls[step]
    ]
    in_prepare = seconds["prepare"] - sum(seconds[step] for step in installer)
    lines.append(
        f"prepare outside the installer (lock/QIR writes, fsyncs, os.sync, rename): "
        f"{in_prepare:.1f}s"
    )
    rest = wall - sum(seconds[step] for step in (*deployer, "gates (MemoryQuantum)"))
    lines.append(f"engine + store (load, plan, intents, events, observed state): {rest:.1f}s")
    used = cpu["self"] + cpu["children"]
    lines.append(
        f"CPU: controller {cpu['self']:.1f}s + subprocesses {cpu['children']:.1f}s = "
        f"{used / wall:.2f} of {os.cpu_count()} cores busy on average (apps go one at a time)"
    )
    return lines


def cpu_seconds() -> dict[str, float]:
    """User + system CPU seconds of this process and of its finished children."""
    times = os.times()
    return {
        "self": times.user + times.system,
        "children": times.children_user + times.children_system,
    }


def run(ctx: Context) -> list[Row]:
    """One absolute row: N apps to Healthy in one pass."""
    apps = ctx.sizes.reconcile_apps
    fleet = Fleet(ctx.workdir / "reconcile", apps)
    clock, results = StepClock(), list[PassReport]()
    before = cpu_seconds()
    with fleet.trial(clock, results) as action:
        started = time.perf_counter()
        action()
        wall = time.perf_counter() - started
    after = cpu_seconds()
    healthy(results[0], apps)
    target = TARGET_SECONDS * apps / TARGET_APPS
    scaled = "" if apps == TARGET_APPS else f" (scaled from 120 s for {TARGET_APPS:,} apps)"
    notes = [
        f"one environment, {apps:,} apps x 1 release, real VenvDeployer (uv, tiny hash-pinned "
        "wheels, health command run before and after the switch), real SQLite store; "
        "quantum gates: MemoryQuantum (qdk gates are measured by their own row); "
        f"target {target:g}s{scaled}; 1 run",
        *breakdown(clock, wall, {k: after[k] - before[k] for k in after}),
    ]
    row = Row(
        f"{apps:,} app releases from one commit to Healthy",
        "absolute",
        target,
        Stats.of([wall]),
        notes=tuple(notes),
    )
    if row.verdict == "MISS" and ctx.profile_dir is not None:
        row = _profiled(row, ctx, min(apps, PROFILED_APPS))
    return [row]


def _profiled(row: Row, ctx: Context, apps: int) -> Row:
    """The row with a cProfile of a smaller pass (`apps` apps) added to its notes."""
    fleet = Fleet(ctx.workdir / "reconcile-profiled", apps)
    trial: Trial = lambda: fleet.trial(StepClock(), [])  # noqa: E731 a one-line trial factory
    row = replace(row, notes=(*row.notes, f"the profiled trial is a {apps}-app pass"))
    return with_profile(row, trial, ctx.profile_dir or ctx.workdir)
