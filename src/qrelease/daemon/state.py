"""What the controller knows right now, shared between the reconcile thread and the HTTP server.

The reconcile thread is the only writer; HTTP handlers read. Each change replaces one
frozen `View` under a lock, so a reader always sees a consistent picture (never a
revision from one pass with the rows of another) and last-known-good state stays served
while the source is failing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from qrelease.model.environment import Environment
from qrelease.model.vocabulary import PassOutcome
from qrelease.planning.status import StatusRow

PASS_ERRORS_NOT_READY = 3
"""After this many passes in a row end in an error, /readyz answers 503."""


@dataclass(frozen=True)
class PassRecord:
    """How the latest reconcile pass went."""

    revision: str | None
    outcome: str
    started_at: datetime
    seconds: float
    trigger: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """One consistent picture of the controller, as /status, /readyz and the TUI show it."""

    url: str
    branch: str
    interval: timedelta
    resync: timedelta
    fetched_revision: str | None = None
    last_fetch_at: datetime | None = None
    fetched_once: bool = False
    source_error: str | None = None
    failures: int = 0
    next_poll_at: datetime | None = None
    store_open: bool = False
    store_error: str | None = None
    passes: int = 0
    last_pass: PassRecord | None = None
    rows: Mapping[tuple[str, str], StatusRow] = field(default_factory=dict)
    rows_revision: str | None = None
    pass_errors: int = 0
    pass_error: str | None = None
    stopping: bool = False
    replica: str | None = None  # this replica's id when several share the store
    fleet: Mapping[str, Any] | None = None  # their heartbeats and leases
    environments: Mapping[str, Environment] = field(default_factory=dict)
    """The environments of the last pass's revision (the web view's column order and policy)."""
    jobs: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """Each watched (env, app)'s live release and its quantum-job statistics."""

    def not_ready_reasons(self) -> list[str]:
        """Why the controller is not ready; empty when it is."""
        reasons = []
        if not self.fetched_once:
            reasons.append("the source has not been fetched yet")
        if self.source_error:
            reasons.append("the last fetch failed")
        if not self.store_open:
            reasons.append("the state store is not open")
        if self.pass_errors >= PASS_ERRORS_NOT_READY:
            reasons.append(f"the last {self.pass_errors} passes failed with an error")
        if self.stopping:
            reasons.append("the controller is stopping")
        return reasons

    def readiness(self) -> dict[str, Any]:
        """The /readyz body: ready or not, why, and the source error if there is one."""
        reasons = self.not_ready_reasons()
        return {
            "ready": not reasons,
            "reasons": reasons,
            "source_error": self.source_error,
            "store_error": self.store_error,
            "pass_error": self.pass_error,
            "revision": self.fetched_revision,
            "last_fetch_at": _iso(self.last_fetch_at),
        }

    def as_json(self) -> dict[str, Any]:
        """The /status body: the source, the last pass and every status row."""
        head, tail = self._head_and_tail()
        return {**head, "rows": [self._row_json(key) for key in sorted(self.rows)], **tail}

    def json_chunks(self, rows_per_chunk: int = 500) -> Iterator[bytes]:
        """`as_json` as JSON text, a few hundred rows at a time: 30,000 rows are never one
        list of dicts and one string at once (the view is replaced whole, never changed)."""
        head, tail = self._head_and_tail()
        yield (json.dumps(head)[:-1] + ', "rows": [').encode()
        keys = sorted(self.rows)
        for start in range(0, len(keys), rows_per_chunk):
            rows = (json.dumps(self._row_json(k)) for k in keys[start : start + rows_per_chunk])
            yield ((", " if start else "") + ", ".join(rows)).encode()
        yield ("], " + json.dumps(tail)[1:]).encode()

    def _head_and_tail(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The /status fields before its rows, and after them."""
        head = {
            "ready": not self.not_ready_reasons(),
            "source": {
                "url": self.url,
                "branch": self.branch,
                "revision": self.fetched_revision,
                "last_fetch_at": _iso(self.last_fetch_at),
                "error": self.source_error,
                "consecutive_failures": self.failures,
                "next_poll_at": _iso(self.next_poll_at),
                "interval_seconds": self.interval.total_seconds(),
                "resync_seconds": self.resync.total_seconds(),
            },
            "passes": self.passes,
            "last_pass": _pass_json(self.last_pass),
            "revision": self.rows_revision,
            "pass_error": self.pass_error,
            "consecutive_pass_errors": self.pass_errors,
        }
        tail = {
            "stopping": self.stopping,
            "replica": self.replica,
            "fleet": dict(self.fleet) if self.fleet is not None else None,
        }
        return head, tail

    def _row_json(self, key: tuple[str, str]) -> dict[str, Any]:
        """A status row, with its live release's quantum jobs where they are watched."""
        row = self.rows[key].as_json()
        jobs = self.jobs.get(key)
        if jobs is not None and jobs.get("version") == row.get("deployed"):
            row["quantum_jobs"] = dict(jobs)
        return row


class ControllerState:
    """The current `View`, replaced whole under a lock."""

    def __init__(self, view: View) -> None:
        self._lock = threading.Lock()
        self._view = view

    @property
    def view(self) -> View:
        """The current picture (immutable: safe to use after the lock is released)."""
        with self._lock:
            return self._view

    def update(self, **changes: Any) -> View:
        """Replace some fields of the view; returns the new view."""
        with self._lock:
            self._view = replace(self._view, **changes)
            return self._view

    def pass_finished(self, record: PassRecord) -> None:
        """Record a finished pass and count it; an errored pass adds to the error streak."""
        with self._lock:
            errored = record.outcome == PassOutcome.ERROR
            self._view = replace(
                self._view,
                last_pass=record,
                passes=self._view.passes + 1,
                pass_errors=self._view.pass_errors + 1 if errored else 0,
                pass_error=str(record.summary.get("error")) if errored else None,
            )

    def put_rows(
        self,
        rows: Iterable[StatusRow],
        revision: str | None = None,
        gone: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Replace some rows (a pass's plan, a rollout step), drop `gone` keys, keep the rest."""
        with self._lock:
            merged = dict(self._view.rows)
            merged.update((row.key, row) for row in rows)
            for key in gone:
                merged.pop(key, None)
            self._view = replace(
                self._view, rows=merged, rows_revision=revision or self._view.rows_revision
            )

    def set_rows(self, rows: Iterable[StatusRow], revision: str | None) -> None:
        """Replace every row (what the store held at start, or after a pass)."""
        with self._lock:
            self._view = replace(
                self._view, rows={row.key: row for row in rows}, rows_revision=revision
            )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _pass_json(record: PassRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "revision": record.revision,
        "outcome": record.outcome,
        "started_at": record.started_at.isoformat(),
        "seconds": round(record.seconds, 6),
        "trigger": record.trigger,
        "summary": record.summary,
    }
