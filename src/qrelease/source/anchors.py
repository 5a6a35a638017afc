"""Audit anchors: the head of the audit chain, recorded as commits on a ref of the GitOps repo.

The hash chain in the store shows that no event was edited, deleted from the middle or
reordered, but not that its newest events are still there, nor that the whole chain was
not recomputed by someone who rewrote the file. An anchor puts the head outside the
database, where the controller can only add to it: each anchor commit's parent is the
previous anchor and the ref is pushed without force, so the remote refuses anything but a
fast-forward. `qrelease audit verify` compares the store (or an export) with these anchors.

Stored format: the ref `refs/qrelease/audit/<controller-id>`; every commit on it has the
empty tree, at most one parent (the previous anchor) and this message:

    qrelease audit anchor: seq 120

    Qrelease-Audit-Controller: 3f2a9c1d77e0b4a5
    Qrelease-Audit-Seq: 120
    Qrelease-Audit-Hash: <the sha256 `hash` of event 120>
    Qrelease-Audit-Time: 2026-05-01T12:00:00+00:00

Author and committer are the operator's git identity (else `qrelease <qrelease@localhost>`),
both dated at `Time`. The commit is signed (`git commit-tree -S`) when git has a
`user.signingKey` configured, in the format `gpg.format` names (GPG or SSH).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime

import git

from qrelease.redaction import redact_url
from qrelease.source.private import Remote
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys
from qrelease.source.workspace import git_reason
from qrelease.source.writer import FALLBACK_IDENTITY

AUDIT_REF_PREFIX = "refs/qrelease/audit/"
MAX_ANCHORS = 100_000
"""At most this many anchors are read, newest first, so a huge ref cannot exhaust memory."""
GIT_TIMEOUT_SECONDS = 60.0
MAX_REASON_LINES = 4
CONTROLLER_ID = re.compile(r"[0-9a-z][0-9a-z-]{0,63}")
_TRAILERS = ("Controller", "Seq", "Hash", "Time")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_GOOD_SIGNATURE = "G"


class AnchorPushError(SourceError):
    """The remote did not take an anchor; `behind` when only a newer anchor there stopped it."""

    def __init__(self, message: str, *, behind: bool) -> None:
        super().__init__(message)
        self.behind = behind


@dataclass(frozen=True, slots=True)
class Anchor:
    """One recorded head of the audit chain: its seq and hash, when, by whom, in which commit."""

    seq: int
    head_hash: str
    time: datetime
    controller: str
    commit: str = ""

    def describe(self) -> str:
        """How messages name it: `anchor at seq 120 (2026-05-01T12:00:00+00:00, commit 1a2b…)`."""
        return f"anchor at seq {self.seq} ({self.time.isoformat()}, commit {self.commit[:12]})"

    def message(self) -> str:
        """The commit message that records it (see the module docstring)."""
        values = (self.controller, str(self.seq), self.head_hash, self.time.isoformat())
        trailers = "\n".join(
            f"Qrelease-Audit-{key}: {value}" for key, value in zip(_TRAILERS, values, strict=True)
        )
        return f"qrelease audit anchor: seq {self.seq}\n\n{trailers}\n"


@dataclass(frozen=True, slots=True)
class AnchorLog:
    """The anchors one controller's ref holds, newest first, and what could not be read."""

    controller: str
    anchors: tuple[Anchor, ...]
    problems: tuple[str, ...] = ()
    truncated: bool = False
    signature_problem: str | None = None
    """Why the newest anchor's signature is not good, when trusted keys were given to check it."""

    @property
    def newest(self) -> Anchor | None:
        """The most recent anchor, if any."""
        return self.anchors[0] if self.anchors else None


def anchor_ref(controller: str) -> str:
    """The ref that holds one controller's anchors; refuses an id git or a path could misread."""
    if not CONTROLLER_ID.fullmatch(controller):
        raise SourceError(f"{controller!r} is not a controller id (lowercase letters, digits, -)")
    return AUDIT_REF_PREFIX + controller


def anchored_controllers(repo: GitRepo) -> list[str]:
    """The controller ids that have anchors in this repository."""
    output = repo.git.for_each_ref("--format=%(refname)", AUDIT_REF_PREFIX)
    return sorted(line.removeprefix(AUDIT_REF_PREFIX) for line in output.splitlines() if line)


def read_anchors(
    repo: GitRepo,
    controller: str,
    *,
    limit: int = MAX_ANCHORS,
    keys: TrustedKeys | None = None,
) -> AnchorLog:
    """Every anchor on the controller's ref, newest first (at most `limit`)."""
    ref = anchor_ref(controller)
    try:
        tip = repo.read_ref(ref)
    except SourceError:
        return AnchorLog(controller, ())
    anchors: list[Anchor] = []
    problems: list[str] = []
    with closing(_log_lines(repo, tip, limit + 1)) as lines:
        for line in lines:
            if len(anchors) + len(problems) == limit:
                return AnchorLog(controller, tuple(anchors), tuple(problems), truncated=True)
            parsed = _parse(line, controller)
            if isinstance(parsed, Anchor):
                anchors.append(parsed)
            else:
                problems.append(f"{ref}: {parsed}")
    signature = _signature_problem(repo, tip, keys) if keys is not None and keys.enabled else None
    return AnchorLog(controller, tuple(anchors), tuple(problems), signature_problem=signature)


def newest_anchor(repo: GitRepo, controller: str) -> Anchor | None:
    """The anchor at the tip of the controller's ref, or None when there is none yet."""
    log = read_anchors(repo, controller, limit=1)
    if log.problems:
        raise SourceError(log.problems[0])
    return log.newest


def write_anchor(repo: GitRepo, remote: Remote, head: Anchor, parent: Anchor | None) -> Anchor:
    """Commit `head` on top of `parent` in `repo`, push it to `remote` (fast-forward only)."""
    ref = anchor_ref(head.controller)
    try:
        tree = str(repo.git.mktree(kill_after_timeout=GIT_TIMEOUT_SECONDS))
        options = ["-p", parent.commit] if parent is not None else []
        if _signing_key(repo):
            options.append("-S")
        commit = str(
            repo.git.commit_tree(
                tree,
                *options,
                "-m",
                head.message(),
                env=_commit_env(repo, head.time),
                kill_after_timeout=GIT_TIMEOUT_SECONDS,
            )
        )
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot write the audit anchor: {git_reason(exc)}") from None
    _push(repo, remote, commit, ref)
    return Anchor(head.seq, head.head_hash, head.time, head.controller, commit)


def refresh_anchor(repo: GitRepo, remote: Remote, controller: str) -> None:
    """Bring the local copy of the controller's ref up to what `remote` holds."""
    ref = anchor_ref(controller)
    try:
        repo.git.fetch(
            "--quiet",
            "--no-tags",
            remote.url,
            f"+{ref}:{ref}",
            env=remote.git_env(),
            kill_after_timeout=GIT_TIMEOUT_SECONDS,
        )
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot fetch {ref}: {git_reason(exc)}") from None


def _push(repo: GitRepo, remote: Remote, commit: str, ref: str) -> None:
    """Push without force, then move the local ref too (the remote may be another repository).

    Credentials reach git only in the push's environment, never on its command line.
    """
    try:
        repo.git.push(
            remote.url,
            f"{commit}:{ref}",
            env=remote.git_env(),
            kill_after_timeout=GIT_TIMEOUT_SECONDS,
        )
    except git.exc.GitCommandError as exc:
        stderr = str(exc.stderr or "")
        behind = any(word in stderr for word in ("non-fast-forward", "fetch first"))
        raise AnchorPushError(f"push refused: {_push_reason(exc)}", behind=behind) from None
    repo.git.update_ref(ref, commit)


def _push_reason(exc: git.exc.GitCommandError) -> str:
    """What the remote said: its `remote:` lines and the rejection, else git's own complaint."""
    stderr = str(exc.stderr or "").splitlines()
    lines = [line.strip().removeprefix("stderr: ").strip("'").strip() for line in stderr]
    said = [
        line.removeprefix("remote:").strip()
        for line in lines
        if line.startswith("remote:") and line.removeprefix("remote:").strip()
    ]
    rejected = [line.lstrip("! ").strip() for line in lines if "rejected]" in line]
    telling = [*rejected, *said][:MAX_REASON_LINES]
    return redact_url("; ".join(telling)) if telling else git_reason(exc)


def _log_lines(repo: GitRepo, tip: str, limit: int) -> Generator[str, None, None]:
    """One line per commit on the first-parent history of `tip`, streamed from `git log`."""
    fields = ["%H", "%P"] + [
        f"%(trailers:key=Qrelease-Audit-{key},valueonly,separator=%x2C)" for key in _TRAILERS
    ]
    argv = ["git", "-C", str(repo.path), "log", "--first-parent", f"-n{limit}"]
    argv += ["--format=" + "%x09".join(fields), tip, "--"]
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                yield line.rstrip("\n")
        except BaseException:  # GeneratorExit included: the caller stopped reading early
            process.kill()
            raise
        if process.wait() != 0:
            raise SourceError(f"cannot read the audit anchors at {tip[:12]}: git log failed")


def _parse(line: str, controller: str) -> Anchor | str:
    """An anchor from one `git log` line, or what is wrong with that commit."""
    commit, parents, *values = line.split("\t")
    where = f"commit {commit[:12]}"
    if len(values) != len(_TRAILERS) or not any(values):
        return f"{where} is not an audit anchor"
    owner, seq_text, head_hash, time_text = (value.strip() for value in values)
    if len(parents.split()) > 1:
        return f"{where} is a merge; anchors have one parent"
    if owner != controller:
        return f"{where}: Qrelease-Audit-Controller is {owner!r}, not {controller!r}"
    if not seq_text.isdigit() or int(seq_text) < 1:
        return f"{where}: Qrelease-Audit-Seq {seq_text!r} is not a positive whole number"
    if not _SHA256_HEX.fullmatch(head_hash):
        return f"{where}: Qrelease-Audit-Hash {head_hash!r} is not a sha256 digest"
    try:
        moment = datetime.fromisoformat(time_text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return f"{where}: Qrelease-Audit-Time {time_text!r} is not an ISO 8601 time with a zone"
    return Anchor(int(seq_text), head_hash, moment, owner, commit)


def _signature_problem(repo: GitRepo, commit: str, keys: TrustedKeys) -> str | None:
    """None when the commit carries a good signature from a trusted key, else why not."""
    options = []
    if keys.allowed_signers is not None:
        options += ["-c", f"gpg.ssh.allowedSignersFile={keys.allowed_signers}"]
    env = {**os.environ}
    if keys.gpg_home is not None:
        env["GNUPGHOME"] = str(keys.gpg_home)
    argv = ["git", "-C", str(repo.path), *options, "log", "-1", "--format=%G?", commit, "--"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=GIT_TIMEOUT_SECONDS, check=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot check its signature: {type(exc).__name__}"
    status = done.stdout.strip()
    if status == _GOOD_SIGNATURE:
        return None
    return "it is not signed" if status == "N" else f"its signature status is {status!r}"


def _signing_key(repo: GitRepo) -> bool:
    """True when git is configured with a key to sign commits with."""
    try:
        return bool(str(repo.git.config("--get", "user.signingkey")).strip())
    except git.exc.GitCommandError:
        return False


def _commit_env(repo: GitRepo, moment: datetime) -> dict[str, str]:
    """Dates fixed at the anchor's time; the fallback identity where git has none."""
    env = {"GIT_AUTHOR_DATE": moment.isoformat(), "GIT_COMMITTER_DATE": moment.isoformat()}
    try:
        repo.git.config("user.email")
        repo.git.config("user.name")
    except git.exc.GitCommandError:
        env.update(FALLBACK_IDENTITY)
    return env
