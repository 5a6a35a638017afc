"""Turning the `--repo` argument (a path or any URL git accepts) into a readable repository.

A local repository is read in place; anything else is mirrored into the state dir and
fetched, so the CLI and the controller read the same way. A mirror records its URL
without credentials, which reach git only while it clones or fetches (see `private`), and
one process at a time clones or fetches into it (an `flock` on a file beside it).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from qrelease.redaction import redact, redact_url
from qrelease.source.private import (
    PRIVATE_FILE,
    Remote,
    private_dir,
    private_file,
    split_credentials,
    url_without_credentials,
)
from qrelease.source.repo import GitRepo, SourceError

__all__ = ["redact_url"]

FETCH_TIMEOUT = 60.0


def is_local_repo(location: str) -> bool:
    """True when `location` is a directory holding a git repository."""
    path = Path(location)
    return path.is_dir() and ((path / ".git").exists() or (path / "HEAD").is_file())


def open_repo(location: str, state_dir: Path) -> GitRepo:
    """Open a local repository, or refresh a bare mirror of a remote one."""
    if is_local_repo(location):
        return GitRepo(location)
    private_dir(state_dir)
    mirror = mirror_path(location, state_dir)
    refresh_mirror(location, mirror)
    return GitRepo(mirror)


def mirror_path(location: str, state_dir: Path) -> Path:
    """Where the mirror of a remote repository lives under the state dir (whatever its password)."""
    return state_dir / "sources" / f"{scratch_name(url_without_credentials(location))}.git"


def scratch_name(location: str) -> str:
    """A short stable name for a repository's copy in the state dir."""
    return hashlib.sha256(location.encode()).hexdigest()[:16]


def refresh_mirror(location: str, mirror: Path, timeout: float = FETCH_TIMEOUT) -> None:
    """Clone the bare mirror of `location` the first time, fetch into it afterwards."""
    remote = split_credentials(location)
    private_dir(mirror.parent)
    forget_copy_with_credentials(location, mirror)
    with locked(mirror.with_name(f"{mirror.name}.lock")):
        if mirror.exists():
            fetch_mirror(mirror, timeout, remote)
        else:
            clone_mirror(remote, mirror, timeout)


def forget_copy_with_credentials(location: str, copy: Path) -> None:
    """Delete a copy an older qrelease named after the URL with its credentials (in its config)."""
    legacy = copy.with_name(scratch_name(location) + copy.suffix)
    if legacy != copy and legacy.exists():
        shutil.rmtree(legacy)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created 0600) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clone_mirror(remote: Remote, mirror: Path, timeout: float = FETCH_TIMEOUT) -> None:
    """Create a bare mirror of `remote`, its config readable by its owner only."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo = git.Repo.clone_from(
            remote.url, mirror, mirror=True, env=remote.git_env(), kill_after_timeout=timeout
        )
    except git.exc.GitCommandError as exc:
        reason = git_reason(exc, remote)
        raise SourceError(f"cannot clone {redact_url(remote.url)}: {reason}") from None
    repo.close()
    private_file(mirror / "config")


def fetch_mirror(
    mirror: Path, timeout: float = FETCH_TIMEOUT, remote: Remote | None = None
) -> None:
    """Bring a mirror up to date with its remote (plain `git fetch`: no Repo object per poll)."""
    argv = ["git", "--git-dir", str(mirror), "fetch", "--quiet", "--prune", "origin"]
    credentials = remote.git_env() if remote is not None else {}
    try:
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            env={**os.environ, **credentials} if credentials else None,
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"cannot fetch into {mirror}: git took over {timeout:g}s") from None
    except subprocess.CalledProcessError as exc:
        reason = _telling_line(str(exc.stderr or ""), f"git exited with {exc.returncode}", remote)
        raise SourceError(f"cannot fetch into {mirror}: {reason}") from None


def git_reason(exc: git.exc.GitCommandError, remote: Remote | None = None) -> str:
    """The most telling line of git's complaint: its first `fatal:`/`error:` line, redacted."""
    return _telling_line(str(exc.stderr or ""), f"git exited with {exc.status}", remote)


def _telling_line(stderr: str, fallback: str, remote: Remote | None = None) -> str:
    lines = [line.strip().removeprefix("stderr: ").strip("'") for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    telling = [line for line in lines if line.startswith(("fatal:", "error:"))]
    secrets = [remote.secret] if remote is not None else []
    return redact((telling or lines or [fallback])[0], secrets)
