"""Durable controller state: SQLite storage and the audit hash chain that auditors verify."""

from qrelease.store.audit import ChainBreak, ChainReport, ChainVerifier, verify_chain
from qrelease.store.sqlite import (
    SCHEMA_VERSION,
    HistoryFilter,
    Intent,
    Run,
    SchemaTooNewError,
    Store,
    StoreError,
)

__all__ = [
    "SCHEMA_VERSION",
    "ChainBreak",
    "ChainReport",
    "ChainVerifier",
    "HistoryFilter",
    "Intent",
    "Run",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "verify_chain",
]
