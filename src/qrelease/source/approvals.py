"""Approvals as signed Git data: one commit per approve or reject, on `refs/qrelease/approvals`.

An approval must be as hard to forge as a pin change, and outlive any controller: so it
is a commit (on a dedicated ref, never on the branch) whose author is the approver and
whose trailers bind it to the exact app, environment, version and release digest. With
signed-commit verification on, only a good signature by a trusted key counts, and the
approver is the key's principal; without it, the author's e-mail is the approver.
The ref only moves forward: a push that races another approval is retried on top of it.

Stored format (commit message trailers): `Qrelease-Approval: approve|reject`,
`Qrelease-App`, `Qrelease-Env`, `Qrelease-Version`, `Qrelease-Digest`, `Qrelease-Reason`.
The tree is the empty tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import git

from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys
from qrelease.source.workspace import git_reason

APPROVALS_REF = "refs/qrelease/approvals"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
PUSH_ATTEMPTS = 5
_FIELD, _RECORD = "\x1f", "\x1e"
_FORMAT = _RECORD + _FIELD.join(["%H", "%ae", "%cI", "%G?", "%GS", "%B"])


@dataclass(frozen=True)
class ApprovalRecord:
    """One approve or reject as read from Git; `approver` is None when it cannot count."""

    commit: str
    env: str
    app: str
    version: str
    digest: str
    approves: bool
    reason: str
    approver: str | None
    at: datetime
    problem: str = ""


def read_approvals(repo: GitRepo, keys: TrustedKeys | None = None) -> list[ApprovalRecord]:
    """Every approval on the ref, oldest first (an empty list when there is none yet)."""
    options: list[str] = []
    env = dict(os.environ)
    if keys is not None and keys.allowed_signers is not None:
        options += ["-c", f"gpg.ssh.allowedSignersFile={keys.allowed_signers}"]
    if keys is not None and keys.gpg_home is not None:
        env["GNUPGHOME"] = str(keys.gpg_home)
    argv = ["git", *options, "log", "--reverse", "--format=" + _FORMAT, APPROVALS_REF, "--"]
    try:
        output = str(git.Git(str(repo.path)).execute(argv, env=env))
    except git.exc.GitCommandError:
        return []  # no approvals ref yet
    verifying = keys is not None and keys.enabled
    return [
        record
        for chunk in output.split(_RECORD)
        if chunk.strip() and (record := _record(chunk, verifying)) is not None
    ]


def approvals_tip(repo: GitRepo) -> str | None:
    """The commit the approvals ref points at, or None (for noticing new approvals cheaply)."""
    try:
        return repo.read_ref(APPROVALS_REF)
    except SourceError:
        return None


def record_approval(
    repo: GitRepo,
    *,
    env: str,
    app: str,
    version: str,
    digest: str,
    approves: bool,
    reason: str,
    actor: str | None = None,
    sign: bool = False,
) -> str:
    """Commit one approve or reject onto the ref and publish it (push when there is a remote)."""
    word = "approve" if approves else "reject"
    message = (
        f"{word} {app} {version} in {env}\n\n{reason.strip()}\n\n"
        f"Qrelease-Approval: {word}\nQrelease-App: {app}\nQrelease-Env: {env}\n"
        f"Qrelease-Version: {version}\nQrelease-Digest: {digest}\n"
        f"Qrelease-Reason: {' '.join(reason.split())}\n"
    )
    remote = _has_origin(repo)
    for _attempt in range(PUSH_ATTEMPTS):
        parent = _refresh(repo, remote)
        commit = _commit(repo, message, parent, actor, sign)
        if _publish(repo, commit, parent, remote):
            return commit
    raise SourceError(f"could not publish the {word} after {PUSH_ATTEMPTS} attempts (busy ref)")


def _record(chunk: str, verifying: bool) -> ApprovalRecord | None:
    commit, email, when, status, signer, body = chunk.strip("\n").split(_FIELD, 5)
    trailers = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Qrelease-"):
            trailers[key.removeprefix("Qrelease-")] = value.strip()
    word = trailers.get("Approval")
    fields = [trailers.get(name) for name in ("Env", "App", "Version", "Digest")]
    if word not in ("approve", "reject") or not all(fields):
        return None  # not an approval (or damaged): ignored, never counted
    approver: str | None = email
    problem = ""
    if verifying:
        approver = signer if status == "G" and signer else None
        problem = "" if approver else f"not signed by a trusted key (status {status})"
    env, app, version, digest = (str(value) for value in fields)
    reason = trailers.get("Reason", "")
    return ApprovalRecord(
        commit, env, app, version, digest, word == "approve", reason, approver,
        datetime.fromisoformat(when), problem,
    )  # fmt: skip


def _has_origin(repo: GitRepo) -> bool:
    try:
        repo.git.remote("get-url", "origin")
    except git.exc.GitCommandError:
        return False
    return True


def _refresh(repo: GitRepo, remote: bool) -> str | None:
    """Bring the local ref up to date with the remote's; returns its commit (None: no ref)."""
    if remote:
        try:
            repo.git.fetch("--quiet", "origin", f"+{APPROVALS_REF}:{APPROVALS_REF}")
        except git.exc.GitCommandError as exc:
            if "couldn't find remote ref" not in str(exc.stderr):
                raise SourceError(f"cannot fetch approvals: {git_reason(exc)}") from None
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", APPROVALS_REF))
    except git.exc.GitCommandError:
        return None


def _commit(repo: GitRepo, message: str, parent: str | None, actor: str | None, sign: bool) -> str:
    args = [EMPTY_TREE, "-m", message]
    if parent is not None:
        args += ["-p", parent]
    if sign:
        args.insert(0, "-S")
    identity = _configured_identity(repo) if actor is None else _actor_env(actor)
    try:
        with repo.git.custom_environment(**identity):
            return str(repo.git.commit_tree(*args))
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot record the approval: {git_reason(exc)}") from None


def _publish(repo: GitRepo, commit: str, parent: str | None, remote: bool) -> bool:
    """Move the ref to `commit` if it still is at `parent`; False when someone came first."""
    try:
        if remote:
            repo.git.push("--quiet", "origin", f"{commit}:{APPROVALS_REF}")
        repo.git.update_ref(APPROVALS_REF, commit, parent or "0" * 40)
    except git.exc.GitCommandError as exc:
        text = str(exc.stderr)
        if "non-fast-forward" in text or "fetch first" in text or "cannot lock ref" in text:
            return False
        raise SourceError(f"cannot publish the approval: {git_reason(exc)}") from None
    return True


def _configured_identity(repo: GitRepo) -> dict[str, str]:
    """Nothing to add when git knows who approves (config or GIT_AUTHOR_*); else refuse.

    An approval counts for a person, so it never falls back to a made-up identity.
    """
    if os.environ.get("GIT_AUTHOR_EMAIL") and os.environ.get("GIT_AUTHOR_NAME"):
        return {}
    try:
        repo.git.config("user.email")
        repo.git.config("user.name")
    except git.exc.GitCommandError:
        raise SourceError(
            "who approves? set git's user.name and user.email, or give --actor 'Name <email>'"
        ) from None
    return {}


def _actor_env(actor: str) -> dict[str, str]:
    name, _, rest = actor.partition("<")
    email = rest.rstrip(">").strip()
    name = name.strip() or email
    if not email:
        raise SourceError(f"actor {actor!r} is not 'Name <email>'")
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
