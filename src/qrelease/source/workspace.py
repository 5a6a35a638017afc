"""Turning the `--repo` argument (a path or any URL git accepts) into a readable repository.

A local repository is read in place; anything else is mirrored into the state dir and
fetched, so the CLI and the controller read the same way.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import git

from qrelease.redaction import redact_url
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
    mirror = mirror_path(location, state_dir)
    if not mirror.exists():
        clone_mirror(location, mirror)
    else:
        fetch_mirror(mirror)
    return GitRepo(mirror)


def mirror_path(location: str, state_dir: Path) -> Path:
    """Where the mirror of a remote repository lives under the state dir."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return state_dir / "sources" / f"{digest}.git"


def clone_mirror(location: str, mirror: Path, timeout: float = FETCH_TIMEOUT) -> None:
    """Create a bare mirror of `location`."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo = git.Repo.clone_from(location, mirror, mirror=True, kill_after_timeout=timeout)
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot clone {redact_url(location)}: {git_reason(exc)}") from None
    repo.close()


def fetch_mirror(mirror: Path, timeout: float = FETCH_TIMEOUT) -> None:
    """Bring a mirror up to date with its remote (plain `git fetch`: no Repo object per poll)."""
    argv = ["git", "--git-dir", str(mirror), "fetch", "--quiet", "--prune", "origin"]
    try:
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"cannot fetch into {mirror}: git took over {timeout:g}s") from None
    except subprocess.CalledProcessError as exc:
        reason = _telling_line(str(exc.stderr or ""), f"git exited with {exc.returncode}")
        raise SourceError(f"cannot fetch into {mirror}: {reason}") from None


def git_reason(exc: git.exc.GitCommandError) -> str:
    """The most telling line of git's complaint: its first `fatal:`/`error:` line."""
    return _telling_line(str(exc.stderr or ""), f"git exited with {exc.status}")


def _telling_line(stderr: str, fallback: str) -> str:
    lines = [line.strip().removeprefix("stderr: ").strip("'") for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    telling = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return redact_url((telling or lines or [fallback])[0])
