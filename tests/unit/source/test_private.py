"""Credentials split off a URL and given to real git in memory; state only its owner reads."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from qrelease.daemon.lock import ControllerLock
from qrelease.source.private import private_dir, private_file, split_credentials
from qrelease.source.repo import SourceError
from qrelease.wiring import open_state


@pytest.mark.parametrize(
    ("location", "url", "username", "password"),
    [
        (
            "https://bot:s%40cret%2F1@git.example/g.git",
            "https://git.example/g.git",
            "bot",
            "s@cret/1",
        ),
        ("http://tok3n@git.example:8080/g.git", "http://git.example:8080/g.git", "tok3n", ""),
        ("HTTPS://bot:p@ss@git.example/g.git", "HTTPS://git.example/g.git", "bot", "p@ss"),
    ],
)
def test_http_credentials_are_split_off_the_url(
    location: str, url: str, username: str, password: str
) -> None:
    remote = split_credentials(location)
    assert (remote.url, remote.username, remote.password) == (url, username, password)
    assert remote.secret == (password or username)
    assert password not in repr(remote) or not password


@pytest.mark.parametrize(
    "location",
    [
        "https://git.example/g.git",
        "ssh://git@git.example/g.git",
        "git@github.com:org/g.git",
        "file:///srv/g.git",
        "/srv/g.git",
    ],
)
def test_addresses_without_a_secret_are_kept_as_given(location: str) -> None:
    remote = split_credentials(location)
    assert remote.url == location and remote.git_env() == {}


@pytest.mark.parametrize(
    ("location", "complaint"),
    [
        ("bot:hunter22@git.example:org/g.git", "an ssh address cannot carry a password"),
        ("ssh://bot:hunter22@git.example/g.git", "an ssh address cannot carry a password"),
        ("https://bot:hunter22%0A@git.example/g.git", "the credentials in the URL hold a line"),
    ],
)
def test_passwords_git_cannot_be_given_are_refused_unseen(location: str, complaint: str) -> None:
    with pytest.raises(SourceError, match=complaint) as refused:
        split_credentials(location)
    assert "hunter22" not in str(refused.value)


def git_credential(action: str, home: Path, env: dict[str, str], ask: str) -> str:
    """Run `git credential <action>` as a fetch would, with a private HOME."""
    done = subprocess.run(
        ["git", "credential", action],
        input=ask,
        env={**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_git_gets_the_credentials_from_memory_and_no_helper_stores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")  # command-line config the caller already set
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "qrelease.kept")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "yes")
    remote = split_credentials("https://bot:s%40cret%2F1@git.example/g.git")
    env = remote.git_env()
    ask = "protocol=https\nhost=git.example\npath=g.git\n\n"
    answer = git_credential("fill", tmp_path, env, ask)
    assert "username=bot\n" in answer and "password=s@cret/1\n" in answer
    git_credential("approve", tmp_path, env, answer)  # what git does after a fetch succeeds
    assert not (tmp_path / ".git-credentials").exists()
    configured = [value for key, value in env.items() if key.startswith("GIT_CONFIG")]
    assert not any("s@cret" in value for value in configured)  # only in the variable git reads
    kept = subprocess.run(
        ["git", "config", "--get", "qrelease.kept"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert kept.stdout.strip() == "yes"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dirs_and_files_are_made_owner_only(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    assert mode(private_dir(shared)) == 0o700
    assert mode(private_dir(tmp_path / "a" / "b")) == 0o700
    made = private_file(tmp_path / "new.db")
    assert mode(made) == 0o600 and made.read_bytes() == b""
    old = tmp_path / "old.db"
    old.write_text("kept")
    old.chmod(0o644)
    assert mode(private_file(old)) == 0o600 and old.read_text() == "kept"
    (tmp_path / "a-dir").mkdir(mode=0o755)
    assert mode(private_file(tmp_path / "a-dir")) == 0o755  # not a file: left to its reader
    assert not private_file(tmp_path / "absent", create=False).exists()


def test_a_state_dir_and_its_database_and_lock_are_owner_only(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir(mode=0o755)
    for name in ("qrelease.db", "qrelease.db-wal"):
        (legacy / name).write_bytes(b"")
        (legacy / name).chmod(0o644)
    (legacy / "qrelease.db").unlink()  # an older qrelease's WAL, before the database is made
    fresh = tmp_path / "fresh"
    for state in (legacy, fresh):
        with open_state(state) as store, ControllerLock(state):
            store.set_meta("touched", "yes")
            files = [p for p in state.iterdir() if p.is_file()]
            assert mode(state) == 0o700
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
            assert {"qrelease.db", "controller.lock"} <= {p.name for p in files}
