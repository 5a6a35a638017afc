"""One timeline for auditors: pin changes from Git joined with the controller's events.

Also the audit check: the event chain must verify, and every revision the controller says
it applied must exist in the repository's history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from qrelease.model.events import Event
from qrelease.model.vocabulary import EventKind
from qrelease.source.pinlog import PinCommit, pin_commits
from qrelease.source.repo import GitRepo
from qrelease.store.base import StateStore

PIN_ACTIONS = frozenset({EventKind.PROMOTE, EventKind.ROLLBACK})
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
    """One row of the timeline; `source` is `git`, `controller` or `git+controller` (joined)."""

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
    store: StateStore,
    repo: GitRepo,
    rev: str,
    *,
    env: str | None = None,
    app: str | None = None,
    since: datetime | None = None,
) -> list[Entry]:
    """Git pin changes and controller events matching the filters, oldest first.

    A promotion or rollback made through qrelease is one entry: its commit joined with the
    audit event that records it (same commit, env and app), under the commit's author.
    """
    events = list(store.iter_events(env=env, app=app, since=since))
    recorded = {
        (event.revision, event.env, event.app): event
        for event in events
        if event.action in PIN_ACTIONS and event.revision
    }
    joined: set[int] = set()
    commits = []
    for change in pin_commits(repo, rev, since):
        if env not in (None, change.env) or app not in (None, change.app):
            continue
        event = recorded.get((change.commit, change.env, change.app))
        if event is not None:
            joined.add(event.seq)
        commits.append(_from_commit(change, event))
    entries = [_from_event(e) for e in events if e.seq not in joined] + commits
    return sorted(entries, key=lambda entry: (entry.time, entry.seq or 0))


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
        event_reason(event),
        event.outcome,
        event.hash,
        "controller",
    )


def event_reason(event: Event) -> str:
    """Why an event happened: its reason, else the message or reason its details carry."""
    if event.reason:
        return event.reason
    for key in ("message", "reason"):
        value = event.details.get(key)
        if value:
            return str(value)
    return ""


def _from_commit(change: PinCommit, event: Event | None) -> Entry:
    """A pin commit, joined with the audit event that recorded it when there is one."""
    return Entry(
        event.seq if event else None,
        event.time if event else change.time,
        change.env,
        change.app,
        change.action,
        change.from_version,
        change.to_version,
        change.commit,
        change.author,
        change.reason or (event.reason if event else ""),
        event.outcome if event else "Committed",
        event.hash if event else None,
        "git+controller" if event else "git",
        change.signature,
    )


def audit_problems(store: StateStore, repo: GitRepo, rev: str) -> list[str]:
    """Every break in the event chain, and every applied revision not in the history of `rev`."""
    report = store.verify()
    problems = [str(b.message) for b in report.breaks]
    for revision, seq in sorted(report.revisions.items(), key=lambda item: item[1]):
        if not (repo.has_commit(revision) and repo.is_ancestor(revision, rev)):
            problems.append(
                f"event {seq}: revision {revision[:12]} is not in the repository's history"
            )
    return problems
