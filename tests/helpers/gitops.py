"""Real git work trees in tmp dirs: what every test that needs a GitOps repo builds on."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitOpsRepo:
    """A real git work tree the tests write files into and commit."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        """Run git in the repo and return stdout."""
        env = {**os.environ, **GIT_ENV, "HOME": str(self.path.parent)}
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def write(self, relative: str, content: str | bytes) -> Path:
        """Write a file (creating folders)."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        target.write_bytes(content)
        return target

    def read(self, relative: str) -> str:
        """Read a file of the work tree."""
        return (self.path / relative).read_text()

    def commit(self, message: str = "change") -> str:
        """Stage everything and commit; returns the commit id."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def head(self) -> str:
        """The current commit id."""
        return self.git("rev-parse", "HEAD")


def make_repo(path: Path, files: dict[str, bytes]) -> GitOpsRepo:
    """A new repo on branch main holding `files` in one commit."""
    path.mkdir(parents=True)
    repo = GitOpsRepo(path)
    repo.git("init", "--quiet", "--initial-branch", "main")
    for relative, content in files.items():
        repo.write(relative, content)
    repo.commit("initial")
    return repo


def relaxed(environment_file: str) -> str:
    """An environment file without soak or deny windows, for tests that run on the real clock."""
    text = re.sub(r"(?m)^(\s*soak:) \S+$", r"\1 0s", environment_file)
    return re.sub(r"(?m)^  windows:\n(    - .*\n)*", "", text)
