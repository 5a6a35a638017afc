"""Signed-commit verification: the controller applies only revisions signed by trusted keys.

SSH signatures are checked against an allowed-signers file (`ssh-keygen -Y` format: one
`principal key` per line); GPG signatures against a keyring directory that holds only the
trusted keys. A head that is unsigned, signed by an unknown key, or badly signed is
refused with a message that says which.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from qrelease.source.repo import GitRepo

_STATUS = {
    "B": "has a bad signature",
    "U": "is signed by a key that is not trusted",
    "X": "has an expired signature",
    "Y": "is signed by an expired key",
    "R": "is signed by a revoked key",
    "E": "has a signature that cannot be checked (unknown key)",
    "N": "is not signed",
}


@dataclass(frozen=True)
class TrustedKeys:
    """Where the trusted keys are: an SSH allowed-signers file and/or a GPG home directory."""

    allowed_signers: Path | None = None
    gpg_home: Path | None = None

    @property
    def enabled(self) -> bool:
        """True when any key source is configured."""
        return self.allowed_signers is not None or self.gpg_home is not None


def verify_revision(repo: GitRepo, revision: str, keys: TrustedKeys) -> str | None:
    """None when `revision` carries a good signature from a trusted key, else why not."""
    options = []
    if keys.allowed_signers is not None:
        options += ["-c", f"gpg.ssh.allowedSignersFile={keys.allowed_signers}"]
    env = {"GNUPGHOME": str(keys.gpg_home)} if keys.gpg_home is not None else {}
    argv = ["git", *options, "log", "-1", "--format=%G?%x00%GS", revision]
    try:
        output = git.Git(str(repo.path)).execute(argv, env={**os.environ, **env})
        status, signer = str(output).split("\x00", 1)
    except git.exc.GitCommandError as exc:
        return f"cannot check the signature of {revision[:12]}: {exc.stderr or exc}"
    if status == "G":
        return None
    detail = _STATUS.get(status, f"has signature status {status!r}")
    by = f" ({signer})" if signer else ""
    return f"revision {revision[:12]} {detail}{by}; nothing from it is applied"


def signed_by(repo: GitRepo, commit: str, allowed_signers: Sequence[str]) -> tuple[str | None, str]:
    """(the principal that signed `commit` when it is one of `allowed_signers`, else None; why).

    `allowed_signers` are SSH allowed-signers lines (`principal key-type key`), as an
    environment's `policy.overriders` lists them.
    """
    if not allowed_signers:
        return None, "no overriders are listed for the environment"
    with tempfile.NamedTemporaryFile("w", suffix=".allowed_signers", delete=False) as handle:
        handle.write("\n".join(allowed_signers) + "\n")
        listed = Path(handle.name)
    try:
        argv = [
            "git",
            "-c",
            f"gpg.ssh.allowedSignersFile={listed}",
            "log",
            "-1",
            "--format=%G?%x00%GS",
            commit,
        ]
        try:
            status, signer = str(git.Git(str(repo.path)).execute(argv)).split("\x00", 1)
        except git.exc.GitCommandError as exc:
            return None, f"cannot check the signature of {commit[:12]}: {exc.stderr or exc}"
    finally:
        listed.unlink(missing_ok=True)
    if status == "G":
        return signer or None, f"signed by {signer}"
    detail = _STATUS.get(status, f"has signature status {status!r}")
    return None, f"commit {commit[:12]} {detail}" + (f" ({signer})" if signer else "")
