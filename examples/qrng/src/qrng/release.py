"""Find and check the qrelease lock of the release this app is running from.

qrelease delivers the quantum program with the classical app: each release directory holds
`qrelease.lock.json` (target pin, profile, QIR digest, version) and `program.qir` next to
the app's virtualenv, `<release>/venv/`. The release is `$QRELEASE_RELEASE_DIR` when set
(qrelease sets it for health commands), else the parent of this interpreter's `sys.prefix`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

LOCK_FILE = "qrelease.lock.json"
PROGRAM_FILE = "program.qir"
LOCK_FIELDS = (
    "app",
    "env",
    "version",
    "revision",
    "target_id",
    "profile",
    "entry",
    "program",
    "qir_sha256",
    "deployed_at",
)
MAX_LOCK_BYTES = 64 * 1024


class LockError(Exception):
    """The lock file is missing, unreadable or inconsistent with the release."""


def release_dir() -> Path:
    """The release directory: $QRELEASE_RELEASE_DIR, else the parent of the venv."""
    configured = os.environ.get("QRELEASE_RELEASE_DIR")
    return Path(configured) if configured else Path(sys.prefix).parent


def load_lock(release: Path) -> dict[str, Any]:
    """Read the release's lock file and check every field is there."""
    path = release / LOCK_FILE
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_LOCK_BYTES + 1)
    except OSError as error:
        raise LockError(f"no lock file at {path}: {error.strerror}") from None
    if len(raw) > MAX_LOCK_BYTES:
        raise LockError(f"{path} is larger than {MAX_LOCK_BYTES} bytes")
    try:
        lock = json.loads(raw)
    except ValueError as error:
        raise LockError(f"{path} is not JSON: {error}") from None
    if not isinstance(lock, dict):
        raise LockError(f"{path} is not a JSON object")
    missing = [name for name in LOCK_FIELDS if not isinstance(lock.get(name), str)]
    if missing:
        raise LockError(f"{path} lacks fields: {', '.join(missing)}")
    return lock


def read_program(release: Path, lock: dict[str, Any]) -> str:
    """The release's QIR text, checked against the digest the lock pins."""
    path = release / PROGRAM_FILE
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LockError(f"no program at {path}: {error.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != lock["qir_sha256"]:
        raise LockError(f"{path} has sha256 {digest}, the lock pins {lock['qir_sha256']}")
    return data.decode("utf-8")


def job_tags(lock: dict[str, Any]) -> list[str]:
    """The tags every quantum job this release submits carries, so qrelease can watch them.

    Pass them as the job's `tags` when submitting to Azure Quantum (azure-quantum's
    `Job.from_input_data(..., tags=job_tags(lock))`, or `tags=` of `target.submit`): the
    controller counts the jobs of each live release and judges them by the environment's
    `policy.quantum_health`.
    """
    return [
        "qrelease",
        f"qrelease.env={lock['env']}",
        f"qrelease.app={lock['app']}",
        f"qrelease.version={lock['version']}",
    ]


def describe(lock: dict[str, Any], package_version: str) -> str:
    """A few lines saying what this release pins."""
    return "\n".join(
        [
            f"{lock['app']} {lock['version']} in {lock['env']} "
            f"(package {package_version}, revision {lock['revision'][:12]})",
            f"target:  {lock['target_id']} ({lock['profile']} profile)",
            f"program: {lock['program']} {lock['entry']}",
            f"qir:     sha256 {lock['qir_sha256']}",
        ]
    )


def simulate(qir: str, shots: int, seed: int | None) -> list[Any]:
    """Run the QIR on qdk's local CPU simulator; LockError when qdk is not installed."""
    try:
        from qdk.simulation import run_qir
    except ImportError:
        raise LockError(
            "qdk not installed in this release: install the app with its [qdk] extra "
            "to run the program on the local simulator"
        ) from None
    return list(run_qir(qir, shots=shots, seed=seed, type="cpu"))
