"""Results kept by the content that decides them, so the same work is never done twice.

Compiling a program, or running a release's gates, gives the same answer for the same
inputs: the program text, its entry, the profile, the gate settings, the noise model and
the qdk that does the work. A key is the sha256 of those inputs written as canonical JSON,
so two releases (or two environments, or two passes) that share them share one result.

Entries live in memory (the `MEMORY_ENTRIES` most recently used) and, when a directory is
given, as one JSON file per key under it (`<state>/cache/<kind>/<key>.json`, written to a
temporary file and renamed, so a reader never sees half an entry). A file that cannot be
read back is a miss. The directory keeps at most `max_entries` files; the oldest go first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from qrelease.model.events import Event, EventDraft
from qrelease.model.manifest import Quantum
from qrelease.quantum.base import GateReport, ProgramSource
from qrelease.quantum.sandbox import report_from

MAX_ENTRIES = 20_000
MEMORY_ENTRIES = 512


def content_key(*parts: object) -> str:
    """The sha256 of the parts as canonical JSON.

    >>> content_key("a", {"b": 1}) == content_key("a", {"b": 1})
    True
    >>> content_key("a", 1) == content_key("a", 2)
    False
    """
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def qdk_version() -> str:
    """The installed qdk's version (part of every key: another qdk may answer otherwise).

    Read once per process: package metadata costs a millisecond or two, and a check of
    30,000 releases asks for every one (an upgraded qdk is loaded by a restart anyway).
    """
    try:
        return metadata.version("qdk")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def qiskit_version() -> str:
    """The Qiskit the gate workers convert circuits with (from package metadata, no import)."""
    try:
        return metadata.version("qiskit")
    except metadata.PackageNotFoundError:
        return "not installed"


class ContentCache:
    """JSON values by content key, in memory and optionally on disk."""

    def __init__(self, directory: Path | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pruned = False

    def get(self, key: str) -> dict[str, Any] | None:
        """The value kept under `key`, or None."""
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
        if found is not None or self.directory is None:
            return found
        try:
            with (self.directory / f"{key}.json").open(encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(loaded, dict):
            return None
        self._remember(key, loaded)
        return loaded

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Keep `value` under `key` (replacing what was there)."""
        self._remember(key, value)
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._prune_once()
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(value, out, separators=(",", ":"))
            Path(temporary).replace(self.directory / f"{key}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def _remember(self, key: str, value: dict[str, Any]) -> None:
        """Hold a value in memory, forgetting the least recently used beyond the bound
        (without a directory, memory is all there is, so nothing is forgotten)."""
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while self.directory is not None and len(self._memory) > MEMORY_ENTRIES:
                self._memory.popitem(last=False)

    def _prune_once(self) -> None:
        """Drop the oldest files beyond `max_entries` (checked once per process)."""
        if self._pruned or self.directory is None:
            return
        self._pruned = True
        files = sorted(self.directory.glob("*.json"), key=_mtime)
        for old in files[: max(0, len(files) - self.max_entries + 1)]:
            with contextlib.suppress(OSError):
                old.unlink()


def _mtime(path: Path) -> float:
    """A file's modification time (0 when it went away meanwhile)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


GATES_VERSION = 1
"""Part of every gate cache key: bump it when what a gate result means changes."""


@dataclass(frozen=True)
class CachedGates:
    """A release's gate report kept by content, and where each gate was first recorded.

    `first` maps a gate name to the audit event that first recorded its result
    (`{"seq", "env", "app", "version", "revision"}`), once the engine has recorded it.
    """

    report: GateReport
    first: dict[str, dict[str, Any]]


class GateCache:
    """Gate reports by content key, stored as `{"report": ..., "first": {...}}`.

    The key covers everything that decides the result (see `gate_key`); the estimate's
    growth against the running release is judged again on every use, as it is the only part
    that depends on the environment.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.store = ContentCache(directory)
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedGates | None:
        """The cached report (None on a miss or an unreadable entry)."""
        body = self.store.get(key)
        if body is None:
            return None
        try:
            return CachedGates(report_from(body["report"]), dict(body.get("first") or {}))
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, report: GateReport) -> None:
        """Keep a freshly computed report (its first events are not known yet)."""
        self.store.put(key, {"report": to_jsonable_python(report), "first": {}})

    def annotate(self, drafts: Sequence[EventDraft]) -> list[EventDraft]:
        """Gate events about to be recorded, marked `reused_from` where a result was recorded
        before (its message says where)."""
        out = []
        for draft in drafts:
            pointer = self._first_of(draft)
            if pointer is None:
                out.append(draft)
                continue
            where = (
                f"{pointer['env']}/{pointer['app']} {pointer['version']}, event {pointer['seq']}"
            )
            message = f"{draft.details.get('message', '')} (reused from {where})"
            details = draft.details | {"reused_from": pointer, "message": message}
            reason = f"{draft.reason} (reused from {where})"
            out.append(draft.model_copy(update={"details": details, "reason": reason}))
        return out

    def _first_of(self, draft: EventDraft) -> dict[str, Any] | None:
        """The first-event pointer of a gate event's result, if one was recorded."""
        key, gate = draft.details.get("cache_key"), draft.details.get("gate")
        if draft.action != "gate" or not isinstance(key, str) or not isinstance(gate, str):
            return None
        body = self.store.get(key)
        first = (body or {}).get("first") or {}
        pointer = first.get(gate)
        return dict(pointer) if isinstance(pointer, dict) else None

    def record_first(self, events: Sequence[Event]) -> None:
        """Remember the audit events that first recorded each cached gate result."""
        for event in events:
            key = event.details.get("cache_key")
            gate = event.details.get("gate")
            if event.action != "gate" or not isinstance(key, str) or "reused_from" in event.details:
                continue
            with self._lock:
                body = self.store.get(key)
                if body is None or not isinstance(gate, str) or gate in body.get("first", {}):
                    continue
                pointer = {
                    "seq": event.seq,
                    "env": event.env,
                    "app": event.app,
                    "version": event.to_version,
                    "revision": event.revision,
                }
                self.store.put(key, {**body, "first": {**body.get("first", {}), gate: pointer}})


def gate_key(program: ProgramSource, quantum: Quantum, identity: Mapping[str, Any]) -> str:
    """The content key of a release's gates: program text, kind (Q#, OpenQASM, Qiskit), entry
    or circuit, pin, gate settings (seed and noise included) and the backend's identity (qdk
    version, resolved noise figures, the Qiskit version for Qiskit programs)."""
    return content_key(
        "gates",
        GATES_VERSION,
        qdk_version(),
        hashlib.sha256(program.text.encode()).hexdigest(),
        str(quantum.kind),
        quantum.start,
        quantum.target.model_dump(mode="json"),
        quantum.gates.model_dump(mode="json"),
        dict(identity),
    )
