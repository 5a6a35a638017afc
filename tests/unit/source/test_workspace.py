"""Mirrors of remote repos: named and configured without credentials, private, one writer."""

from __future__ import annotations

import stat
import subprocess
import threading
from pathlib import Path

import pytest

from qrelease.source.private import split_credentials
from qrelease.source.repo import SourceError
from qrelease.source.workspace import (
    fetch_mirror,
    forget_copy_with_credentials,
    mirror_path,
    open_repo,
    refresh_mirror,
    scratch_name,
)
from tests.helpers.gitops import GitOpsRepo


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def remote_url(example_repo: GitOpsRepo, tmp_path: Path) -> str:
    """A `file://` URL of a bare copy of the example repo (a URL, so it is mirrored)."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(example_repo.path), str(bare)], check=True)
    return bare.as_uri()


def test_the_mirror_of_a_url_does_not_depend_on_its_password(tmp_path: Path) -> None:
    names = {
        mirror_path(location, tmp_path)
        for location in (
            "https://bot:first@git.example/g.git",
            "https://bot:second@git.example/g.git",
            "https://git.example/g.git",
        )
    }
    assert names == {tmp_path / "sources" / f"{scratch_name('https://git.example/g.git')}.git"}


def test_a_mirror_is_private_and_reads_like_its_remote(remote_url: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with open_repo(remote_url, state) as repo:
        assert repo.show_file("main", "releases/prod.yaml") is not None
    mirror = mirror_path(remote_url, state)
    assert mode(state) == mode(state / "sources") == 0o700
    assert mode(mirror / "config") == 0o600
    with open_repo(remote_url, state) as repo:  # the second time it fetches
        assert repo.path == mirror


def test_a_copy_named_after_a_url_with_its_password_is_deleted(tmp_path: Path) -> None:
    location = "https://bot:hunter22@git.example/g.git"
    mirror = mirror_path(location, tmp_path)
    legacy = mirror.with_name(f"{scratch_name(location)}.git")
    legacy.mkdir(parents=True)
    (legacy / "config").write_text(f'[remote "origin"]\n\turl = {location}\n')
    forget_copy_with_credentials(location, mirror)
    assert not legacy.exists()
    forget_copy_with_credentials("https://git.example/g.git", mirror)  # nothing to forget


def test_a_failed_fetch_names_the_mirror_and_not_the_password(
    remote_url: str, tmp_path: Path
) -> None:
    mirror = mirror_path(remote_url, tmp_path)
    refresh_mirror(remote_url, mirror)
    unreachable = "http://bot:hunter22@127.0.0.1:9/g.git"
    subprocess.run(
        [
            "git",
            "--git-dir",
            str(mirror),
            "remote",
            "set-url",
            "origin",
            "http://127.0.0.1:9/g.git",
        ],
        check=True,
    )
    with pytest.raises(SourceError, match=f"cannot fetch into {mirror}: fatal: ") as failed:
        fetch_mirror(mirror, remote=split_credentials(unreachable))
    assert "hunter22" not in str(failed.value)


def test_processes_sharing_a_mirror_take_turns(remote_url: str, tmp_path: Path) -> None:
    mirror = mirror_path(remote_url, tmp_path)
    failures: list[BaseException] = []

    def refresh() -> None:
        try:
            refresh_mirror(remote_url, mirror)
        except BaseException as failure:  # reported by the test, not lost in the thread
            failures.append(failure)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []  # one cloned, the others waited and fetched
    assert (mirror / "HEAD").is_file()
