"""`make run`: the controller in the foreground on the bundled demo, ready to try.

A fresh machine has no GitOps repo and no package index, so the demo makes both under the
state dir (a bare repo from the project's manifests and environments, and a wheelhouse of
the example apps), says where everything is, then runs the real controller against them.
The commands it prints are written the way this process was started (`.venv/bin/qrelease`
when `qrelease` is not on PATH), so they work when pasted into another terminal.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import yaml

from qrelease.config import load_config
from qrelease.daemon.controller import run_controller
from qrelease.examples.demo import build_wheelhouse, ensure_demo_remote
from qrelease.examples.scaffold import initial_files
from qrelease.examples.wheelhouse import example_wheelhouse
from qrelease.wiring import BackendsFactory

DEMO_INTERVAL = timedelta(seconds=5)


def run_demo(
    state_dir: Path, listen: str, *, backends_factory: BackendsFactory | None = None
) -> int:
    """Create the demo remote and wheelhouse if missing, print the guide, run the controller."""
    remote = ensure_demo_remote(state_dir)
    build_wheelhouse(state_dir / "wheels")
    shown = Path(_shortest(remote, Path.cwd().absolute()))
    print(guide(shown, state_dir, listen, qrelease_command()), flush=True)
    return run_controller(
        load_config(None),
        repo=str(remote),
        state_dir=state_dir,
        interval=DEMO_INTERVAL,
        listen=listen,
        config_path=None,
        backends_factory=backends_factory,
        wheelhouse=example_wheelhouse(),
    )


def qrelease_command(
    argv0: str | None = None, on_path: str | None = None, cwd: Path | None = None
) -> str:
    """How to start qrelease again from `cwd`: `qrelease` if PATH finds this one, else its path.

    >>> qrelease_command("/w/.venv/bin/qrelease", on_path=None, cwd=Path("/w"))
    '.venv/bin/qrelease'
    >>> qrelease_command("/w/.venv/bin/qrelease", on_path="/w/.venv/bin/qrelease", cwd=Path("/w"))
    'qrelease'
    >>> qrelease_command("/w/src/qrelease/__main__.py", on_path=None, cwd=Path("/w"))[-11:]
    '-m qrelease'
    >>> qrelease_command("-c", on_path=None, cwd=Path("/w"))[-11:]  # embedded: python -c
    '-m qrelease'
    """
    script = Path(argv0 if argv0 is not None else sys.argv[0]).absolute()
    here = (cwd or Path.cwd()).absolute()
    found = on_path if argv0 is not None else shutil.which("qrelease")
    if script.name != "qrelease":  # python -m qrelease, or a program that embeds qrelease
        return f"{shlex.quote(_shortest(Path(sys.executable), here))} -m qrelease"
    if found and Path(found).absolute() == script:
        return "qrelease"
    return shlex.quote(_shortest(script, here))


def _shortest(path: Path, here: Path) -> str:
    """`path` relative to `here` when it lies below it, else absolute."""
    relative = os.path.relpath(path, here)
    return relative if not relative.startswith("..") else str(path)


def staging_soak() -> str:
    """The bundled staging environment's `policy.soak`, as written there."""
    staging = yaml.safe_load(initial_files(example=True)["releases/staging.yaml"])
    return str(staging.get("policy", {}).get("soak", "0s"))


def guide(remote: Path, state_dir: Path, listen: str, qrelease: str = "qrelease") -> str:
    """What the operator can do with the running demo, as commands that work when pasted."""
    base = f"http://{listen}"
    seconds = int(DEMO_INTERVAL.total_seconds())
    where = f"--repo {shlex.quote(str(remote))} --state {shlex.quote(str(state_dir))}"
    soak = staging_soak()
    return "\n".join(
        [
            "qrelease demo: the controller runs in the foreground (Ctrl-C stops it).",
            f"  GitOps remote  {remote}  (polled every {seconds}s)",
            f"  state          {state_dir}  (SQLite store, release venvs, wheels/)",
            f"  status         {base}/status",
            f"  probes         {base}/healthz  {base}/readyz",
            f"  metrics        {base}/metrics",
            f"  webhook        POST {base}/hooks/git  (needs QRELEASE_WEBHOOK_SECRET)",
            "In another terminal, in this directory:",
            f"  status         {qrelease} status --watch {where}",
            f"  one app        {qrelease} get bell-service {where}",
            f"  sync now       {qrelease} sync --state {shlex.quote(str(state_dir))}",
            f"  TUI            {qrelease} tui {where}",
            f"  promote        {qrelease} promote bell-service --to staging {where} "
            '--reason "try the demo"',
            f"                 staging's policy.soak is {soak}: until bell-service 1.2.0 has "
            f"been Healthy in dev for {soak},",
            "                 the soak check refuses it (add --force to override; the "
            "override is recorded)",
            f"  by hand        git clone {remote} work; edit work/releases/staging.yaml; "
            "git -C work commit -am 'pin'; git -C work push",
            "",
        ]
    )
