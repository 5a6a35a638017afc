"""Results kept by the content that decides them, so the same work is never done twice.

Compiling a program, or running a release's gates, gives the same answer for the same
inputs: the program text, its entry, the profile, the gate settings, the noise model and
the qdk that does the work. A key is the sha256 of those inputs written as canonical JSON,
so two releases (or two environments, or two passes) that share them share one result.

Entries live in memory and, when a directory is given, as one JSON file per key under it
(`<state>/cache/<kind>/<key>.json`, written to a temporary file and renamed, so a reader
never sees half an entry). A file that cannot be read back is a miss. The directory keeps
at most `max_entries` files; the oldest go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

MAX_ENTRIES = 20_000


def content_key(*parts: object) -> str:
    """The sha256 of the parts as canonical JSON.

    >>> content_key("a", {"b": 1}) == content_key("a", {"b": 1})
    True
    >>> content_key("a", 1) == content_key("a", 2)
    False
    """
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def qdk_version() -> str:
    """The installed qdk's version (part of every key: another qdk may answer otherwise)."""
    try:
        return metadata.version("qdk")
    except metadata.PackageNotFoundError:
        return "unknown"


class ContentCache:
    """JSON values by content key, in memory and optionally on disk."""

    def __init__(self, directory: Path | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._pruned = False

    def get(self, key: str) -> dict[str, Any] | None:
        """The value kept under `key`, or None."""
        with self._lock:
            found = self._memory.get(key)
        if found is not None or self.directory is None:
            return found
        try:
            with (self.directory / f"{key}.json").open(encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(loaded, dict):
            return None
        with self._lock:
            self._memory[key] = loaded
        return loaded

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Keep `value` under `key` (replacing what was there)."""
        with self._lock:
            self._memory[key] = value
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
