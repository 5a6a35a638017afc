"""Audit anchors on real git: commits on the audit ref, pushed fast-forward only, read back."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qrelease.source.anchors import (
    Anchor,
    AnchorPushError,
    anchor_ref,
    anchored_controllers,
    newest_anchor,
    read_anchors,
    refresh_anchor,
    write_anchor,
)
from qrelease.source.private import Remote
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys
from tests.helpers.gitops import GitOpsRepo

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CONTROLLER = "0123456789abcdef"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def head(seq: int, minutes: int = 0) -> Anchor:
    """An anchor not yet written: seq, a made-up hash, a time."""
    return Anchor(seq, f"{seq:064x}", T0 + timedelta(minutes=minutes), CONTROLLER)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def remote(example_repo: GitOpsRepo, tmp_path: Path) -> Path:
    """A bare GitOps remote."""
    bare = tmp_path / "remote.git"
    example_repo.git("clone", "--quiet", "--bare", str(example_repo.path), str(bare))
    return bare


def mirror_of(remote: Path, path: Path) -> GitRepo:
    """A bare mirror of the remote, as the controller keeps under its state dir."""
    subprocess.run(["git", "clone", "-q", "--mirror", str(remote), str(path)], check=True)
    return GitRepo(path)


def test_anchors_chain_on_the_ref_and_read_back_newest_first(remote: Path, tmp_path: Path) -> None:
    with mirror_of(remote, tmp_path / "mirror.git") as mirror:
        first = write_anchor(mirror, Remote(str(remote)), head(5), None)
        second = write_anchor(mirror, Remote(str(remote)), head(9, minutes=3), first)
        assert newest_anchor(mirror, CONTROLLER) == second  # the mirror's own ref moved too
    ref = anchor_ref(CONTROLLER)
    assert git(remote, "rev-parse", ref) == second.commit
    assert (
        git(remote, "log", "-1", "--format=%P %T", second.commit) == f"{first.commit} {EMPTY_TREE}"
    )
    assert git(remote, "log", "-1", "--format=%P", first.commit) == ""
    assert git(remote, "log", "-1", "--format=%cI", second.commit) == "2026-05-01T12:03:00+00:00"
    assert git(remote, "log", "-1", "--format=%B", second.commit) == (
        "qrelease audit anchor: seq 9\n\n"
        f"Qrelease-Audit-Controller: {CONTROLLER}\n"
        "Qrelease-Audit-Seq: 9\n"
        f"Qrelease-Audit-Hash: {9:064x}\n"
        "Qrelease-Audit-Time: 2026-05-01T12:03:00+00:00"
    )
    with GitRepo(remote) as repo:
        log = read_anchors(repo, CONTROLLER)
        assert log.anchors == (second, first) and log.problems == () and not log.truncated
        assert anchored_controllers(repo) == [CONTROLLER]
        assert read_anchors(repo, "feedfacefeedface").anchors == ()
        truncated = read_anchors(repo, CONTROLLER, limit=1)
    assert truncated.anchors == (second,) and truncated.truncated
    assert second.describe() == (
        f"anchor at seq 9 (2026-05-01T12:03:00+00:00, commit {second.commit[:12]})"
    )


def test_the_remote_refuses_an_anchor_that_does_not_extend_its_ref(
    remote: Path, tmp_path: Path
) -> None:
    with (
        mirror_of(remote, tmp_path / "one.git") as one,
        mirror_of(remote, tmp_path / "two.git") as two,
    ):
        ahead = write_anchor(one, Remote(str(remote)), head(5), None)
        with pytest.raises(AnchorPushError, match="push refused") as refused:
            write_anchor(two, Remote(str(remote)), head(6), None)  # two never saw `ahead`
        assert refused.value.behind
        assert git(remote, "rev-parse", anchor_ref(CONTROLLER)) == ahead.commit
        refresh_anchor(two, Remote(str(remote)), CONTROLLER)
        assert newest_anchor(two, CONTROLLER) == ahead
        on_top = write_anchor(two, Remote(str(remote)), head(6), ahead)
    assert git(remote, "rev-parse", anchor_ref(CONTROLLER)) == on_top.commit


def test_a_remote_hook_that_declines_is_reported_with_its_reason(
    remote: Path, tmp_path: Path
) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'audit refs are frozen here' >&2\nexit 1\n")
    hook.chmod(0o755)
    with (
        mirror_of(remote, tmp_path / "mirror.git") as mirror,
        pytest.raises(AnchorPushError) as refused,
    ):
        write_anchor(mirror, Remote(str(remote)), head(5), None)
    assert not refused.value.behind
    assert "pre-receive hook declined" in str(refused.value)
    assert "audit refs are frozen here" in str(refused.value)
    with GitRepo(remote) as repo:
        assert read_anchors(repo, CONTROLLER).anchors == ()


def test_what_is_not_an_anchor_on_the_ref_is_named(remote: Path, tmp_path: Path) -> None:
    with mirror_of(remote, tmp_path / "mirror.git") as mirror:
        first = write_anchor(mirror, Remote(str(remote)), head(5), None)
    main = git(remote, "rev-parse", "main")
    git(remote, "update-ref", anchor_ref(CONTROLLER), main)  # a branch commit, not an anchor
    with GitRepo(remote) as repo:
        log = read_anchors(repo, CONTROLLER)
        assert log.anchors == ()
        assert log.problems[0] == (
            f"{anchor_ref(CONTROLLER)}: commit {main[:12]} is not an audit anchor"
        )
        with pytest.raises(SourceError, match="is not an audit anchor"):
            newest_anchor(repo, CONTROLLER)
    forged = subprocess.run(
        ["git", "-C", str(remote), "commit-tree", EMPTY_TREE, "-p", first.commit, "-m",
         f"x\n\nQrelease-Audit-Controller: {CONTROLLER}\nQrelease-Audit-Seq: -3\n"
         f"Qrelease-Audit-Hash: {'0' * 64}\nQrelease-Audit-Time: 2026-05-01T12:00:00+00:00\n"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    git(remote, "update-ref", anchor_ref(CONTROLLER), forged)
    with GitRepo(remote) as repo:
        log = read_anchors(repo, CONTROLLER)
    assert log.anchors == (first,)
    assert log.problems == (
        f"{anchor_ref(CONTROLLER)}: commit {forged[:12]}: "
        "Qrelease-Audit-Seq '-3' is not a positive whole number",
    )


@pytest.mark.parametrize("odd", ["../heads/main", "A B", "", "x" * 65, "-flag"])
def test_a_controller_id_that_git_or_a_path_could_misread_is_refused(odd: str) -> None:
    with pytest.raises(SourceError, match="is not a controller id"):
        anchor_ref(odd)


def test_an_anchor_is_signed_when_git_has_a_signing_key(remote: Path, tmp_path: Path) -> None:
    key = tmp_path / "controller-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "qrelease", "-f", str(key)],
        check=True,
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"qrelease@localhost {key.with_suffix('.pub').read_text()}")
    stranger = tmp_path / "stranger_signers"
    stranger.write_text("")
    with mirror_of(remote, tmp_path / "mirror.git") as mirror:
        unsigned = write_anchor(mirror, Remote(str(remote)), head(5), None)
        with GitRepo(remote) as repo:
            log = read_anchors(repo, CONTROLLER, keys=TrustedKeys(allowed_signers=allowed))
        assert log.signature_problem == "it is not signed"
        git(mirror.path, "config", "gpg.format", "ssh")
        git(mirror.path, "config", "user.signingkey", str(key))
        write_anchor(mirror, Remote(str(remote)), head(6), unsigned)
    with GitRepo(remote) as repo:
        assert read_anchors(repo, CONTROLLER, keys=TrustedKeys(allowed)).signature_problem is None
        untrusted = read_anchors(repo, CONTROLLER, keys=TrustedKeys(allowed_signers=stranger))
        assert read_anchors(repo, CONTROLLER).signature_problem is None  # no keys: not checked
    assert untrusted.signature_problem is not None
    assert untrusted.signature_problem.startswith("its signature status is")
