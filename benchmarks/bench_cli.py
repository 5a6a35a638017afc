"""How long the command line takes to answer, against `python -c "import click"`.

Each trial is a new process, as when a user types the command: `qrelease --version` (the
entry point, click and nothing else a command does not need) and `qrelease status` on the
bundled example repo with a state dir whose store holds every example row (what a
`status` after `reconcile` reads: Git at HEAD, the store, the table). The reference is the
bare cost of starting Python and importing click, in the same run, alternating.

Both sides run as an installed program does, with its bytecode cached: the Makefile sets
PYTHONDONTWRITEBYTECODE, so the trials get a PYTHONPYCACHEPREFIX of their own instead, and
one untimed warm-up of each side writes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Action, Context, Row, alternate, plain, ratio_row
from qrelease.examples.scaffold import initial_files
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.source.loader import Loader
from qrelease.source.repo import GitRepo
from qrelease.source.writer import init_repo
from qrelease.store import open_store

VERSION_TARGET = 3.0
STATUS_TARGET_SECONDS = 0.4
REFERENCE = 'python -c "import click" (a new process)'


def qrelease_argv() -> list[str]:
    """The installed console script beside this interpreter, else `python -m qrelease`."""
    script = Path(sys.executable).parent / "qrelease"
    return [str(script)] if script.exists() else [sys.executable, "-m", "qrelease"]


def example(workdir: Path) -> tuple[Path, Path]:
    """The bundled example repo and a state dir holding a Synced, Healthy row per pin."""
    repo, state = workdir / "cli-example", workdir / "cli-state"
    if not repo.exists():
        init_repo(repo, initial_files(example=True), "Initial qrelease layout")
    with GitRepo(repo) as git_repo:
        snapshot = Loader(git_repo).load("HEAD")
    with open_store(state) as store:
        for (env, app), (version, target) in snapshot.pins().items():
            store.put_observed(
                ObservedState(
                    env=env, app=app, desired=version, deployed=version, sync=Sync.SYNCED,
                    health=Health.HEALTHY, target=target, availability=Availability.AVAILABLE,
                    rollout=Rollout.SUCCEEDED, revision=snapshot.revision,
                )
            )  # fmt: skip
    return repo, state


def runner(argv: list[str], env: dict[str, str]) -> Action:
    """A trial action: run `argv` to completion, output discarded, failure loud."""
    return lambda: subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)


def run(ctx: Context) -> list[Row]:
    """Two rows: `--version` as a ratio, `status` on the example in seconds."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(ctx.workdir / "pycache")
    env["QDK_PYTHON_TELEMETRY"] = "none"
    click = plain(runner([sys.executable, "-c", "import click"], env))
    qrelease = qrelease_argv()
    version = ratio_row(
        ctx,
        "qrelease --version",
        VERSION_TARGET,
        plain(runner([*qrelease, "--version"], env)),
        click,
        reference_name=REFERENCE,
        notes=[f"{' '.join(qrelease)} --version, a new process each time"],
        warmup=True,
    )
    repo, state = example(ctx.workdir)
    status_argv = [*qrelease, "status", "--repo", str(repo), "--state", str(state)]
    ours, reference = alternate(plain(runner(status_argv, env)), click, ctx.reps, warmup=True)
    status = Row(
        "qrelease status, the example (6 rows)",
        "absolute",
        STATUS_TARGET_SECONDS,
        ours,
        reference,
        REFERENCE,
        (
            "a new process: loads Git at HEAD (3 envs, 5 manifests), opens the SQLite store, "
            f"prints the table; {ours.median / reference.median:.1f}x the click import",
        ),
    )
    return [version, status]
