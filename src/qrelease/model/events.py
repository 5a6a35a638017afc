"""Audit events: what the controller records, in a hash chain auditors can verify.

An audit event is stored append-only; `hash` is the sha256 of the canonical JSON of every
other field, `prev_hash` included, so editing, deleting or reordering any event breaks the
chain from that point on (see `store/audit.py`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import Field

from qrelease.model.manifest import Frozen

GENESIS_HASH = "0" * 64


class EventDraft(Frozen):
    """What a caller knows about an event before the store gives it a place in the chain."""

    env: str = ""
    app: str = ""
    action: str
    from_version: str | None = None
    to_version: str | None = None
    revision: str | None = None
    actor: str = "qrelease-controller"
    reason: str = ""
    outcome: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Event(EventDraft):
    """One link of the audit chain."""

    seq: int
    time: datetime
    prev_hash: str
    hash: str

    @staticmethod
    def compute_hash(draft: EventDraft, seq: int, time: datetime, prev_hash: str) -> str:
        """sha256 over the canonical JSON of the event's content and its predecessor's hash."""
        body = draft.model_dump(mode="json")
        body.update(seq=seq, time=time.isoformat(), prev_hash=prev_hash)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def recomputed_hash(self) -> str:
        """The hash this event should carry given its own content."""
        draft = EventDraft.model_validate(
            self.model_dump(exclude={"seq", "time", "prev_hash", "hash"})
        )
        return Event.compute_hash(draft, self.seq, self.time, self.prev_hash)
