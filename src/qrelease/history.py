"""One timeline for auditors: pin changes from Git joined with the controller's events.

Also the audit check: the event chain must verify, and every revision the controller says
it applied must exist in the repository's history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from qrelease.model.events import Event
from qrelease.source.pinlog import PinCommit, pin_commits
from qrelease.source.repo import GitRepo
from qrelease.store.sqlite import Store

COLUMNS = (
    "seq",
    "time",
    "env",
    "app",
    "action",
    "from_version",
    "to_version",
    "revision",
    "actor",
    "reason",
    "outcome",
    "hash",
    "source",
    "signature",
)


@dataclass(frozen=True)
class Entry:
    """One row of the timeline; `source` is `git` or `controller`."""

    seq: int | None
    time: datetime
    env: str
    app: str
    action: str
    from_version: str | None
    to_version: str | None
    revision: str | None
    actor: str
    reason: str
    outcome: str
    hash: str | None
    source: str
    signature: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as plain JSON values."""
        row = asdict(self)
        row["time"] = self.time.isoformat()
        return row


def timeline(
    store: Store,
    repo: GitRepo,
    rev: str,
    *,
    env: str | None = None,
    app: str | None = None,
    since: datetime | None = None,
) -> list[Entry]:
    """Git pin changes and controller events matching the filters, oldest first."""
    events = [_from_event(e) for e in store.iter_events(env=env, app=app, since=since)]
    commits = [
        _from_commit(c)
        for c in pin_commits(repo, rev, since)
        if env in (None, c.env) and app in (None, c.app)
    ]
    return sorted(events + commits, key=lambda entry: (entry.time, entry.seq or 0))


def _from_event(event: Event) -> Entry:
    return Entry(
        event.seq,
        event.time,
        event.env,
        event.app,
        event.action,
        event.from_version,
        event.to_version,
        event.revision,
        event.actor,
        event.reason,
        event.outcome,
        event.hash,
        "controller",
    )


def _from_commit(change: PinCommit) -> Entry:
    return Entry(
        None,
        change.time,
        change.env,
        change.app,
        change.action,
        change.from_version,
        change.to_version,
        change.commit,
        change.author,
        change.reason,
        "Committed",
        None,
        "git",
        change.signature,
    )


def audit_problems(store: Store, repo: GitRepo, rev: str) -> list[str]:
    """Every break in the event chain, and every applied revision not in the history of `rev`."""
    report = store.verify()
    problems = [str(b.message) for b in report.breaks]
    for revision, seq in sorted(report.revisions.items(), key=lambda item: item[1]):
        if not (repo.has_commit(revision) and repo.is_ancestor(revision, rev)):
            problems.append(
                f"event {seq}: revision {revision[:12]} is not in the repository's history"
            )
    return problems
