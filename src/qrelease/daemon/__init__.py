"""The controller daemon: what runs all day and turns Git commits into deployed releases.

`run_controller` is `qrelease controller run`; `run_demo` is `make run`. The package is
split by concern: `controller` (the hub: threads and signals), `reconciler` (fetch and
passes, on one thread), `server` (HTTP on uvicorn), `webhooks` (signature checks),
`metrics`, `logs` (structured, redacted), `lock` (one controller per state dir),
`schedule` (jitter and backoff) and `settings` (flags over the config file).
"""

from __future__ import annotations

from qrelease.daemon.controller import Controller, run_controller, run_once
from qrelease.daemon.demo import run_demo

__all__ = ["Controller", "run_controller", "run_demo", "run_once"]
