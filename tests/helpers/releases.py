"""Venv-deployer release folders laid out by hand: what observe reads, without building a venv."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from qrelease.deployers.base import ReleaseLock
from qrelease.deployers.venv import lock_json

PROGRAM = "%Result = type opaque\n"


def lay_out_release(state_dir: Path, env: str, app: str, version: str) -> Path:
    """A complete release folder of (env, app, version), as `prepare` leaves one."""
    release = state_dir / "envs" / env / app / "releases" / version
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "venv" / "bin" / "python").write_text("#!/bin/sh\n")
    (release / "program.qir").write_text(PROGRAM)
    lock = ReleaseLock(
        app=app,
        env=env,
        version=version,
        revision="0" * 40,
        target_id="ionq.simulator",
        profile="Base",
        entry="Main()",
        program=f"manifests/{app}/programs/main.qs",
        qir_sha256=hashlib.sha256(PROGRAM.encode()).hexdigest(),
        deployed_at="2026-01-01T00:00:00+00:00",
    )
    (release / "qrelease.lock.json").write_bytes(lock_json(lock))
    (release / "COMPLETE").write_text(f"{app} {version}\n")
    return release


def point_current(state_dir: Path, env: str, app: str, version: str) -> None:
    """Make `current` of (env, app) point at `version`, by renaming a new link over it."""
    app_dir = state_dir / "envs" / env / app
    temporary = app_dir / ".current.tmp-test"
    temporary.symlink_to(f"releases/{version}")
    temporary.replace(app_dir / "current")


def age(root: Path, seconds: float = 3600) -> None:
    """Move the timestamps changed in the last minute under `root` an hour into the past.

    Each call lands on a moment of its own, so what changed since the last call still
    differs in its timestamp from what it had before.
    """
    now = time.time()
    stamp = now - seconds
    for path in [root, *root.rglob("*")]:
        if path.lstat().st_mtime > now - 60:
            os.utime(path, (stamp, stamp), follow_symlinks=False)
