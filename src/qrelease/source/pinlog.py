"""Who changed which pin, when and why: environment-file history read from Git.

Commits made by qrelease carry `Qrelease-*` trailers; any other commit that edits
`releases/*.yaml` by hand is still found, by comparing the pins before and after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qrelease.source.repo import GitRepo
from qrelease.source.yamldoc import YamlError, parse_mapping

_FIELD = "\x1f"
_RECORD = "\x1e"
_FORMAT = _RECORD + _FIELD.join(["%H", "%P", "%an <%ae>", "%cI", "%G?", "%B"])
SIGNATURE_STATUS = {
    "G": "good",
    "B": "bad",
    "U": "untrusted",
    "X": "expired",
    "Y": "expired key",
    "R": "revoked key",
    "E": "unverifiable",
    "N": "unsigned",
}


@dataclass(frozen=True)
class PinCommit:
    """One pin moved by one commit; `override` is what its `Qrelease-Override` trailer names."""

    commit: str
    time: datetime
    author: str
    signature: str
    env: str
    app: str
    from_version: str | None
    to_version: str | None
    action: str
    reason: str
    override: tuple[str, ...] = ()


def pin_commits(repo: GitRepo, rev: str, since: datetime | None = None) -> list[PinCommit]:
    """Every pin change on the history of `rev`, newest first."""
    args = ["--format=" + _FORMAT, "--name-only", "--no-renames"]
    if since is not None:
        args.append(f"--since={since.isoformat()}")
    output = repo.git.log(*args, rev, "--", "releases")
    changes: list[PinCommit] = []
    for record in output.split(_RECORD):
        if record.strip():
            changes += _changes(repo, record)
    return changes


def _changes(repo: GitRepo, record: str) -> list[PinCommit]:
    commit, parents, author, when, signature, rest = record.strip("\n").split(_FIELD, 5)
    body, _, names = rest.rstrip("\n").rpartition("\n\n")
    trailers = _trailers(body)
    parent = parents.split()[0] if parents else None
    out = []
    for path in [line for line in names.splitlines() if line.startswith("releases/")]:
        env = path.removeprefix("releases/").rsplit(".", 1)[0]
        before, after = _pins(repo, parent, path), _pins(repo, commit, path)
        for app in sorted(set(before) | set(after)):
            if before.get(app) != after.get(app):
                manual = trailers.get("App") != app or trailers.get("Env") != env
                action = "pin" if manual else trailers.get("Action", "pin")
                reason = "" if manual else trailers.get("Reason", "")
                out.append(
                    PinCommit(
                        commit,
                        datetime.fromisoformat(when),
                        author,
                        SIGNATURE_STATUS.get(signature, signature),
                        env,
                        app,
                        before.get(app),
                        after.get(app),
                        action,
                        reason or body.splitlines()[0] if body else "",
                        () if manual else _names(trailers.get("Override", "")),
                    )
                )
    return out


def last_pin_change(
    repo: GitRepo, rev: str, env: str, app: str, page: int = 20
) -> PinCommit | None:
    """The newest commit on the history of `rev` that moved `apps.<app>` in `releases/<env>.yaml`.

    Reads the file's history a page at a time: the pin that just moved is almost always in
    the first commit, so this costs one `git log` however long the history is.
    """
    path = f"releases/{env}.yaml"
    skip = 0
    while True:
        args = ["--format=" + _FORMAT, "--name-only", "--no-renames", f"-n{page}", f"--skip={skip}"]
        output = repo.git.log(*args, rev, "--", path)
        records = [record for record in output.split(_RECORD) if record.strip()]
        for record in records:
            found = [c for c in _changes(repo, record) if c.env == env and c.app == app]
            if found:
                return found[0]
        if len(records) < page:
            return None
        skip += page


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))


def _trailers(body: str) -> dict[str, str]:
    found = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Qrelease-"):
            found[key.removeprefix("Qrelease-")] = value.strip()
    return found


def _pins(repo: GitRepo, rev: str | None, path: str) -> dict[str, str]:
    if rev is None:
        return {}
    raw = repo.show_file(rev, path)
    if raw is None:
        return {}
    try:
        data = parse_mapping(raw).data  # the loader's reader: a hostile old file is no pins
    except YamlError:
        return {}
    apps = data.get("apps")
    return {str(k): str(v) for k, v in apps.items()} if isinstance(apps, dict) else {}


def rollback_hold(repo: GitRepo, rev: str, env: str, app: str) -> PinCommit | None:
    """The rollback commit holding this pin, when the pin's latest change was a rollback."""
    for change in pin_commits(repo, rev):
        if change.env == env and change.app == app:
            return change if change.action == "rollback" else None
    return None
