"""What the venv deployer observed, with a cheap change signal: a pass re-reads only what moved.

Observing an app reads its `releases/` folder, its `current` link, the release's lock file
and the sha256 of its compiled program: thousands of apps make that seconds. The signal is
four system calls: `lstat` and `readlink` of `current` (a switch renames a new link over
it, so its inode changes), and `stat` of the release it points at and of `releases/` (their
mtime and inode change when an entry is added, removed or renamed inside). While the
signal is what it was, the earlier answer stands. A file edited in place inside a release
does not move the signal: the periodic resync forgets everything and reads every app.

A signal whose timestamps are within `RACY_SECONDS` of the moment it was taken is not
trusted (the filesystem's clock may not have ticked between a change and the read), as
git does for its index.

Stored format (`<state>/cache/observed.json`, 0600, written by rename): a JSON object
`{"format": 1, "apps": [[env, app, signal, current, on_disk, drift], ...]}` where `signal`
is a flat list of integers, strings and nulls. It is only a hint: a file that does not
read is ignored, and the first observe of an entry checks its signal as always.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qrelease.deployers.base import Observed

FORMAT = 1
CACHE_FILE = Path("cache") / "observed.json"
RACY_SECONDS = 2.0
SAVE_EVERY_SECONDS = 60.0
"""A long-running controller writes the file at most this often (a new process, at once)."""
MAX_FILE_BYTES = 64 * 1024 * 1024
Signal = tuple[int | str | None, ...]
Key = tuple[str, str]


class ObservedCache:
    """Observations by (env, app) with their change signals; one per deployer."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / CACHE_FILE
        self.reads = 0
        """How many apps were read from the disk rather than answered from the cache."""
        self._clock = clock
        self._entries: dict[Key, tuple[Signal | None, Observed]] | None = None
        self._changed = False
        self._saved_at: float | None = None
        self._lock = threading.Lock()

    def get(self, key: Key, app_dir: str, read: Callable[[Path], Observed]) -> Observed:
        """The observation of one app: remembered while its signal holds, else `read`."""
        signal = app_signal(app_dir, self._clock())
        entries = self._loaded()
        known = entries.get(key)
        if signal is not None and known is not None and known[0] == signal:
            return known[1]
        observed = read(Path(app_dir))  # after the signal: a change meanwhile moves it again
        with self._lock:
            entries[key] = (signal, observed)
            self._changed = True
            self.reads += 1
        return observed

    def forget(self) -> None:
        """Read every app again next time (the file is kept until the next save)."""
        with self._lock:
            self._entries = {}
            self._changed = True

    def save(self) -> None:
        """Write the observations for the next process; at most every `SAVE_EVERY_SECONDS`."""
        now = time.monotonic()
        with self._lock:
            due = self._saved_at is None or now - self._saved_at >= SAVE_EVERY_SECONDS
            if not self._changed or not due or self._entries is None:
                return
            apps = [
                [env, app, list(signal), seen.current, list(seen.on_disk), seen.drift]
                for (env, app), (signal, seen) in self._entries.items()
                if signal is not None
            ]
            self._changed, self._saved_at = False, now
        with contextlib.suppress(OSError):
            _write_private(self.path, json.dumps({"format": FORMAT, "apps": apps}).encode())

    def _loaded(self) -> dict[Key, tuple[Signal | None, Observed]]:
        if self._entries is None:
            with self._lock:
                if self._entries is None:
                    self._entries = _read(self.path)
        return self._entries


def app_signal(app_dir: str, now: float) -> Signal | None:
    """The change signal of one app folder, or None when it is too recent to trust."""
    link = _stat(os.lstat, f"{app_dir}/current")
    target = None
    if link is not None and stat.S_ISLNK(link.st_mode):
        with contextlib.suppress(OSError):
            target = os.readlink(f"{app_dir}/current")  # noqa: PTH115 str paths: 10,000s a pass
    release = _stat(os.stat, f"{app_dir}/current") if target is not None else None
    releases = _stat(os.stat, f"{app_dir}/releases")
    stamps = [info for info in (link, release, releases) if info is not None]
    if any(now - info.st_mtime < RACY_SECONDS for info in stamps):
        return None
    return (*_stamp(link), target, *_stamp(release), *_stamp(releases))


def _stat(call: Callable[[str], os.stat_result], path: str) -> os.stat_result | None:
    try:
        return call(path)
    except OSError:
        return None


def _stamp(info: os.stat_result | None) -> tuple[int | None, int | None, int | None]:
    if info is None:
        return (None, None, None)
    return (info.st_ino, info.st_mtime_ns, info.st_mode)


def _read(path: Path) -> dict[Key, tuple[Signal | None, Observed]]:
    """The saved observations; anything that does not read is no observations."""
    try:
        with path.open("rb") as handle:
            document: Any = json.loads(handle.read(MAX_FILE_BYTES + 1))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            return {}
        out: dict[Key, tuple[Signal | None, Observed]] = {}
        for env, app, signal, current, on_disk, drift in document["apps"]:
            checked = (str(env), str(app))
            out[checked] = (tuple(signal), Observed(current, tuple(on_disk), drift))
        return out
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _write_private(path: Path, data: bytes) -> None:
    """Replace `path` by a new 0600 file holding `data`, atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".observed-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
