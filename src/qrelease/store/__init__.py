"""Durable controller state behind one Protocol (`StateStore`), and the audit hash chain.

`open_store` is the only way in: it picks the backend from a location (a state dir, a
`sqlite:///` or `postgresql://` URL, or `memory:`), so nothing outside this package names a
backend module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qrelease.store.audit import ChainBreak, ChainReport, ChainVerifier, verify_chain
from qrelease.store.base import (
    FencedError,
    HistoryFilter,
    Intent,
    Lease,
    Replica,
    Run,
    SchemaTooNewError,
    StateStore,
    StoreError,
)

if TYPE_CHECKING:
    from qrelease.store.parsecache import ParseCache

DB_NAME = "qrelease.db"
"""The SQLite file's name inside a state dir."""

__all__ = [
    "DB_NAME",
    "POSTGRES_SCHEMES",
    "ChainBreak",
    "ChainReport",
    "ChainVerifier",
    "FencedError",
    "HistoryFilter",
    "Intent",
    "Lease",
    "Replica",
    "Run",
    "SchemaTooNewError",
    "StateStore",
    "StoreError",
    "check_location",
    "open_parse_cache",
    "open_store",
    "verify_chain",
]


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"


def check_location(location: str) -> str:
    """`location` unchanged if `open_store` knows its form, else a StoreError saying which forms.

    >>> check_location("postgresql://qrelease@db.example/qrelease")
    'postgresql://qrelease@db.example/qrelease'
    """
    if "://" in location and not location.startswith((SQLITE_SCHEME, *POSTGRES_SCHEMES)):
        scheme = location.split("://", 1)[0]
        raise StoreError(
            f"unsupported store URL scheme {scheme!r} "
            "(use sqlite:///relative/path, sqlite:////absolute/path or postgresql://...)"
        )
    return location


def open_store(location: Path | str, *, must_exist: bool = False) -> StateStore:
    """The store at `location`: a state dir (its SQLite file), `sqlite:///path`, a
    `postgresql://user@host:port/db` URL, or `memory:`; `must_exist` refuses a new SQLite file.

    >>> open_store("memory:").count_events()
    0
    """
    text = check_location(str(location))
    if text == "memory:":
        from qrelease.store.memory import MemoryStore

        return MemoryStore()
    if text.startswith(POSTGRES_SCHEMES):
        from qrelease.store.postgres import PostgresStore

        return PostgresStore.open(text)
    from qrelease.store.sqlite import Store

    if text.startswith(SQLITE_SCHEME):
        path = Path(text.removeprefix(SQLITE_SCHEME))
    else:
        path = Path(text) / DB_NAME
    if must_exist and not path.is_file():
        raise StoreError(f"{path}: no such state database")
    return Store.open(path)  # creates the folders it needs


def open_parse_cache(state_dir: Path) -> ParseCache:
    """The state dir's parse cache, shared by every process that reads the same repo."""
    from qrelease.store.parsecache import ParseCache

    return ParseCache.open(state_dir)
