"""History of one environment from a store of many events, against the raw indexed SQLite query.

The store is filled through `Store.append` (so every event is really hash-chained) in one
transaction, with events spread round-robin over three environments and the apps. Two
rows: the newest 100 events of one environment (what `qrelease history --env` shows
first), and that environment's whole history. The reference runs the same indexed SELECT
with plain `sqlite3` and builds plain tuples.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.gitdata import ENVIRONMENTS, app_name, version_name
from benchmarks.harness import Context, Row, plain, ratio_row
from qrelease.model.events import EventDraft
from qrelease.store.sqlite import Store

TARGET = 2.0
ENV = "prod"
PAGE = 100
STARTED = datetime(2024, 1, 1, tzinfo=UTC)
ACTIONS = ("gate", "gate", "gate", "install", "switch", "deploy")
COLUMNS = (
    "seq, time, env, app, action, from_version, to_version, revision, "
    "actor, reason, outcome, details, prev_hash, hash"
)


def draft(index: int, apps: int) -> EventDraft:
    """The event at `index`: a deploy's steps, round-robin over environments and apps."""
    step = ACTIONS[index % len(ACTIONS)]
    details = {"gate": "smoke", "seconds": 0.25} if step == "gate" else {"installed": True}
    return EventDraft(
        env=ENVIRONMENTS[(index // len(ACTIONS)) % len(ENVIRONMENTS)],
        app=app_name((index // (len(ACTIONS) * len(ENVIRONMENTS))) % apps),
        action=step,
        from_version=version_name(0),
        to_version=version_name(1),
        revision=f"{index:040x}",
        outcome="Passed" if step == "gate" else "Succeeded",
        details=details,
    )


def fill(path: Path, events: int, apps: int) -> None:
    """A store holding `events` chained events, appended in one transaction."""
    with Store.open(path) as store, store.transaction():
        for index in range(events):
            store.append(draft(index, apps), time=STARTED + timedelta(seconds=index))


def raw_query(connection: sqlite3.Connection, limit: int | None) -> list[tuple[object, ...]]:
    """Reference: the indexed SELECT, rows as plain tuples."""
    sql = f"SELECT {COLUMNS} FROM events WHERE env = ? ORDER BY seq DESC"  # noqa: S608 constant
    if limit is None:
        return connection.execute(sql, (ENV,)).fetchall()
    return connection.execute(sql + " LIMIT ?", (ENV, limit)).fetchall()


def run(ctx: Context) -> list[Row]:
    """Two rows: newest page of one env, and its whole history."""
    path = ctx.workdir / "history" / "qrelease.db"
    fill(path, ctx.sizes.events, ctx.sizes.apps)
    reference_name = "sqlite3: SELECT ... FROM events WHERE env=? ORDER BY seq DESC{}; tuples"
    with Store.open(path) as store, sqlite3.connect(path) as connection:
        in_env = len(raw_query(connection, None))
        page = ratio_row(
            ctx,
            f"history of one env, newest {PAGE} of {ctx.sizes.events:,} events",
            TARGET,
            plain(lambda: store.events(env=ENV, limit=PAGE, descending=True)),
            plain(lambda: raw_query(connection, PAGE)),
            reference_name=reference_name.format(" LIMIT 100"),
            notes=[f"qrelease: Store.events(env={ENV!r}, limit={PAGE}, descending=True)"],
        )
        whole = ratio_row(
            ctx,
            f"history of one env, all {in_env:,} of {ctx.sizes.events:,} events",
            TARGET,
            plain(lambda: store.events(env=ENV, descending=True)),
            plain(lambda: raw_query(connection, None)),
            reference_name=reference_name.format(""),
            notes=[f"qrelease: Store.events(env={ENV!r}, descending=True) -> {in_env:,} Events"],
        )
    connection.close()
    return [page, whole]
