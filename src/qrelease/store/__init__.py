"""Durable controller state behind one Protocol (`StateStore`), and the audit hash chain.

`open_store` is the only way in: it picks the backend from a location (a state dir, a
`sqlite:///` URL, or `memory:`), so nothing outside this package names a backend module.
"""

from __future__ import annotations

from pathlib import Path

from qrelease.store.audit import ChainBreak, ChainReport, ChainVerifier, verify_chain
from qrelease.store.base import (
    HistoryFilter,
    Intent,
    Run,
    SchemaTooNewError,
    StateStore,
    StoreError,
)

DB_NAME = "qrelease.db"
"""The SQLite file's name inside a state dir."""

__all__ = [
    "DB_NAME",
    "ChainBreak",
    "ChainReport",
    "ChainVerifier",
    "HistoryFilter",
    "Intent",
    "Run",
    "SchemaTooNewError",
    "StateStore",
    "StoreError",
    "open_store",
    "verify_chain",
]


def open_store(location: Path | str) -> StateStore:
    """The store at `location`: a state dir (its SQLite file), `sqlite:///path`, or `memory:`.

    >>> open_store("memory:").count_events()
    0
    """
    text = str(location)
    if text == "memory:":
        from qrelease.store.memory import MemoryStore

        return MemoryStore()
    from qrelease.store.sqlite import Store

    if text.startswith("sqlite:///"):
        return Store.open(Path(text.removeprefix("sqlite:///")))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(f"unsupported store URL scheme {scheme!r} (use sqlite:///path)")
    state_dir = Path(text)
    state_dir.mkdir(parents=True, exist_ok=True)
    return Store.open(state_dir / DB_NAME)
