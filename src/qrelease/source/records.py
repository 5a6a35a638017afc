"""Records as Git commits on a dedicated ref: approvals and gate reviews are both kept so.

A record must be as hard to forge as a pin change and outlive any controller: so it is a
commit on a ref of its own (never on the branch), authored by who made it, with
`Qrelease-*` trailers that bind it to what it is about, and optionally a tree of files
(a review keeps its gate report and QIR there). With signed-commit verification on, only a
good signature by a trusted key counts and the signer is the key's principal; without it,
the author's e-mail stands. A ref only moves forward: an append that races another is
retried on top of it, and with a remote (`origin`) it is pushed before it counts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import git

from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys
from qrelease.source.workspace import git_reason

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
PUSH_ATTEMPTS = 5
_FIELD, _RECORD = "\x1f", "\x1e"
_FORMAT = _RECORD + _FIELD.join(["%H", "%T", "%ae", "%cI", "%G?", "%GS", "%B"])


@dataclass(frozen=True)
class RawRecord:
    """One commit of a records ref: its trailers and who made it."""

    commit: str
    tree: str
    trailers: Mapping[str, str]
    """`Qrelease-App: x` as {"App": "x"} (the last of a repeated key wins)."""
    author: str | None
    """Who counts as its author: the trusted signer, the e-mail when not verifying, or
    None when verification is on and the signature is not good."""
    at: datetime
    problem: str = ""


def read_records(repo: GitRepo, ref: str, keys: TrustedKeys | None = None) -> Iterator[RawRecord]:
    """Every commit on `ref`, oldest first (nothing when the ref does not exist yet)."""
    options: list[str] = []
    env = dict(os.environ)
    if keys is not None and keys.allowed_signers is not None:
        options += ["-c", f"gpg.ssh.allowedSignersFile={keys.allowed_signers}"]
    if keys is not None and keys.gpg_home is not None:
        env["GNUPGHOME"] = str(keys.gpg_home)
    argv = ["git", *options, "log", "--reverse", "--format=" + _FORMAT, ref, "--"]
    try:
        output = str(git.Git(str(repo.path)).execute(argv, env=env))
    except git.exc.GitCommandError:
        return  # no such ref yet
    verifying = keys is not None and keys.enabled
    for chunk in output.split(_RECORD):
        if chunk.strip():
            yield _raw(chunk, verifying)


def tip(repo: GitRepo, ref: str) -> str | None:
    """The commit `ref` points at, or None (for noticing new records cheaply)."""
    try:
        return repo.read_ref(ref)
    except SourceError:
        return None


def append_record(
    repo: GitRepo,
    ref: str,
    message: str,
    *,
    files: Mapping[str, bytes] | None = None,
    actor: str | None = None,
    sign: bool = False,
    what: str = "record",
) -> str:
    """Commit `message` (with `files` as its tree) onto `ref` and publish it; its commit id."""
    remote = _has_origin(repo)
    tree = _tree(repo, files) if files else EMPTY_TREE
    for _attempt in range(PUSH_ATTEMPTS):
        parent = _refresh(repo, ref, remote, what)
        commit = _commit(repo, tree, message, parent, actor, sign, what)
        if _publish(repo, ref, commit, parent, remote, what):
            return commit
    raise SourceError(f"could not publish the {what} after {PUSH_ATTEMPTS} attempts (busy ref)")


def read_record_file(repo: GitRepo, record: RawRecord, path: str) -> bytes | None:
    """A file of a record's tree, or None when it has no such file."""
    try:
        return repo.read_blob(str(repo.git.rev_parse(f"{record.tree}:{path}")))
    except (git.exc.GitCommandError, SourceError):
        return None


def _raw(chunk: str, verifying: bool) -> RawRecord:
    commit, tree, email, when, status, signer, body = chunk.strip("\n").split(_FIELD, 6)
    trailers = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Qrelease-"):
            trailers[key.removeprefix("Qrelease-")] = value.strip()
    author: str | None = email
    problem = ""
    if verifying:
        author = signer if status == "G" and signer else None
        problem = "" if author else f"not signed by a trusted key (status {status})"
    return RawRecord(commit, tree, trailers, author, datetime.fromisoformat(when), problem)


def _tree(repo: GitRepo, files: Mapping[str, bytes]) -> str:
    """A tree of flat files, written into the repo's object store."""
    entries = []
    for name, content in sorted(files.items()):
        if "/" in name or not name:
            raise ValueError(f"record files are flat: {name!r}")
        blob = _git_stdin(repo, ["hash-object", "-w", "--stdin"], content)
        entries.append(f"100644 blob {blob}\t{name}")
    return _git_stdin(repo, ["mktree"], ("\n".join(entries) + "\n").encode())


def _git_stdin(repo: GitRepo, args: list[str], data: bytes) -> str:
    """A git command fed `data` on stdin; its output, stripped."""
    done = subprocess.run(
        ["git", "-C", str(repo.path), *args], input=data, capture_output=True, check=False
    )
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip()
        raise SourceError(f"git {args[0]} failed: {reason}")
    return done.stdout.decode().strip()


def _has_origin(repo: GitRepo) -> bool:
    try:
        repo.git.remote("get-url", "origin")
    except git.exc.GitCommandError:
        return False
    return True


def _refresh(repo: GitRepo, ref: str, remote: bool, what: str) -> str | None:
    """Bring the local ref up to date with the remote's; returns its commit (None: no ref)."""
    if remote:
        try:
            repo.git.fetch("--quiet", "origin", f"+{ref}:{ref}")
        except git.exc.GitCommandError as exc:
            if "couldn't find remote ref" not in str(exc.stderr):
                raise SourceError(f"cannot fetch {ref}: {git_reason(exc)}") from None
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", ref))
    except git.exc.GitCommandError:
        return None


def _commit(
    repo: GitRepo,
    tree: str,
    message: str,
    parent: str | None,
    actor: str | None,
    sign: bool,
    what: str,
) -> str:
    args = [tree, "-m", message]
    if parent is not None:
        args += ["-p", parent]
    if sign:
        args.insert(0, "-S")
    identity = _configured_identity(repo, what) if actor is None else _actor_env(actor)
    try:
        with repo.git.custom_environment(**identity):
            return str(repo.git.commit_tree(*args))
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot record the {what}: {git_reason(exc)}") from None


def _publish(
    repo: GitRepo, ref: str, commit: str, parent: str | None, remote: bool, what: str
) -> bool:
    """Move the ref to `commit` if it still is at `parent`; False when someone came first."""
    try:
        if remote:
            repo.git.push("--quiet", "origin", f"{commit}:{ref}")
        repo.git.update_ref(ref, commit, parent or "0" * 40)
    except git.exc.GitCommandError as exc:
        text = str(exc.stderr)
        if "non-fast-forward" in text or "fetch first" in text or "cannot lock ref" in text:
            return False
        raise SourceError(f"cannot publish the {what}: {git_reason(exc)}") from None
    return True


def _configured_identity(repo: GitRepo, what: str) -> dict[str, str]:
    """Nothing to add when git knows who records (config or GIT_AUTHOR_*); else refuse.

    A record counts for a person, so it never falls back to a made-up identity.
    """
    if os.environ.get("GIT_AUTHOR_EMAIL") and os.environ.get("GIT_AUTHOR_NAME"):
        return {}
    try:
        repo.git.config("user.email")
        repo.git.config("user.name")
    except git.exc.GitCommandError:
        raise SourceError(
            f"who makes the {what}? set git's user.name and user.email, "
            "or give --actor 'Name <email>'"
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
