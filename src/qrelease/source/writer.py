"""Writing to the GitOps repo: creating one, and committing changes made by qrelease.

Commits use the operator's git identity when there is one, else a clearly named fallback,
so a fresh machine or a CI runner can still write.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import git

from qrelease.source.repo import SourceError

FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "qrelease",
    "GIT_AUTHOR_EMAIL": "qrelease@localhost",
    "GIT_COMMITTER_NAME": "qrelease",
    "GIT_COMMITTER_EMAIL": "qrelease@localhost",
}


def init_repo(
    directory: Path, files: Mapping[str, bytes], message: str, branch: str = "main"
) -> str:
    """Create a git repository holding `files` in one commit; returns the commit id."""
    if (directory / ".git").exists():
        raise SourceError(f"{directory}: already a git repository")
    if directory.exists() and any(directory.iterdir()):
        raise SourceError(f"{directory}: not empty")
    directory.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(directory, initial_branch=branch)
    try:
        for relative, content in sorted(files.items()):
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        repo.git.add("--all")
        return commit(repo, message)
    finally:
        repo.close()


def commit(repo: git.Repo, message: str) -> str:
    """Commit what is staged with the configured identity (or the fallback); returns its id."""
    with repo.git.custom_environment(**identity_env(repo)):
        repo.git.commit("--quiet", "--message", message)
    return str(repo.git.rev_parse("HEAD"))


def identity_env(repo: git.Repo) -> dict[str, str]:
    """Environment variables that fill in a git identity only where none is configured."""
    try:
        repo.git.config("user.email")
        repo.git.config("user.name")
    except git.exc.GitCommandError:
        return dict(FALLBACK_IDENTITY)
    return {}


def push_mirror(work: Path, bare: Path) -> None:
    """Create a bare repository at `bare` holding every branch of the repository at `work`."""
    repo = git.Repo.init(bare, bare=True, initial_branch="main")
    repo.close()
    source = git.Repo(work)
    try:
        source.git.push(str(bare), "--all")
    finally:
        source.close()
