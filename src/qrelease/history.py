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

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from qrelease.anchoring import last_failure
from qrelease.model.events import GENESIS_HASH, Event
from qrelease.model.vocabulary import EventKind
from qrelease.source.anchors import AnchorLog, anchored_controllers, read_anchors
from qrelease.source.pinlog import PinCommit, pin_commits
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys
from qrelease.store.audit import MAX_BREAKS, AnchorCheck, AnchorPoint, ChainReport, ChainVerifier
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
        row = {key: getattr(self, key) for key in _ENTRY_FIELDS}  # flat: no `asdict` deep copy
        row["time"] = self.time.isoformat()
        return row


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


def timeline(
    store: StateStore,
    repo: GitRepo,
    rev: str,
    *,
    env: str | None = None,
    app: str | None = None,
    since: datetime | None = None,
) -> list[Entry]:
    """Git pin changes and controller events matching the filters, oldest first."""
    return list(iter_timeline(store, repo, rev, env=env, app=app, since=since))


def iter_timeline(
    store: StateStore,
    repo: GitRepo,
    rev: str,
    *,
    env: str | None = None,
    app: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    before: int | None = None,
) -> Iterator[Entry]:
    """The timeline oldest first, streamed: events are read in batches as entries are written.

    A promotion or rollback made through qrelease is one entry: its commit joined with the
    audit event that records it (same commit, env and app), placed at the event, under the
    commit's author. `limit` keeps the newest entries only (read newest first from the
    store's index, so the newest 100 of millions cost 100 rows); `before` keeps what came
    before event `before` (the next page: `before` is the oldest seq a page showed).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    selected = [
        change
        for change in pin_commits(repo, rev, since)
        if env in (None, change.env) and app in (None, change.app)
    ]
    joins = _Joins(store, selected, since)
    bound = _bound(store, before)
    commits = sorted(
        (c for c in selected if bound is None or (c.time, 0) < bound), key=lambda c: c.time
    )
    newest_first = limit is not None
    if newest_first:
        commits.reverse()  # the exact reverse of the oldest-first order, ties included
    events = store.iter_events(
        env=env, app=app, since=since, before_seq=before, limit=limit, descending=newest_first
    )
    merged = _merged(joins, events, commits, newest_first)
    if limit is None:
        yield from merged
        return
    page = list(itertools.islice(merged, limit))  # bounded by `limit`
    yield from reversed(page)


class _Joins:
    """Which commits and events are one entry: pin events looked up per (env, app) as needed."""

    def __init__(self, store: StateStore, commits: list[PinCommit], since: datetime | None):
        self._store, self._since = store, since
        self._commits = {(c.commit, c.env, c.app): c for c in commits}
        self._events: dict[tuple[str, str], set[str]] = {}

    def commit_of(self, event: Event) -> PinCommit | None:
        """The commit an event joins, if it is a pin event of a commit in the timeline."""
        if event.action not in PIN_ACTIONS or not event.revision:
            return None
        return self._commits.get((event.revision, event.env, event.app))

    def recorded(self, change: PinCommit) -> bool:
        """True when an audit event records this commit (the joined entry stands there)."""
        key = (change.env, change.app)
        if key not in self._events:
            found = self._store.iter_events(
                env=change.env, app=change.app, actions=PIN_ACTIONS, since=self._since
            )
            self._events[key] = {event.revision for event in found if event.revision}
        return change.commit in self._events[key]


def _bound(store: StateStore, before: int | None) -> tuple[datetime, int] | None:
    """The (time, seq) every entry of a `before` page sorts below."""
    if before is None:
        return None
    found = store.events(after_seq=before - 1, limit=1)
    if found:
        return (found[0].time, before)
    newest = store.events(descending=True, limit=1)
    return (newest[0].time, before) if newest else None


def _merged(
    joins: _Joins, events: Iterator[Event], commits: list[PinCommit], newest_first: bool
) -> Iterator[Entry]:
    """Events and commits in (time, seq) order (newest first when asked), joined as they meet."""
    pending = iter(commits)
    change = next(pending, None)
    for event in events:
        while change is not None and _before(change, event, newest_first):
            if not joins.recorded(change):
                yield _from_commit(change, None)
            change = next(pending, None)
        joined = joins.commit_of(event)
        yield _from_commit(joined, event) if joined is not None else event_entry(event)
    while change is not None:
        if not joins.recorded(change):
            yield _from_commit(change, None)
        change = next(pending, None)


def _before(change: PinCommit, event: Event, newest_first: bool) -> bool:
    """True when an unjoined commit's entry comes before the event's in the output order."""
    if newest_first:
        return change.time > event.time
    return change.time <= event.time


def event_entry(event: Event) -> Entry:
    """A controller event as a timeline entry of its own (no pin commit joined)."""
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


VERIFIED_META_KEY = "audit_verified_anchor"
"""Store meta: `<seq> <hash>` of the newest anchor a verify found the whole chain to match."""


def audit_problems(
    store: StateStore,
    repo: GitRepo,
    rev: str,
    *,
    controller: str | None = None,
    keys: TrustedKeys | None = None,
    incremental: bool = False,
) -> AuditFindings:
    """Chain breaks, contradicted anchors of `controller`, applied revisions not in `rev`.

    One streaming pass over the chain checks the links, the hashes and the anchors. With
    `incremental`, the pass starts after the newest anchor an earlier verify found the
    whole chain to match, when that anchor is still in Git and the stored event at its
    seq still carries its hash: what came before it is not read again (the append-only
    store and that earlier verify vouch for it); otherwise the whole chain is read.
    """
    anchors, problems, notes = _anchor_log(repo, controller, keys, required=False)
    points = anchors.anchors if anchors else ()
    start = _verified_start(store, points) if incremental else None
    if incremental and start is None:
        notes.append("no verified anchor to start from: the whole chain was read")
    after_seq, after_hash = start or (0, GENESIS_HASH)
    check = AnchorCheck(point for point in points if point.seq > after_seq)
    try:
        report = store.verify(after_seq=after_seq, after_hash=after_hash, see=check.see)
    except ValueError as error:
        problems.append(f"cannot read the stored chain: {error}")
        report = ChainReport(0, after_seq, after_hash, ())
    if start is not None:
        notes.append(f"events up to seq {after_seq} were verified before (anchored in Git)")
    failure = last_failure(store)
    if failure:
        notes.append(f"the last attempt to anchor the chain failed at {failure}")
    findings = _findings(report, check, repo, rev, controller, problems, notes)
    if findings.ok:
        try:
            _remember_verified(store, points, report.head_seq)
        except Exception as error:  # a read-only auditor's store: the verdict stands
            findings.notes.append(f"could not record the verified anchor: {error}")
    return findings


def _verified_start(store: StateStore, anchors: Sequence[AnchorPoint]) -> tuple[int, str] | None:
    """(seq, hash) of the last verified anchor, if it still stands in Git and in the store."""
    recorded = (store.get_meta(VERIFIED_META_KEY) or "").split()
    if len(recorded) != 2 or not recorded[0].isdigit():
        return None
    seq, anchored_hash = int(recorded[0]), recorded[1]
    if not any(a.seq == seq and a.head_hash == anchored_hash for a in anchors):
        return None
    stored = store.events(after_seq=seq - 1, limit=1)
    if not stored or stored[0].seq != seq or stored[0].hash != anchored_hash:
        return None
    return seq, anchored_hash


def _remember_verified(store: StateStore, anchors: Sequence[AnchorPoint], head_seq: int) -> None:
    """Keep the newest anchor the chain was just found to match, for the next incremental run."""
    matched = [a for a in anchors if a.seq <= head_seq]
    if not matched:
        return
    newest = max(matched, key=lambda anchor: anchor.seq)
    value = f"{newest.seq} {newest.head_hash}"
    if store.get_meta(VERIFIED_META_KEY) != value:
        store.set_meta(VERIFIED_META_KEY, value)


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
