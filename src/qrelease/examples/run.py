"""`make run`: the controller in the foreground on the bundled demo, ready to try.

A fresh machine has no GitOps repo and no package index, so the demo makes both under the
state dir (a bare repo from the project's manifests and environments, and a wheelhouse of
the example apps), says where everything is, then runs the real controller against them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from qrelease.config import load_config
from qrelease.daemon.controller import run_controller
from qrelease.examples.demo import build_wheelhouse, ensure_demo_remote
from qrelease.wiring import BackendsFactory

DEMO_INTERVAL = timedelta(seconds=5)


def run_demo(
    state_dir: Path, listen: str, *, backends_factory: BackendsFactory | None = None
) -> int:
    """Create the demo remote and wheelhouse if missing, print the guide, run the controller."""
    remote = ensure_demo_remote(state_dir)
    build_wheelhouse(state_dir / "wheels")
    print(guide(remote, state_dir, listen), flush=True)
    return run_controller(
        load_config(None),
        repo=str(remote),
        state_dir=state_dir,
        interval=DEMO_INTERVAL,
        listen=listen,
        config_path=None,
        backends_factory=backends_factory,
    )


def guide(remote: Path, state_dir: Path, listen: str) -> str:
    """What the operator can do with the running demo."""
    base = f"http://{listen}"
    seconds = int(DEMO_INTERVAL.total_seconds())
    return "\n".join(
        [
            "qrelease demo: the controller runs in the foreground (Ctrl-C stops it).",
            f"  GitOps remote  {remote}  (polled every {seconds}s)",
            f"  state          {state_dir}  (SQLite store, release venvs, wheels/)",
            f"  status         {base}/status",
            f"  probes         {base}/healthz  {base}/readyz",
            f"  metrics        {base}/metrics",
            f"  webhook        POST {base}/hooks/git  (needs QRELEASE_WEBHOOK_SECRET)",
            f"  TUI            qrelease tui --repo {remote} --state {state_dir}",
            f"  status (CLI)   qrelease status --repo {remote} --state {state_dir}",
            "  promote        qrelease promote bell-service --to staging "
            f'--repo {remote} --state {state_dir} --reason "try the demo"',
            f"  by hand        git clone {remote} work; edit work/releases/staging.yaml; "
            "git -C work commit -am 'pin'; git -C work push",
            "",
        ]
    )
