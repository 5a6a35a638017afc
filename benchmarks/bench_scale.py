"""10,000 apps x 3 versions x 3 environments on one machine (issue 20): CLI reads and the daemon.

The repo comes from the same generator as every other row (`gitdata.gitops_repo`), with
3 versions per app: 30,000 manifests and 3 environment files pinning every app. The CLI
rows run `qrelease` as a user does, in a subprocess with its output to /dev/null, against
the reference the issue names: one `git ls-tree -r` plus one `git cat-file --batch` of
every blob (the raw reads any reader of that repo needs; `rawgit.py`).

- validate, cold: a state dir with no parse cache (every file parsed, on both cores).
- validate / status / plan, warm: the second run over an unchanged repo (parse cache warm).
  status reads 30,000 Healthy rows from the store; plan observes 30,000 (env, app) through
  the real venv deployer over release folders laid out by hand (every app current) and
  judges nothing (nothing to change).
- daemon one-pin-change pass: `Reconciler.cycle()` of a running controller over a commit
  that moves one pin (fetch, diff, parse, plan, record; MemoryDeployer, MemoryQuantum).
- daemon RSS after idle polls: `bench_daemon.daemon_rss_row` over this repo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import rawgit
from benchmarks.bench_daemon import (
    PinCommitter,
    child_env,
    daemon_rss_row,
    pins_at,
    reconciler,
)
from benchmarks.fixtures import healthy_state
from benchmarks.gitdata import GitOpsData, git, gitops_repo
from benchmarks.harness import Action, Context, Row, Stats, measure, plain, ratio_row
from qrelease.deployers.base import ReleaseLock
from qrelease.deployers.venv import lock_json
from qrelease.store import open_store

VERSIONS = 3
WARM_TARGET = 3.0
COLD_TARGET = 10.0
PASS_TARGET_SECONDS = 1.0
RSS_TARGET_MIB = 300.0
SEEDED = datetime(2024, 1, 1, tzinfo=UTC)
REFERENCE = "git ls-tree -r + one git cat-file --batch of every blob (rawgit)"
PROGRAM = "%Result = type opaque\n"


def scale_repo(ctx: Context) -> GitOpsData:
    """The generated repo at the scale size (built once per run)."""
    path = ctx.workdir / "scale.git"

    def build() -> GitOpsData:
        return gitops_repo(path, ctx.sizes.scale_apps, VERSIONS, 20)

    data: GitOpsData = ctx.shared("scale", build)
    return data


def qrelease(*args: str) -> list[str]:
    """argv of the qrelease CLI of this checkout."""
    return [sys.executable, "-m", "qrelease", *args]


PYCACHE = Path(tempfile.gettempdir()) / f"qrelease-bench-pycache-{os.getuid()}"
"""Where the timed CLI runs keep their bytecode (a user's installed qrelease has it too)."""


def run_cli(argv: list[str]) -> None:
    """Run one CLI command with its output thrown away; it must exit 0."""
    env = child_env(PYCACHE)
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if done.returncode != 0:
        raise AssertionError(f"{argv[3:5]} exited {done.returncode}: {done.stderr[-2000:]!r}")


def reference(repo: Path) -> Action:
    """The raw reads: list the tree, read every blob."""

    def read_all() -> None:
        entries = rawgit.ls_tree(repo, "main")
        rawgit.cat_file_batch(repo, [sha for sha, _path in entries])

    return read_all


def lay_out(state: Path, pins: dict[str, dict[str, str]], revision: str) -> None:
    """A complete release folder and a `current` link for every pin (what deploys leave)."""
    digest = hashlib.sha256(PROGRAM.encode()).hexdigest()
    for env, apps in pins.items():
        for app, version in apps.items():
            app_dir = state / "envs" / env / app
            release = app_dir / "releases" / version
            (release / "venv" / "bin").mkdir(parents=True)
            (release / "venv" / "bin" / "python").write_bytes(b"")
            (release / "program.qir").write_text(PROGRAM)
            lock = ReleaseLock(
                app=app,
                env=env,
                version=version,
                revision=revision,
                target_id="ionq.simulator",
                profile="Base",
                entry="Bell.Main()",
                program=f"manifests/{app}/programs/bell.qs",
                qir_sha256=digest,
                deployed_at=SEEDED.isoformat(),
            )
            (release / "qrelease.lock.json").write_bytes(lock_json(lock))
            (release / "COMPLETE").write_text(f"{app} {version}\n")
            (app_dir / "current").symlink_to(f"releases/{version}")


def seed_store(state: Path, pins: dict[str, dict[str, str]], revision: str) -> None:
    """Every pin Healthy and Synced in the state dir's store."""
    states = [
        healthy_state(env, app, version, revision, at=SEEDED, since=SEEDED)
        for env, apps in sorted(pins.items())
        for app, version in sorted(apps.items())
    ]
    with open_store(state) as store:
        store.put_observed_many(states)


@contextmanager
def cold_state(root: Path) -> Iterator[Action]:
    """A state dir without a parse cache; the action validates into it."""
    state = root / "cold-state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    yield lambda: run_cli(qrelease("validate", "--repo", str(root / "repo"), "--state", str(state)))


def cli_rows(ctx: Context, data: GitOpsData) -> list[Row]:
    """validate cold and warm, status and plan warm, each against the raw reads."""
    root = ctx.workdir / "scale-cli"
    root.mkdir()
    (root / "repo").symlink_to(data.path)
    repo, state = str(data.path), root / "state"
    pins = pins_at(data.path)
    revision = git(data.path, "rev-parse", "main").strip()
    started = time.perf_counter()
    lay_out(state, pins, revision)
    seed_store(state, pins, revision)
    layout_seconds = time.perf_counter() - started
    size = f"{data.apps:,} apps x {VERSIONS} versions x 3 envs ({data.manifest_count:,} manifests)"
    cold = ratio_row(
        ctx,
        f"validate, cold (first run), {data.apps:,} apps x 3 envs",
        COLD_TARGET,
        lambda: cold_state(root),
        plain(reference(data.path)),
        reference_name=REFERENCE,
        notes=[f"{size}; qrelease validate in a subprocess, a state dir without parse cache"],
    )
    commands = {
        "validate": qrelease("validate", "--repo", repo, "--state", str(state)),
        "status": qrelease("status", "--json", "--repo", repo, "--state", str(state)),
        "plan": qrelease("plan", "--repo", repo, "--state", str(state)),
    }
    run_cli(commands["validate"])  # fills the parse cache
    time.sleep(2.5)  # the laid-out folders leave the racy window before plan records them
    run_cli(commands["plan"])  # observes every app once and saves what it saw
    startup = Stats.of(measure(plain(lambda: run_cli(qrelease("--version")))) for _ in range(3))
    rows = [cold]
    for name, argv in commands.items():
        rows.append(
            ratio_row(
                ctx,
                f"{name}, warm (second run), {data.apps:,} apps x 3 envs",
                WARM_TARGET,
                plain(lambda argv=argv: run_cli(argv)),  # type: ignore[misc]
                plain(reference(data.path)),
                reference_name=REFERENCE,
                notes=[
                    f"{size}; `qrelease {' '.join(argv[3:4])}` in a subprocess (interpreter "
                    "start and imports included), output to /dev/null; parse cache warm",
                    f"store: {data.apps * 3:,} Healthy rows; {data.apps * 3:,} release folders "
                    f"laid out by hand for the venv deployer ({layout_seconds:.0f}s, untimed)",
                    f"of which start-up: `qrelease --version` takes {startup.median:.2f}s "
                    f"[{startup.min:.2f}s-{startup.max:.2f}s] (interpreter and imports)",
                ],
            )
        )
    return rows


def pass_row(ctx: Context, data: GitOpsData) -> Row:
    """A running controller's pass over a commit that moves one pin."""
    root = ctx.workdir / "scale-daemon"
    root.mkdir()
    source = root / "source.git"
    git(root, "clone", "--quiet", "--bare", str(data.path), str(source))
    pins = pins_at(source)
    committer = PinCommitter(source, json.loads(json.dumps(pins)), data.apps, VERSIONS)
    samples, first = [], 0.0
    seed_store(root / "state", pins, git(source, "rev-parse", "main").strip())
    with reconciler(source, root / "state", pins) as rec:
        started = time.perf_counter()
        rec.cycle()  # clones the mirror and runs the first pass
        first = time.perf_counter() - started
        for _ in range(ctx.reps):
            committer.commit()
            started = time.perf_counter()
            rec.cycle()
            samples.append(time.perf_counter() - started)
        view = rec.state.view
        if view.last_pass is None or view.last_pass.outcome != "succeeded":
            raise AssertionError(f"a pass did not succeed: {view.last_pass}")
        if view.passes != 1 + len(samples):
            raise AssertionError(f"{view.passes} passes, want {1 + len(samples)}")
    return Row(
        f"daemon one-pin-change pass, {data.apps:,} apps x 3 envs",
        "absolute",
        PASS_TARGET_SECONDS,
        Stats.of(samples),
        notes=(
            "Reconciler.cycle() after a fast-import commit moved one pin (untimed): fetch into "
            "the mirror, diff, parse the changed file, observe, plan, judge, record, finalise; "
            "real SQLite store (every app Healthy beforehand) and parse cache; backends: seeded "
            "MemoryDeployer (every app current) + MemoryQuantum, so no venv is built",
            f"the first pass after start (mirror clone, cold parse, every row recorded): "
            f"{first:.1f}s",
        ),
    )


def run(ctx: Context) -> list[Row]:
    """CLI reads, the daemon's pass and its memory, at the scale size."""
    data = scale_repo(ctx)
    os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")
    rows = cli_rows(ctx, data)
    rows.append(pass_row(ctx, data))
    rows.append(daemon_rss_row(ctx, data, target=RSS_TARGET_MIB))
    return rows
