"""One timeline for auditors: pin changes from Git joined with the controller's events.

Also the audit check: the event chain must verify, agree with the heads anchored in Git
(`source/anchors.py`), and every revision the controller says it applied must exist in the
repository's history. The same check runs over an export, so an auditor needs neither the
state dir nor its database.

Export format (JSON Lines, UTF-8): a header line
``{"format": "qrelease-audit-export", "version": 1, "controller": "<id or null>",
"exported_at": "<ISO 8601>"}``, then one line per event in seq order with every field of
`model.events.Event` (`seq`, `time`, `env`, `app`, `action`, `from_version`, `to_version`,
`revision`, `actor`, `reason`, `outcome`, `details`, `prev_hash`, `hash`). An event's hash
is the sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of every other field,
so anyone can recompute it (`Event.compute_hash`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from qrelease.anchoring import last_failure
from qrelease.model.events import Event
from qrelease.model.vocabulary import EventKind
from qrelease.source.anchors import AnchorLog, anchored_controllers, read_anchors
from qrelease.source.pinlog import PinCommit, pin_commits
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys
from qrelease.store.audit import MAX_BREAKS, AnchorCheck, ChainReport, ChainVerifier
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


EXPORT_FORMAT = "qrelease-audit-export"
EXPORT_VERSION = 1
MAX_EXPORT_LINE = 1 << 20
"""An export line longer than this (1 MiB) is refused rather than read into memory."""


class ExportError(Exception):
    """An export cannot be read at all; the message names the file and line."""


@dataclass(frozen=True)
class AuditFindings:
    """What an audit found: problems (any one fails it), notes, and how many events it read."""

    events: int
    problems: list[str]
    notes: list[str] = field(default_factory=list)
    controller: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def audit_problems(
    store: StateStore,
    repo: GitRepo,
    rev: str,
    *,
    controller: str | None = None,
    keys: TrustedKeys | None = None,
) -> AuditFindings:
    """Chain breaks, contradicted anchors of `controller`, applied revisions not in `rev`."""
    report = store.verify()
    anchors, problems, notes = _anchor_log(repo, controller, keys, required=False)
    check = AnchorCheck(anchors.anchors if anchors else ())
    if check.last_anchored_seq:
        try:
            for event in store.iter_events(before_seq=check.last_anchored_seq + 1):
                check.see(event.seq, event.hash)
        except ValueError as error:
            problems.append(f"cannot compare the stored chain with its anchors: {error}")
    failure = last_failure(store)
    if failure:
        notes.append(f"the last attempt to anchor the chain failed at {failure}")
    return _findings(report, check, repo, rev, controller, problems, notes)


def export_chain(
    store: StateStore, out: IO[str], *, controller: str | None, exported_at: datetime
) -> int:
    """Write the export header and then every event, one JSON line each; returns the count."""
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "controller": controller,
        "exported_at": exported_at.isoformat(),
    }
    out.write(json.dumps(header) + "\n")
    count = 0
    for event in store.iter_events():
        out.write(event.model_dump_json() + "\n")
        count += 1
    return count


def audit_export(
    path: Path,
    repo: GitRepo,
    rev: str,
    *,
    controller: str | None = None,
    keys: TrustedKeys | None = None,
) -> AuditFindings:
    """The checks of `audit_problems`, over an export; anchors are required here."""
    try:
        with path.open(encoding="utf-8", errors="strict") as file:
            header = _export_header(path, _bounded_line(file, path, 1))
            controller = controller or header.get("controller")
            anchors, problems, notes = _anchor_log(repo, controller, keys, required=True)
            check = AnchorCheck(anchors.anchors if anchors else ())
            verifier = ChainVerifier()
            for number, line in _numbered_lines(file, path):
                problem = _feed_line(verifier, check, line, f"{path}:{number}")
                if problem is not None and len(problems) < MAX_BREAKS:
                    problems.append(problem)
    except OSError as error:
        raise ExportError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text") from None
    return _findings(verifier.report(), check, repo, rev, controller, problems, notes)


def _findings(
    report: ChainReport,
    check: AnchorCheck,
    repo: GitRepo,
    rev: str,
    controller: str | None,
    problems: list[str],
    notes: list[str],
) -> AuditFindings:
    """Chain breaks first, then the anchors' findings, then revisions missing from Git."""
    anchored = check.findings(report.head_seq)
    found = [str(b.message) for b in report.breaks] + problems + list(anchored.problems)
    for revision, seq in sorted(report.revisions.items(), key=lambda item: item[1]):
        if not (repo.has_commit(revision) and repo.is_ancestor(revision, rev)):
            found.append(
                f"event {seq}: revision {revision[:12]} is not in the repository's history"
            )
    return AuditFindings(report.checked, found, [*anchored.notes, *notes], controller)


def _anchor_log(
    repo: GitRepo, controller: str | None, keys: TrustedKeys | None, *, required: bool
) -> tuple[AnchorLog | None, list[str], list[str]]:
    """The controller's anchors, and what to say about them: (log, problems, notes)."""
    if controller is None:
        others = anchored_controllers(repo)
        if not others and not required:
            return None, [], ["the chain is not anchored in Git yet"]
        held = f"anchors of {', '.join(others)}" if others else "no anchors"
        problem = (
            f"no controller id to match the chain with its anchors; the repository holds {held}"
        )
        return None, [f"{problem} (give --controller)"], []
    log = read_anchors(repo, controller, keys=keys)
    problems, notes = list(log.problems), []
    if log.newest is not None and log.signature_problem is not None:
        problems.append(f"the newest {log.newest.describe()}: {log.signature_problem}")
    if log.truncated:
        notes.append(f"only the newest {len(log.anchors)} anchors were read")
    if not log.anchors and not log.problems:
        missing = f"no anchors of controller {controller} in the repository"
        if required:
            problems.append(f"{missing}: nothing to check a cut-off tail or a rewrite against")
        else:
            notes.append(f"{missing} yet")
    return log, problems, notes


def _feed_line(verifier: ChainVerifier, check: AnchorCheck, line: str, where: str) -> str | None:
    """Check one exported event; returns what is wrong with the line itself, if anything."""
    try:
        event = Event.model_validate_json(line)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "event"
        seq, stored_hash = _seq_and_hash(line)
        if seq is not None:
            verifier.add_unreadable(seq, stored_hash, first["msg"])
        return f"{where}: {location}: {first['msg']}"
    verifier.add(event)
    check.see(event.seq, event.hash)
    return None


def _seq_and_hash(line: str) -> tuple[int | None, object]:
    """The seq and hash of a line that is not a valid event, when it has them."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None, None
    if isinstance(raw, dict) and type(raw.get("seq")) is int:
        return raw["seq"], raw.get("hash")
    return None, None


def _export_header(path: Path, line: str) -> dict[str, Any]:
    """The header line's fields, or an `ExportError` naming what is wrong with it."""
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}:1: format: not a qrelease audit export (no header line)")
    if header.get("version") != EXPORT_VERSION:
        raise ExportError(f"{path}:1: version: {header.get('version')!r} is not {EXPORT_VERSION}")
    if not isinstance(header.get("controller"), str | None):
        raise ExportError(f"{path}:1: controller: not a string")
    return header


def _numbered_lines(file: IO[str], path: Path) -> Iterator[tuple[int, str]]:
    """The event lines after the header with their line numbers; blank lines are skipped."""
    number = 2
    while line := _bounded_line(file, path, number):
        if line.strip():
            yield number, line
        number += 1


def _bounded_line(file: IO[str], path: Path, number: int) -> str:
    """One line, refused when longer than `MAX_EXPORT_LINE`."""
    line = file.readline(MAX_EXPORT_LINE + 1)
    if len(line) > MAX_EXPORT_LINE:
        raise ExportError(f"{path}:{number}: longer than {MAX_EXPORT_LINE} characters")
    return line
