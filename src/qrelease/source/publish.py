"""Publishing a pin change as a Git commit, and pushing it without ever losing anyone's work.

Promotion and rollback never touch an environment: they commit one edited pin line and
push it; the controller applies it (suspend and resume edit `policy.suspended` the same
way). The edit is a compare-and-swap: it is committed only while the field at the
commit's base still holds the value the caller checked (a pin change's `from_version`),
else the caller gets a `PinConflict` naming the commit that moved it. A push that loses a
race is retried only when the other change left this field alone (the commit is rebased
onto it); if the other change moved the same field, the same `PinConflict`. Never a force
push. A remote's credentials stay out of the scratch clone under `<state>/work/` (see
`private`), which one publisher at a time uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import git

from qrelease.redaction import redact_url
from qrelease.source.pins import PinEditError, clear_suspended, set_pin, set_suspended
from qrelease.source.private import Remote, private_dir, private_file, split_credentials
from qrelease.source.repo import SourceError
from qrelease.source.workspace import (
    forget_copy_with_credentials,
    git_reason,
    is_local_repo,
    locked,
    scratch_name,
)
from qrelease.source.writer import identity_env
from qrelease.source.yamldoc import YamlError, parse_mapping

PUSH_ATTEMPTS = 5
SETTER_SCAN = 50
"""How many commits of an environment file are searched for the one that set a pin."""
TRAILER_KEYS = ("Action", "App", "Env", "From", "To", "Reason")


class PinConflict(SourceError):
    """Someone else changed the same pin meanwhile; nothing was pushed."""

    def __init__(self, message: str, other_commit: str) -> None:
        super().__init__(message)
        self.other_commit = other_commit


class FileChange(Protocol):
    """One field of one environment file, edited by one commit that says why.

    `expected` is the field's value the caller checked (None: absent), `wanted` what the
    commit sets; `read` finds the field in a parsed file, `edit` changes it in the text.
    """

    @property
    def env(self) -> str: ...
    @property
    def app(self) -> str: ...
    @property
    def actor(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def expected(self) -> str | None: ...

    def read(self, data: Mapping[str, Any]) -> str | None: ...
    def edit(self, text: str) -> str: ...
    def done(self, current: str | None) -> str | None: ...
    def shown(self, value: str | None) -> str: ...
    def message(self) -> str: ...


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

    @property
    def field(self) -> str:
        """The key it edits."""
        return f"apps.{self.app}"

    @property
    def expected(self) -> str | None:
        """The pin the checks were run against."""
        return self.from_version

    def read(self, data: Mapping[str, Any]) -> str | None:
        """The pin in a parsed environment file."""
        apps = data.get("apps")
        return str(apps[self.app]) if isinstance(apps, dict) and self.app in apps else None

    def edit(self, text: str) -> str:
        """The file with the new pin."""
        return set_pin(text, self.app, self.to_version)

    def done(self, current: str | None) -> str | None:
        """How it reads when someone already made this change, else None."""
        return f"already pinned to {current}" if current == self.to_version else None

    def shown(self, value: str | None) -> str:
        """A pin for a message."""
        return value or "unpinned"

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
class SuspendChange:
    """Suspend an app in an environment (the controller leaves it alone), or resume it."""

    env: str
    app: str
    suspend: bool
    reason: str
    actor: str | None = None
    expected: str | None = None
    """The suspension's reason when the caller looked (None: it was not suspended)."""

    @property
    def action(self) -> str:
        """`suspend` or `resume`."""
        return "suspend" if self.suspend else "resume"

    @property
    def path(self) -> str:
        """The environment file it edits."""
        return f"releases/{self.env}.yaml"

    @property
    def field(self) -> str:
        """The key it edits."""
        return f"policy.suspended.{self.app}"

    def read(self, data: Mapping[str, Any]) -> str | None:
        """The suspension's reason in a parsed environment file, None when not suspended."""
        policy = data.get("policy")
        suspended = policy.get("suspended") if isinstance(policy, dict) else None
        if isinstance(suspended, dict) and self.app in suspended:
            return str(suspended[self.app])
        return None

    def edit(self, text: str) -> str:
        """The file with the app suspended or resumed."""
        if self.suspend:
            return set_suspended(text, self.app, self.reason)
        return clear_suspended(text, self.app)

    def done(self, current: str | None) -> str | None:
        """How it reads when the app is already in the state asked for, else None."""
        if self.suspend and current is not None:
            return f"already suspended ({current})"
        return "not suspended" if not self.suspend and current is None else None

    def shown(self, value: str | None) -> str:
        """A suspension for a message."""
        return f"suspended ({value})" if value is not None else "not suspended"

    def message(self) -> str:
        """The commit message: a summary line, the reason, and machine-readable trailers."""
        trailers = {
            "Action": self.action,
            "App": self.app,
            "Env": self.env,
            "Reason": _one_line(self.reason),
        }
        body = "\n".join(f"Qrelease-{key}: {value}" for key, value in trailers.items())
        return f"{self.action} {self.app} in {self.env}\n\n{self.reason.strip()}\n\n{body}\n"


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
    change: FileChange,
    branch: str = "main",
    before_push: BeforePush | None = None,
) -> Published:
    """Commit the pin change on `branch` of the repo at `location` and push it."""
    if is_local_repo(location) and (Path(location) / ".git").exists():
        own = git.Repo(location)  # the user's own clone: commit there, push if it tracks a remote
        return _publish_in(own, None, change, branch, before_push, _upstream(own) is not None)
    remote = split_credentials(location)
    private_dir(state_dir)
    work = private_dir(state_dir / "work") / scratch_name(remote.url)
    forget_copy_with_credentials(location, work)
    with locked(work.with_name(f"{work.name}.lock")):  # one publisher at a time per scratch clone
        scratch = _scratch_clone(remote, work, branch)
        return _publish_in(scratch, remote, change, branch, before_push, True)


def _publish_in(
    repo: git.Repo,
    remote: Remote | None,
    change: FileChange,
    branch: str,
    before_push: BeforePush | None,
    has_remote: bool,
) -> Published:
    """Check that the pin still holds the checked version, commit the edit, push it if we can."""
    try:
        with repo.git.custom_environment(**(remote.git_env() if remote else {})):
            base = str(repo.git.rev_parse("HEAD"))
            _check_pin_holds(repo, base, change)
            commit = _commit(repo, change)
            author = str(repo.git.log("-1", "--format=%an <%ae>", commit))
            if not has_remote:
                return Published(commit, pushed=False, attempts=0, author=author)
            pushed = _push(repo, remote, change, branch, base, before_push)
            return Published(pushed.commit, True, pushed.attempts, author)
    finally:
        repo.close()


def _scratch_clone(remote: Remote, work: Path, branch: str) -> git.Repo:
    """qrelease's own clone of a remote (or bare) repo, reset to the remote's branch."""
    if not (work / ".git").exists():
        try:
            git.Repo.clone_from(remote.url, work, branch=branch, env=remote.git_env()).close()
        except git.exc.GitCommandError as exc:
            reason = git_reason(exc, remote)
            raise SourceError(f"cannot clone {redact_url(remote.url)}: {reason}") from None
        private_file(work / ".git" / "config")
    repo = git.Repo(work)
    with repo.git.custom_environment(**remote.git_env()):
        _sync(repo, branch, remote)
    return repo


def _upstream(repo: git.Repo) -> str | None:
    try:
        return str(repo.git.rev_parse("--abbrev-ref", "--symbolic-full-name", "@{u}"))
    except git.exc.GitCommandError:
        return None


def _sync(repo: git.Repo, branch: str, remote: Remote) -> None:
    """Reset the scratch clone to the remote's branch."""
    try:
        repo.git.fetch("--quiet", "origin", branch)
        repo.git.checkout("--quiet", "-B", branch, f"origin/{branch}")
        repo.git.reset("--quiet", "--hard", f"origin/{branch}")
    except git.exc.GitCommandError as exc:
        reason = git_reason(exc, remote)
        raise SourceError(f"cannot update from the remote: {reason}") from None


def _check_pin_holds(repo: git.Repo, base: str, change: FileChange) -> None:
    """Compare-and-swap: refuse unless the pin at `base` is the version the checks were run on."""
    pinned = _value_at(repo, base, change)
    if pinned != change.expected:
        raise _moved(repo, base, change, pinned, "nothing was committed")


def _commit(repo: git.Repo, change: FileChange) -> str:
    root = Path(repo.working_dir)
    if repo.git.status("--porcelain", "--", change.path):
        raise SourceError(f"{change.path} has uncommitted changes; commit or stash them first")
    target = root / change.path
    if not target.is_file():
        raise SourceError(f"{change.path} does not exist")
    try:
        target.write_text(change.edit(target.read_text(encoding="utf-8")), encoding="utf-8")
    except PinEditError as exc:
        raise SourceError(f"{change.path}: {exc}") from None
    env = identity_env(repo)
    if change.actor:
        env.update(_author_env(change.actor))
    try:
        with repo.git.custom_environment(**env):
            repo.git.commit("--quiet", "--only", "--message", change.message(), "--", change.path)
    except git.exc.GitCommandError as exc:
        raise SourceError(f"cannot commit {change.path}: {git_reason(exc)}") from None
    return str(repo.git.rev_parse("HEAD"))


def _author_env(actor: str) -> dict[str, str]:
    name, _, rest = actor.partition("<")
    email = rest.rstrip(">").strip() or f"{name.strip().replace(' ', '.').lower()}@qrelease.local"
    return {"GIT_AUTHOR_NAME": name.strip() or actor, "GIT_AUTHOR_EMAIL": email}


def _push(
    repo: git.Repo,
    remote: Remote | None,
    change: FileChange,
    branch: str,
    base: str,
    before_push: BeforePush | None,
) -> Published:
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        if before_push is not None:
            before_push(attempt)
        try:
            repo.git.push("--quiet", "origin", f"HEAD:refs/heads/{branch}")
            return Published(str(repo.git.rev_parse("HEAD")), pushed=True, attempts=attempt)
        except git.exc.GitCommandError as exc:
            if not _rejected(exc):
                raise SourceError(f"push failed: {git_reason(exc, remote)}") from None
        base = _rebase_if_untouched(repo, change, branch, base)
    raise SourceError(f"push kept losing races after {PUSH_ATTEMPTS} attempts; try again")


def _rebase_if_untouched(repo: git.Repo, change: FileChange, branch: str, base: str) -> str:
    """After a lost race: replay our commit on the remote's, unless the same pin moved there."""
    repo.git.fetch("--quiet", "origin", branch)
    remote_head = str(repo.git.rev_parse(f"origin/{branch}"))
    pinned = _value_at(repo, remote_head, change)
    if _value_at(repo, base, change) != pinned:
        raise _moved(repo, remote_head, change, pinned, "nothing was pushed")
    try:
        repo.git.rebase("--quiet", f"origin/{branch}")
    except git.exc.GitCommandError:
        repo.git.rebase("--abort")
        other = _last_commit_touching(repo, base, remote_head, change.path)
        raise PinConflict(
            f"{change.path} was edited nearby by {other[:12]}; nothing was pushed", other
        ) from None
    return remote_head


def _moved(
    repo: git.Repo, head: str, change: FileChange, pinned: str | None, outcome: str
) -> PinConflict:
    """The conflict to report when the field at `head` is no longer what the caller saw."""
    other = _commit_that_set(repo, head, change, pinned)
    by = f"{other[:12]} ({_summary(repo, other)})"
    done = change.done(pinned)
    if done is not None:
        return PinConflict(f"{change.app} is {done} in {change.env} by {by}; {outcome}", other)
    return PinConflict(
        f"{change.path}: {change.field} is now {change.shown(pinned)}, set by {by}, not "
        f"{change.shown(change.expected)} as checked; {outcome}. Run the command again "
        "to check against the new value",
        other,
    )


def _commit_that_set(repo: git.Repo, head: str, change: FileChange, pinned: str | None) -> str:
    """The newest commit on `head`'s history whose parent had another pin (bounded scan)."""
    touching = str(
        repo.git.log("--format=%H", f"--max-count={SETTER_SCAN}", head, "--", change.path)
    ).split()
    for commit in touching:
        if _value_at(repo, f"{commit}^", change) != pinned:
            return commit
    return touching[-1] if touching else head


def _value_at(repo: git.Repo, rev: str, change: FileChange) -> str | None:
    """The field at a revision, read with the loader's hostile-input-safe parser."""
    try:
        raw = repo.git.show(f"{rev}:{change.path}", stdout_as_string=False)
    except git.exc.GitCommandError:
        return None
    try:
        return change.read(parse_mapping(raw).data)
    except YamlError:
        return None


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
