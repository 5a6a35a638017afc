"""The audit hash chain: how an event is linked to its predecessor, and how a chain is checked.

Auditors must not have to trust the database file. Every event's `hash` covers its content,
its `seq`, its `time` and its predecessor's hash (`Event.compute_hash`), so anyone holding
the events can tell whether one was edited (its own hash no longer matches), deleted (a gap
in `seq`, or a broken `prev_hash` link) or reordered (broken links). A chain alone cannot
reveal that its newest events were cut off, or that the whole chain was rewritten by someone
who recomputed every hash. For that the head is anchored outside the file, in Git
(`source/anchors.py`), and `AnchorCheck` compares a chain with those anchors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from qrelease.model.events import GENESIS_HASH, Event, EventDraft

MAX_BREAKS = 100
"""A report keeps at most this many breaks, so a wholly corrupted log cannot exhaust memory."""


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; naive times are refused because their instant is unknown.

    >>> from datetime import timedelta, timezone
    >>> as_utc(datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))).isoformat()
    '2024-05-01T12:00:00+00:00'
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give a timezone-aware time")
    return moment.astimezone(UTC)


def link(draft: EventDraft, *, seq: int, prev_hash: str, time: datetime) -> Event:
    """The event that places `draft` at `seq`, right after the event whose hash is `prev_hash`.

    `details` is normalised through JSON first, so the event reads back from storage with
    exactly the content its hash covers.

    >>> first = link(EventDraft(action="Deploy"), seq=1, prev_hash=GENESIS_HASH,
    ...              time=datetime(2024, 5, 1, tzinfo=UTC))
    >>> first.hash == first.recomputed_hash()
    True
    """
    content = draft.model_dump(mode="json", include=set(EventDraft.model_fields))
    body = json.loads(json.dumps(content, allow_nan=False))
    normalised = EventDraft.model_validate(body)
    moment = as_utc(time)
    event_hash = Event.compute_hash(normalised, seq, moment, prev_hash)
    return Event.model_validate(
        {**body, "seq": seq, "time": moment, "prev_hash": prev_hash, "hash": event_hash}
    )


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first thing wrong at one place in the chain."""

    seq: int
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What checking a chain found: how much was checked, where it broke, what it cites."""

    checked: int
    head_seq: int
    head_hash: str
    breaks: tuple[ChainBreak, ...]
    revisions: Mapping[str, int] = field(default_factory=dict)
    """Every Git revision the events cite, with the first seq citing it."""

    @property
    def ok(self) -> bool:
        """True when no link is broken."""
        return not self.breaks

    @property
    def first_break(self) -> ChainBreak | None:
        """The earliest broken link, or None for an intact chain."""
        return self.breaks[0] if self.breaks else None


_DRAFT_TEXT = ("env", "app", "action", "actor", "reason", "outcome")
_DRAFT_OPTIONAL = ("from_version", "to_version", "revision")
StoredRow = tuple[Any, ...]
"""One stored event in column order: seq, time, env, app, action, from_version, to_version,
revision, actor, reason, outcome, details, prev_hash, hash."""


def stored_hash_matches(row: StoredRow) -> bool:
    """True when a stored row's hash is the sha256 of its own content, read straight off
    the row (`Event.compute_hash` over the same canonical JSON, without building models).

    False means only that this quick reading does not vouch for it: the caller then
    judges the row through the `Event` model, which decides, so verdicts never differ.
    `time` is ISO 8601 text (SQLite) or a datetime (PostgreSQL); `details` a dict or JSON.
    """
    seq, time, env, app, action, from_v, to_v, revision, actor, reason, outcome = row[:11]
    details, prev_hash, stored = row[11:]
    texts = (env, app, action, actor, reason, outcome, prev_hash, stored)
    if type(seq) is not int or not all(type(value) is str for value in texts):
        return False
    if not all(value is None or type(value) is str for value in (from_v, to_v, revision)):
        return False
    try:
        moment = time if isinstance(time, datetime) else datetime.fromisoformat(time)
        content = json.loads(details) if isinstance(details, str) else details
    except (TypeError, ValueError):
        return False
    if type(content) is not dict or moment.tzinfo is None:
        return False
    body = {
        "env": env,
        "app": app,
        "action": action,
        "from_version": from_v,
        "to_version": to_v,
        "revision": revision,
        "actor": actor,
        "reason": reason,
        "outcome": outcome,
        "details": content,
        "seq": seq,
        "time": moment.isoformat(),
        "prev_hash": prev_hash,
    }
    try:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return False
    return bool(hashlib.sha256(canonical.encode()).hexdigest() == stored)


class ChainVerifier:
    """Checks events fed in seq order one at a time, so a chain of any length streams through.

    `after_seq` and `after_hash` start the check after an event already verified (an
    incremental verify from the last verified anchor); by default it starts at genesis.
    `see` is shown every event's seq and stored hash on the way (to compare with anchors
    in the same pass).
    """

    def __init__(
        self,
        after_seq: int = 0,
        after_hash: str = GENESIS_HASH,
        see: Callable[[int, str], None] | None = None,
    ) -> None:
        self._see = see
        self._tail_seq = after_seq
        self._tail_hash: str | None = after_hash
        self._checked = 0
        self._breaks: list[ChainBreak] = []
        self._revisions: dict[str, int] = {}

    def add(self, event: Event) -> None:
        """Check one event against its predecessor and its own content."""
        problem = self._link_problem(event.seq, event.prev_hash)
        if problem is None and event.recomputed_hash() != event.hash:
            problem = ChainBreak(event.seq, f"event {event.seq}: hash mismatch (content edited)")
        if event.revision is not None:
            self._revisions.setdefault(event.revision, event.seq)
        self._advance(event.seq, event.hash, problem)

    def add_row(self, row: StoredRow) -> bool:
        """Check one stored row whose hash `stored_hash_matches`; False (nothing recorded)
        when the quick reading cannot vouch for it and the row must go through `add`."""
        if not stored_hash_matches(row):
            return False
        seq, revision, prev_hash, stored = row[0], row[7], row[12], row[13]
        if revision is not None:
            self._revisions.setdefault(revision, seq)
        self._advance(seq, stored, self._link_problem(seq, prev_hash))
        return True

    def add_unreadable(self, seq: int, stored_hash: object, error: str) -> None:
        """Record a stored event that could not even be decoded."""
        problem = self._gap_problem(seq) or ChainBreak(seq, f"event {seq}: unreadable ({error})")
        self._advance(seq, stored_hash if isinstance(stored_hash, str) else None, problem)

    def report(self) -> ChainReport:
        """The findings so far."""
        return ChainReport(
            checked=self._checked,
            head_seq=self._tail_seq,
            head_hash=self._tail_hash or "",
            breaks=tuple(self._breaks),
            revisions=dict(self._revisions),
        )

    def _link_problem(self, seq: int, prev_hash: str) -> ChainBreak | None:
        gap = self._gap_problem(seq)
        if gap is not None or self._tail_hash is None or prev_hash == self._tail_hash:
            return gap
        if self._tail_seq == 0:
            return ChainBreak(seq, f"event {seq}: prev_hash is not the genesis hash")
        return ChainBreak(seq, f"event {seq}: prev_hash does not match event {self._tail_seq}")

    def _gap_problem(self, seq: int) -> ChainBreak | None:
        expected = self._tail_seq + 1
        if seq == expected:
            return None
        if seq < expected:
            return ChainBreak(seq, f"event {seq}: out of order after event {self._tail_seq}")
        if self._tail_seq == 0:
            return ChainBreak(expected, f"missing event(s) before {seq}")
        return ChainBreak(expected, f"missing event(s) between {self._tail_seq} and {seq}")

    def _advance(self, seq: int, stored_hash: str | None, problem: ChainBreak | None) -> None:
        if self._see is not None and stored_hash is not None:
            self._see(seq, stored_hash)
        if problem is not None and len(self._breaks) < MAX_BREAKS:
            self._breaks.append(problem)
        self._checked += 1
        self._tail_seq = seq
        self._tail_hash = stored_hash


def verify_chain(events: Iterable[Event]) -> ChainReport:
    """Check a whole chain given in seq order, starting from its first event."""
    verifier = ChainVerifier()
    for event in events:
        verifier.add(event)
    return verifier.report()


class AnchorPoint(Protocol):
    """A chain head recorded outside the database (`source.anchors.Anchor` is one)."""

    @property
    def seq(self) -> int:
        """The seq of the event that was the head."""
        ...

    @property
    def head_hash(self) -> str:
        """That event's hash."""
        ...

    def describe(self) -> str:
        """How messages name the anchor."""
        ...


@dataclass(frozen=True, slots=True)
class AnchorFindings:
    """What comparing a chain with its anchors found: problems (exit 1) and notes."""

    problems: tuple[str, ...]
    notes: tuple[str, ...]


class AnchorCheck:
    """Compares a chain fed in seq order with its anchors: cut-off tails and rewritten hashes."""

    def __init__(self, anchors: Iterable[AnchorPoint]) -> None:
        self._by_seq: dict[int, list[AnchorPoint]] = {}
        for anchor in anchors:
            self._by_seq.setdefault(anchor.seq, []).append(anchor)
        self._matched: list[int] = []
        self._differing: list[tuple[AnchorPoint, str]] = []

    @property
    def last_anchored_seq(self) -> int:
        """The highest anchored seq: events after it need not be fed (0 without anchors)."""
        return max(self._by_seq, default=0)

    def see(self, seq: int, stored_hash: str) -> None:
        """Compare one stored event with every anchor at its seq."""
        for anchor in self._by_seq.get(seq, ()):
            if anchor.head_hash == stored_hash:
                self._matched.append(seq)
            else:
                self._differing.append((anchor, stored_hash))

    def findings(self, head_seq: int) -> AnchorFindings:
        """The verdict for a chain whose newest event is `head_seq`."""
        if not self._by_seq:
            return AnchorFindings((), ())
        top = self._by_seq[self.last_anchored_seq][0]
        problems = [message for message in (self._rewritten(), _cut_off(top, head_seq)) if message]
        notes = []
        if head_seq > top.seq:
            newer = head_seq - top.seq
            verb = "is" if newer == 1 else "are"
            notes.append(
                f"the newest {top.describe()} is older than the chain: "
                f"{_events(newer)} after it {verb} not anchored yet"
            )
        elif not problems:
            notes.append(f"the chain matches the newest {top.describe()}")
        return AnchorFindings(tuple(problems), tuple(notes))

    def _rewritten(self) -> str | None:
        """The earliest anchor the chain contradicts, how many more do, the last one it matches."""
        if not self._differing:
            return None
        anchor, stored = min(self._differing, key=lambda pair: pair[0].seq)
        message = (
            f"event {anchor.seq}: hash differs from the {anchor.describe()}: "
            f"anchored {anchor.head_hash[:12]}, stored {stored[:12]}"
        )
        if len(self._differing) > 1:
            message += f"; {len(self._differing) - 1} later anchor(s) differ too"
        below = [seq for seq in self._matched if seq < anchor.seq]
        if below:
            return message + f"; the last anchor the chain matches is at seq {max(below)}"
        return message + "; the chain matches no anchor before it"


def _cut_off(top: AnchorPoint, head_seq: int) -> str | None:
    """A tail missing from the chain: the newest anchor records more events than it holds."""
    if head_seq >= top.seq:
        return None
    missing = _events(top.seq - head_seq)
    if head_seq == 0:
        return f"{missing} missing: the chain is empty, but the {top.describe()} records them"
    return f"{missing} missing after seq {head_seq}: the {top.describe()} records them"


def _events(count: int) -> str:
    """`1 event`, `3 events`."""
    return f"{count} event" + ("" if count == 1 else "s")
