"""The controller daemon: what runs all day and turns Git commits into deployed releases.

`run_controller` is `qrelease controller run`. The package is
split by concern: `controller` (the hub: threads and signals), `reconciler` (fetch and
passes, on one thread), `server` (HTTP on uvicorn), `webhooks` (signature checks),
`metrics`, `logs` (structured, redacted), `lock` (one controller per state dir),
`schedule` (jitter and backoff) and `settings` (flags over the config file).
"""

from __future__ import annotations

from qrelease.daemon.controller import Controller, run_controller, run_once

__all__ = ["Controller", "run_controller", "run_once"]
