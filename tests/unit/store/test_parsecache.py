"""The parse cache file: shared, bounded, and never trusted when it is damaged or not ours."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from qrelease.store.parsecache import CACHE_DIR, CACHE_FILE, ParseCache


def cache_file(state: Path) -> Path:
    return state / CACHE_DIR / CACHE_FILE


def test_values_round_trip_and_a_second_handle_sees_them(tmp_path: Path) -> None:
    with ParseCache.open(tmp_path) as cache:
        assert cache.get_many(["a"]) == {}
        cache.put_many({"a": b"alpha", "b": b"beta"})
        assert cache.get_many(["a", "b", "c"]) == {"a": b"alpha", "b": b"beta"}
    with ParseCache.open(tmp_path) as other:
        assert other.get_many(["b"]) == {"b": b"beta"}
        assert other.count() == 2
    assert cache_file(tmp_path).stat().st_mode & 0o777 == 0o600
    assert cache_file(tmp_path).parent.stat().st_mode & 0o777 == 0o700


def test_reading_a_missing_cache_creates_nothing(tmp_path: Path) -> None:
    with ParseCache.open(tmp_path) as cache:
        assert cache.get_many(["a"]) == {}
        assert cache.count() == 0
    assert not cache_file(tmp_path).exists()


def test_a_file_that_is_not_a_database_is_replaced(tmp_path: Path) -> None:
    with ParseCache.open(tmp_path) as cache:
        cache.put_many({"a": b"alpha"})
    cache_file(tmp_path).write_bytes(b"this is not SQLite" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{cache_file(tmp_path)}{suffix}").unlink(missing_ok=True)
    with ParseCache.open(tmp_path) as cache:
        assert cache.get_many(["a"]) == {}  # a miss, not an exception
        cache.put_many({"a": b"again"})
        assert cache.get_many(["a"]) == {"a": b"again"}
        assert cache.rebuilt == 1


def test_a_damaged_page_is_replaced(tmp_path: Path) -> None:
    with ParseCache.open(tmp_path) as cache:
        cache.put_many({f"key-{n}": os.urandom(3000) for n in range(200)})
    with sqlite3.connect(cache_file(tmp_path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    raw = bytearray(cache_file(tmp_path).read_bytes())
    raw[4096 * 3 : 4096 * 40] = b"\xff" * (4096 * 37)  # tables' pages overwritten
    cache_file(tmp_path).write_bytes(bytes(raw))
    with ParseCache.open(tmp_path) as cache:
        found = cache.get_many([f"key-{n}" for n in range(200)])
        cache.put_many({"fresh": b"value"})
        assert cache.get_many(["fresh"]) == {"fresh": b"value"}
        assert cache.rebuilt == 1 or len(found) < 200


def test_a_value_whose_checksum_fails_is_dropped(tmp_path: Path) -> None:
    with ParseCache.open(tmp_path) as cache:
        cache.put_many({"a": b"alpha", "b": b"beta"})
    with sqlite3.connect(cache_file(tmp_path)) as connection:
        connection.execute("UPDATE parses SET value = ? WHERE key = 'a'", (b"alphx",))
    connection.close()
    with ParseCache.open(tmp_path) as cache:
        assert cache.get_many(["a", "b"]) == {"b": b"beta"}
        assert cache.count() == 1  # the bad entry is gone; the next parse stores it again


def test_the_cache_is_bounded_and_keeps_what_was_used_recently(tmp_path: Path) -> None:
    with ParseCache(cache_file(tmp_path), max_entries=100) as cache:
        cache.put_many({f"old-{n}": b"x" for n in range(100)})
        stale = [f"old-{n}" for n in range(40)]  # last used long ago
        with sqlite3.connect(cache.path) as connection:
            connection.executemany("UPDATE parses SET used = 0 WHERE key = ?", [[k] for k in stale])
        connection.close()
        cache.put_many({f"new-{n}": b"y" for n in range(30)})  # 130: trimmed to 90
        assert cache.count() == 90
        kept = cache.get_many([f"old-{n}" for n in range(100)] + [f"new-{n}" for n in range(30)])
        assert len(kept) == 90 and not set(stale) & set(kept)


def test_a_file_others_could_write_is_not_read(tmp_path: Path) -> None:
    with ParseCache.open(tmp_path) as cache:
        cache.put_many({"a": b"alpha"})
    cache_file(tmp_path).chmod(0o666)
    with ParseCache.open(tmp_path) as cache:
        assert cache.get_many(["a"]) == {}
        cache.put_many({"a": b"mine"})
    assert cache_file(tmp_path).stat().st_mode & 0o777 == 0o600
