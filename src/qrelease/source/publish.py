"""Publishing a pin change as a Git commit, and pushing it without ever losing anyone's work.

Promotion and rollback never touch an environment: they commit one edited pin line and
push it; the controller applies it. A push that loses a race is retried only when the
other change left this pin alone (the commit is rebased onto it); if the other change
moved the same pin, the caller gets a `PinConflict` naming that commit. Never a force push.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
import yaml

from qrelease.redaction import redact_url
from qrelease.source.pins import PinEditError, set_pin
from qrelease.source.repo import SourceError
from qrelease.source.workspace import git_reason, is_local_repo
from qrelease.source.writer import identity_env

PUSH_ATTEMPTS = 5
TRAILER_KEYS = ("Action", "App", "Env", "From", "To", "Reason")


class PinConflict(SourceError):
    """Someone else changed the same pin meanwhile; nothing was pushed."""

    def __init__(self, message: str, other_commit: str) -> None:
        super().__init__(message)
        self.other_commit = other_commit


@dataclass(frozen=True)
class PinChange:
    """One pin edit and why it is made."""

    action: str
    env: str
    app: str
    from_version: str | None
    to_version: str
    reason: str
    actor: str | None = None
    override: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """The environment file it edits."""
        return f"releases/{self.env}.yaml"

    def message(self) -> str:
        """The commit message: a summary line, the reason, and machine-readable trailers."""
        arrow = f"{self.from_version or 'none'} -> {self.to_version}"
        trailers = dict(
            zip(
                TRAILER_KEYS,
                (
                    self.action,
                    self.app,
                    self.env,
                    self.from_version or "none",
                    self.to_version,
                    _one_line(self.reason),
                ),
                strict=True,
            )
        )
        if self.override:
            trailers["Override"] = ",".join(self.override)
        body = "\n".join(f"Qrelease-{key}: {value}" for key, value in trailers.items())
        return (
            f"{self.action} {self.app} {arrow} in {self.env}\n\n{self.reason.strip()}\n\n{body}\n"
        )


@dataclass(frozen=True)
class Published:
    """The commit made and whether it reached the remote."""

    commit: str
    pushed: bool
    attempts: int
    author: str = ""


BeforePush = Callable[[int], None]


def publish(
    location: str,
    state_dir: Path,
    change: PinChange,
    branch: str = "main",
    before_push: BeforePush | None = None,
) -> Published:
    """Commit the pin change on `branch` of the repo at `location` and push it."""
    repo, has_remote = _worktree(location, state_dir, branch)
    try:
        base = str(repo.git.rev_parse("HEAD"))
        commit = _commit(repo, change)
        author = str(repo.git.log("-1", "--format=%an <%ae>", commit))
        if not has_remote:
            return Published(commit, pushed=False, attempts=0, author=author)
        pushed = _push(repo, change, branch, base, before_push)
        return Published(pushed.commit, True, pushed.attempts, author)
    finally:
        repo.close()


def _worktree(location: str, state_dir: Path, branch: str) -> tuple[git.Repo, bool]:
    """A work tree to commit in: the user's own clone, or a scratch clone of a remote/bare repo."""
    if is_local_repo(location) and (Path(location) / ".git").exists():
        repo = git.Repo(location)
        upstream = _upstream(repo)
        return repo, upstream is not None
    work = state_dir / "work" / hashlib.sha256(location.encode()).hexdigest()[:16]
    if not (work / ".git").exists():
        work.parent.mkdir(parents=True, exist_ok=True)
        try:
            git.Repo.clone_from(location, work, branch=branch).close()
        except git.exc.GitCommandError as exc:
            raise SourceError(f"cannot clone {redact_url(location)}: {git_reason(exc)}") from None
    repo = git.Repo(work)
    _sync(repo, branch)
    return repo, True


def _upstream(repo: git.Repo) -> str | None:
    try:
        return str(repo.git.rev_parse("--abbrev-ref", "--symbolic-full-name", "@{u}"))
    except git.exc.GitCommandError:
        return None


def _sync(repo: git.Repo, branch: str) -> None:
    """Reset the scratch clone to the remote's branch."""
    try:
        repo.git.fetch("--quiet", "origin", branch)
        repo.git.checkout("--quiet", "-B", branch, f"origin/{branch}")
        repo.git.reset("--quiet", "--hard", f"origin/{branch}")
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot update from the remote: {git_reason(exc)}") from None


def _commit(repo: git.Repo, change: PinChange) -> str:
    root = Path(repo.working_dir)
    if repo.git.status("--porcelain", "--", change.path):
        raise SourceError(f"{change.path} has uncommitted changes; commit or stash them first")
    target = root / change.path
    if not target.is_file():
        raise SourceError(f"{change.path} does not exist")
    try:
        target.write_text(
            set_pin(target.read_text(encoding="utf-8"), change.app, change.to_version),
            encoding="utf-8",
        )
    except PinEditError as exc:
        raise SourceError(f"{change.path}: {exc}") from None
    env = identity_env(repo)
    if change.actor:
        env.update(_author_env(change.actor))
    with repo.git.custom_environment(**env):
        repo.git.commit("--quiet", "--only", "--message", change.message(), "--", change.path)
    return str(repo.git.rev_parse("HEAD"))


def _author_env(actor: str) -> dict[str, str]:
    name, _, rest = actor.partition("<")
    email = rest.rstrip(">").strip() or f"{name.strip().replace(' ', '.').lower()}@qrelease.local"
    return {"GIT_AUTHOR_NAME": name.strip() or actor, "GIT_AUTHOR_EMAIL": email}


def _push(
    repo: git.Repo, change: PinChange, branch: str, base: str, before_push: BeforePush | None
) -> Published:
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        if before_push is not None:
            before_push(attempt)
        try:
            repo.git.push("--quiet", "origin", f"HEAD:refs/heads/{branch}")
            return Published(str(repo.git.rev_parse("HEAD")), pushed=True, attempts=attempt)
        except git.exc.GitCommandError as exc:
            if not _rejected(exc):
                raise SourceError(f"push failed: {git_reason(exc)}") from None
        base = _rebase_if_untouched(repo, change, branch, base)
    raise SourceError(f"push kept losing races after {PUSH_ATTEMPTS} attempts; try again")


def _rebase_if_untouched(repo: git.Repo, change: PinChange, branch: str, base: str) -> str:
    """After a lost race: replay our commit on the remote's, unless the same pin moved there."""
    repo.git.fetch("--quiet", "origin", branch)
    remote_head = str(repo.git.rev_parse(f"origin/{branch}"))
    if _pin_at(repo, base, change) != _pin_at(repo, remote_head, change):
        other = _last_commit_touching(repo, base, remote_head, change.path)
        raise PinConflict(
            f"{change.path}: apps.{change.app} was changed by {other[:12]} meanwhile "
            f"({_summary(repo, other)}); nothing was pushed",
            other,
        )
    try:
        repo.git.rebase("--quiet", f"origin/{branch}")
    except git.exc.GitCommandError:
        repo.git.rebase("--abort")
        other = _last_commit_touching(repo, base, remote_head, change.path)
        raise PinConflict(
            f"{change.path} was edited nearby by {other[:12]}; nothing was pushed", other
        ) from None
    return remote_head


def _pin_at(repo: git.Repo, rev: str, change: PinChange) -> str | None:
    try:
        text = repo.git.show(f"{rev}:{change.path}")
    except git.exc.GitCommandError:
        return None
    data = yaml.load(text, Loader=yaml.CSafeLoader)
    apps = data.get("apps") if isinstance(data, dict) else None
    return str(apps.get(change.app)) if isinstance(apps, dict) and change.app in apps else None


def _last_commit_touching(repo: git.Repo, base: str, head: str, path: str) -> str:
    found = repo.git.log("--format=%H", "-1", f"{base}..{head}", "--", path)
    return str(found or head)


def _summary(repo: git.Repo, commit: str) -> str:
    return str(repo.git.log("-1", "--format=%an: %s", commit))


def _rejected(exc: git.exc.GitCommandError) -> bool:
    text = str(exc.stderr or "")
    return any(word in text for word in ("rejected", "non-fast-forward", "fetch first"))


def _one_line(text: str) -> str:
    return " ".join(text.split())
