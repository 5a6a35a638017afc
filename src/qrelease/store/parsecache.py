"""The parse cache: every process of a state dir keeps its parses of Git blobs in one file.

Parses are pure functions of a blob's bytes (and of the code, which is part of each key),
so a cache entry never goes stale: any process may write one, and two processes writing
the same key write the same value. SQLite in WAL mode gives readers that never wait for a
writer and writers that take turns, so the CLI, the daemon and the TUI share the file
safely. The cache is never the truth: a file that is not a database, a row whose checksum
fails and an entry that does not decode are misses, and a damaged file is replaced by an
empty one. It is bounded: beyond `max_entries` the least recently used entries go.

Stored format (`<state>/cache/parse.db`, 0600, in the 0700 state dir):

    parses(key TEXT PRIMARY KEY, value BLOB, checksum BLOB, used INTEGER)

`key` is the caller's (see `source/parsing.py`: format digest, schema, blob id), `value`
its bytes, `checksum` the 16-byte BLAKE2b of `value`, `used` the day (days since the
epoch) the entry was last read or written; `PRAGMA user_version` is `SCHEMA`. The values
are pickles, so only a file its owner alone can write is read: anyone else who could write
it could run code as the controller. A file owned by another user, or writable by group or
others, is deleted and started afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

CACHE_DIR = "cache"
CACHE_FILE = "parse.db"
SCHEMA = 1
MAX_ENTRIES = 250_000
"""About 30 MB of manifests: eight times the 30,000 files of 10,000 apps x 3 versions."""
BUSY_TIMEOUT_SECONDS = 10.0
_CHUNK = 900  # bound parameters per statement (SQLite allows 999 on old builds)
_T = TypeVar("_T")
_Action = Callable[[sqlite3.Connection], None]


def _checksum(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


def _today() -> int:
    return int(time.time() // 86400)


class ParseCache:
    """The state dir's parse cache (a `source.parsing.BlobCache`); open with `ParseCache.open`.

    Every method swallows what a damaged file raises: the file is replaced and the call
    answers as an empty cache would.
    """

    def __init__(self, path: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self.rebuilt = 0
        """How many times a damaged file was replaced (for tests and logs)."""
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by whichever thread loads

    @classmethod
    def open(cls, state_dir: Path, max_entries: int = MAX_ENTRIES) -> ParseCache:
        """The cache of a state dir; the file is created on first write."""
        return cls(Path(state_dir) / CACHE_DIR / CACHE_FILE, max_entries)

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> ParseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Collection[str]) -> dict[str, bytes]:
        """The intact values of the keys present; entries last read before today are touched."""
        found: dict[str, bytes] = {}
        stale: list[str] = []
        today = _today()

        def read(connection: sqlite3.Connection) -> None:
            for chunk in _chunks(list(keys)):
                rows = connection.execute(
                    "SELECT key, value, checksum, used FROM parses WHERE key IN "  # noqa: S608
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
                for key, value, checksum, used in rows:
                    if _checksum(value) == checksum:
                        found[key] = value
                        if used < today:
                            stale.append(key)
                    else:
                        stale.append(key)

        if not keys or not self._guarded(read, exists=True):
            return {}
        damaged = [key for key in stale if key not in found]
        if damaged:
            self.discard(damaged)
        if len(stale) > len(damaged):
            self._touch([key for key in stale if key in found], today)
        return found

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store values (present keys are replaced), then trim to `max_entries`."""
        if not items:
            return
        today = _today()
        rows = [(key, value, _checksum(value), today) for key, value in items.items()]

        def write(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                connection.executemany(
                    "INSERT OR REPLACE INTO parses (key, value, checksum, used) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._trim(connection)

        self._guarded(write)

    def discard(self, keys: Collection[str]) -> None:
        """Forget entries that did not decode or check."""

        def delete(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                for chunk in _chunks(list(keys)):
                    connection.execute(
                        f"DELETE FROM parses WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                        chunk,
                    )

        self._guarded(delete, exists=True)

    def count(self) -> int:
        """How many entries the cache holds."""
        counted: list[int] = []
        self._guarded(
            lambda c: counted.append(c.execute("SELECT count(*) FROM parses").fetchone()[0]),
            exists=True,
        )
        return counted[0] if counted else 0

    # -- internals ----------------------------------------------------------------------

    def _touch(self, keys: list[str], today: int) -> None:
        def touch(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                for chunk in _chunks(keys):
                    connection.execute(
                        f"UPDATE parses SET used = ? WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                        [today, *chunk],
                    )

        self._guarded(touch)

    def _trim(self, connection: sqlite3.Connection) -> None:
        """Drop the least recently used entries beyond `max_entries` (down to 90% of it)."""
        (count,) = connection.execute("SELECT count(*) FROM parses").fetchone()
        if count <= self.max_entries:
            return
        excess = count - self.max_entries * 9 // 10
        connection.execute(
            "DELETE FROM parses WHERE rowid IN "
            "(SELECT rowid FROM parses ORDER BY used, rowid LIMIT ?)",
            (excess,),
        )

    def _guarded(self, action: _Action, *, exists: bool = False) -> bool:
        """Run `action`; a damaged file is replaced (and the action tried once more)."""
        with self._lock:
            return self._attempt(action, exists)

    def _attempt(self, action: _Action, exists: bool) -> bool:
        for attempt in range(2):
            try:
                connection = self._connect(create=not exists)
                if connection is None:
                    return False
                action(connection)
                return True
            except sqlite3.OperationalError as error:
                if _busy(error) or attempt:
                    return False  # another process holds the file too long: answer as a miss
                self._rebuild()
            except sqlite3.DatabaseError:
                if attempt:
                    return False
                self._rebuild()
        return False

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        if not self.path.exists():
            if not create:
                return None
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        elif not _private(self.path):
            self._remove_files()
            return self._connect(create=create)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # a lost entry is only a miss
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA:
                with _immediate(connection):
                    connection.execute("DROP TABLE IF EXISTS parses")
                    connection.execute(
                        "CREATE TABLE parses (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                        "checksum BLOB NOT NULL, used INTEGER NOT NULL)"
                    )
                    connection.execute(f"PRAGMA user_version = {SCHEMA}")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _rebuild(self) -> None:
        """Replace a damaged file with an empty one."""
        self._close()
        self._remove_files()
        self.rebuilt += 1

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").unlink()


def _private(path: Path) -> bool:
    """True when only its owner, who is us, can write the file."""
    info = path.stat()
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _busy(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


def _chunks(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


@contextlib.contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, rolled back if the block raises."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
