"""Data several benchmarks share, built once per run in the run's directory.

Benchmark modules run in processes of their own, so a fixture is kept on disk and reused
by the next module when it is already there (generation is deterministic).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.gitdata import GitOpsData, git, gitops_repo
from benchmarks.harness import Context
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def gitops(ctx: Context) -> GitOpsData:
    """The generated GitOps repo: apps x versions manifests, 3 envs, pin-change history."""
    sizes = ctx.sizes
    path = ctx.workdir / "gitops.git"

    def build() -> GitOpsData:
        if path.exists():
            commits = tuple(git(path, "rev-list", "--reverse", "main").split())
            return GitOpsData(path, commits, sizes.apps, sizes.versions)
        return gitops_repo(path, sizes.apps, sizes.versions, sizes.history_commits)

    data: GitOpsData = ctx.shared("gitops", build)
    return data


def wheel_builder() -> Callable[..., Any]:
    """`tests.helpers.wheels.build_wheel`: tiny real wheels written directly as zip files."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    builder: Callable[..., Any] = importlib.import_module("tests.helpers.wheels").build_wheel
    return builder


def healthy_state(
    env: str, app: str, version: str, revision: str, *, at: datetime, since: datetime
) -> ObservedState:
    """What the store holds for an (env, app) running `version`, synced and Healthy."""
    return ObservedState(
        env=env,
        app=app,
        desired=version,
        deployed=version,
        sync=Sync.SYNCED,
        health=Health.HEALTHY,
        target="ionq.simulator",
        running_target="ionq.simulator",
        rollout=Rollout.SUCCEEDED,
        availability=Availability.AVAILABLE,
        revision=revision,
        updated_at=at,
        healthy_since=since,
    )
