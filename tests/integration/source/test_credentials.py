"""A password in `--repo` reaches git and the server, and nothing else: no file, log or output.

Real processes throughout: the `qrelease` CLI and `controller run --once` as subprocesses,
real git over real HTTP to `git http-backend` behind basic auth. The user's own git config
asks for `credential.helper = store`, so a password git handed to a helper would land in
`~/.git-credentials`; it must not.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from qrelease.examples.scaffold import initial_files
from tests.helpers.gitops import GIT_ENV, GitOpsRepo, make_repo
from tests.integration.source.conftest import PASSWORD, USERNAME, GitHttpServer

CLI_TIMEOUT = 180.0
SECRET_FORMS = (
    PASSWORD,
    quote(PASSWORD, safe=""),
    base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
)


@dataclass
class Session:
    """Runs qrelease as a user would, keeping everything it printed."""

    home: Path
    printed: list[str] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **GIT_ENV, "HOME": str(self.home), "QDK_PYTHON_TELEMETRY": "none"}
        done = subprocess.run(
            [sys.executable, "-m", "qrelease", *args],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        self.printed += [done.stdout, done.stderr]
        return done


def url(server: GitHttpServer, repo: str, password: str = PASSWORD) -> str:
    """The repo's URL with the user name and (percent-encoded) password in it."""
    host = server.url.removeprefix("http://")
    return f"http://{USERNAME}:{quote(password, safe='')}@{host}/{repo}"


def serve(server: GitHttpServer, name: str, work: GitOpsRepo) -> None:
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work.path), str(server.app.root / name)], check=True
    )


def git_dirs(state: Path) -> list[Path]:
    """Every repository qrelease keeps under a state dir: mirrors and scratch clones."""
    mirrors = list((state / "sources").glob("*.git"))
    return mirrors + [clone / ".git" for clone in (state / "work").glob("*") if clone.is_dir()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def session(tmp_path: Path) -> Session:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    return Session(home)


def test_credentials_in_the_url_are_never_at_rest_nor_shown(
    git_server: GitHttpServer, session: Session, tmp_path: Path
) -> None:
    serve(git_server, "gitops.git", make_repo(tmp_path / "gitops", initial_files(example=True)))
    serve(git_server, "empty.git", make_repo(tmp_path / "empty", initial_files(example=False)))
    state, controller_state = tmp_path / "state", tmp_path / "controller-state"
    gitops = ["--repo", url(git_server, "gitops.git"), "--state", str(state)]

    for command in (
        ["validate"],
        ["status"],
        ["rollback", "bell-service", "--env", "prod", "--to", "1.1.0", "--reason", "r"],
        ["history"],
        ["audit", "verify"],
    ):
        done = session.run(*command, *gitops)
        assert done.returncode == 0, (command, done.stderr)
    pushed = subprocess.run(
        ["git", "--git-dir", str(git_server.app.root / "gitops.git"), "log", "-1", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == "rollback bell-service 1.0.0 -> 1.1.0 in prod"
    watch = ["controller", "run", "--once", "--state", str(controller_state)]
    done = session.run(*watch, "--repo", url(git_server, "empty.git"))
    assert done.returncode == 0, done.stderr

    refused_before = git_server.app.refused
    wrong = url(git_server, "gitops.git", password="wrong")
    rollback = ["rollback", "bell-service", "--env", "prod", "--reason", "r"]
    for command, complaint in (
        (["validate", "--repo", wrong, "--state", str(state)], "cannot fetch into"),
        (["validate", "--repo", wrong, "--state", str(tmp_path / "fresh")], "Authentication"),
        (["validate", "--repo", url(git_server, "missing.git")], "missing.git/' not found"),
        (["validate", "--repo", f"{USERNAME}:{PASSWORD}@127.0.0.1:gitops.git"], "cannot carry"),
        ([*rollback, "--repo", wrong, "--state", str(state)], "Authentication failed"),
        ([*watch, "--repo", url(git_server, "empty.git", password="wrong")], "Authentication"),
    ):
        if "--state" not in command:
            command += ["--state", str(state)]
        done = session.run(*command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert complaint in done.stdout + done.stderr, (command, done.stdout, done.stderr)
    assert git_server.app.refused > refused_before  # the wrong passwords reached the server

    for text in session.printed:
        for secret in SECRET_FORMS:
            assert secret not in text
    for root in (state, controller_state, tmp_path / "fresh", session.home):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes()
                for secret in SECRET_FORMS:
                    assert secret.encode() not in content, path
    assert not (session.home / ".git-credentials").exists()

    repositories = git_dirs(state) + git_dirs(controller_state)
    assert len(repositories) == 3  # two mirrors and the scratch clone rollback published from
    for repository in repositories:
        config = subprocess.run(
            ["git", "--git-dir", str(repository), "config", "--list", "--local"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"remote.origin.url={git_server.url}/" in config and "@" not in config
        assert mode(repository / "config") == 0o600
    for root in (state, controller_state):
        assert mode(root) == 0o700 and mode(root / "qrelease.db") == 0o600
    assert mode(controller_state / "controller.lock") == 0o600
