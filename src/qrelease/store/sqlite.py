"""The controller's durable state in one SQLite file: observed state, runs, intents, audit log.

The controller must survive crashes and restarts without losing what it knows, and auditors
must be able to read and verify every change it ever made; one SQLite file in the state
directory does both with no server to run.

Stored format, schema version 6 (`PRAGMA user_version` holds the version; `_MIGRATIONS`
lists the steps, each applied in its own transaction):

- ``meta(key TEXT PRIMARY KEY, value TEXT)`` — small facts such as the last applied revision.
- ``observed(env, app, desired, deployed, sync, health, target, availability, message,
  revision, updated_at, healthy_since, failed_version, failed_revision, qir_sha256,
  physical_qubits INTEGER, rollout, rollout_step, rollout_reason, running_target, failure,
  attempts INTEGER, retry_at, bake_until, previous, owner, fence INTEGER)`` — one
  `ObservedState` per row, primary key ``(env, app)`` (version 2 added the rollout, target
  and retry columns, version 3 the bake columns, version 4 the lease owner and token).
- ``runs(id INTEGER PRIMARY KEY AUTOINCREMENT, revision, started_at, finished_at, outcome,
  summary)`` — one row per reconcile pass; `summary` is a JSON object.
- ``events(seq INTEGER PRIMARY KEY, time, env, app, action, from_version, to_version,
  revision, actor, reason, outcome, details, prev_hash, hash UNIQUE)`` — the audit chain
  (see `store/audit.py`); `details` is a JSON object. Indexes ``(env, seq)``, ``(app, seq)``,
  ``(env, app, seq)`` and ``(time)`` serve history queries. Triggers abort any UPDATE or
  DELETE, and any INSERT whose seq and prev_hash do not extend the chain.
- ``intents(id INTEGER PRIMARY KEY AUTOINCREMENT, env, app, step, payload, created_at)`` —
  what a side effect is about to do, written before it starts and cleared after it ends,
  so a pass after a crash knows what was half done; `payload` is a JSON object. Ids are
  never reused.
- ``leases(name TEXT PRIMARY KEY, owner, token INTEGER, expires_at, acquired_at)`` and
  ``replicas(id TEXT PRIMARY KEY, host, pid INTEGER, address, serves, started_at,
  last_seen)`` — work ownership and heartbeats of controller replicas (version 4; one
  SQLite controller holds every lease itself).
- ``gate_jobs(key TEXT PRIMARY KEY, payload, state, worker, attempts INTEGER, heartbeat_at,
  result, created_at, finished_at)`` — quantum gates queued for gate workers, one job per
  content key, its result kept for every later asker (version 5).
- ``quantum_jobs(env, job_id, app, version, status, created_at, target, began_at,
  ended_at, cost REAL, currency)`` — the quantum jobs of each environment's releases as
  last read from the workspace (`QuantumJob`), primary key ``(env, job_id)``, indexed by
  release and by creation time (version 6).

Times are UTC ISO 8601 text with microseconds (``2024-05-01T12:00:00.000000+00:00``), so
text order is time order; naive datetimes are refused. Enums are stored as their values.

Durability: WAL journal with ``synchronous=FULL``. NORMAL is crash-safe for the file but may
lose the last commits on power loss, and here a lost commit is an intent written before a
deployment, or the audit event of one that happened; writes are a few per reconcile pass,
so an fsync each costs nothing that matters.

Concurrency: every write runs in ``BEGIN IMMEDIATE``, which takes the write lock before
reading the chain's tail, so processes appending at once queue (up to the busy timeout)
instead of forking the chain. A `Store` belongs to the thread that opened it (sqlite3's
same-thread check stays on); other threads and processes open their own `Store` on the
same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from qrelease.model.events import GENESIS_HASH, Event, EventDraft
from qrelease.model.jobs import QuantumJob
from qrelease.model.manifest import share_fields_set
from qrelease.model.observed import ObservedState
from qrelease.store.audit import ChainReport, ChainVerifier, as_utc, link
from qrelease.store.base import (
    ENDED_STATUSES,
    JOB_COLUMNS,
    FencedError,
    GateJob,
    HistoryFilter,
    Intent,
    Lease,
    Replica,
    Run,
    SchemaTooNewError,
    StoreError,
    acquired,
    fence_problem,
    job_from_row,
    renewed,
)

BUSY_TIMEOUT_SECONDS = 10.0
_FETCH_BATCH = 500

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE observed (
            env TEXT NOT NULL, app TEXT NOT NULL,
            desired TEXT, deployed TEXT,
            sync TEXT NOT NULL, health TEXT NOT NULL,
            target TEXT, availability TEXT NOT NULL,
            message TEXT NOT NULL, revision TEXT,
            updated_at TEXT, healthy_since TEXT,
            failed_version TEXT, failed_revision TEXT,
            qir_sha256 TEXT, physical_qubits INTEGER,
            PRIMARY KEY (env, app))""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, revision TEXT,
            started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT,
            summary TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(summary)))""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY, time TEXT NOT NULL,
            env TEXT NOT NULL, app TEXT NOT NULL, action TEXT NOT NULL,
            from_version TEXT, to_version TEXT, revision TEXT,
            actor TEXT NOT NULL, reason TEXT NOT NULL, outcome TEXT NOT NULL,
            details TEXT NOT NULL CHECK (json_valid(details)),
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE)""",
        "CREATE INDEX events_by_env ON events (env, seq)",
        "CREATE INDEX events_by_app ON events (app, seq)",
        "CREATE INDEX events_by_env_app ON events (env, app, seq)",
        "CREATE INDEX events_by_time ON events (time)",
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
        f"""CREATE TRIGGER events_extend_chain BEFORE INSERT ON events
            WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
              OR NEW.prev_hash IS NOT COALESCE(
                   (SELECT hash FROM events ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
            BEGIN SELECT RAISE(ABORT, 'audit event does not extend the chain'); END""",  # noqa: S608 only the GENESIS_HASH constant is interpolated
        """CREATE TABLE intents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            env TEXT NOT NULL, app TEXT NOT NULL, step TEXT NOT NULL,
            payload TEXT NOT NULL CHECK (json_valid(payload)), created_at TEXT NOT NULL)""",
    ),
    (
        "ALTER TABLE observed ADD COLUMN rollout TEXT",
        "ALTER TABLE observed ADD COLUMN rollout_step TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE observed ADD COLUMN rollout_reason TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE observed ADD COLUMN running_target TEXT",
        "ALTER TABLE observed ADD COLUMN failure TEXT",
        "ALTER TABLE observed ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE observed ADD COLUMN retry_at TEXT",
        # a live release's target was the row's target before rollouts had their own fields
        "UPDATE observed SET running_target = target WHERE deployed IS NOT NULL",
    ),
    (
        "ALTER TABLE observed ADD COLUMN bake_until TEXT",
        "ALTER TABLE observed ADD COLUMN previous TEXT",
    ),
    (
        "ALTER TABLE observed ADD COLUMN owner TEXT",
        "ALTER TABLE observed ADD COLUMN fence INTEGER",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL, token INTEGER NOT NULL,
            expires_at TEXT NOT NULL, acquired_at TEXT NOT NULL)""",
        """CREATE TABLE replicas (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            address TEXT NOT NULL, serves TEXT CHECK (serves IS NULL OR json_valid(serves)),
            started_at TEXT NOT NULL, last_seen TEXT NOT NULL)""",
    ),
    (
        """CREATE TABLE gate_jobs (
            key TEXT PRIMARY KEY, payload TEXT NOT NULL CHECK (json_valid(payload)),
            state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
            worker TEXT, attempts INTEGER NOT NULL DEFAULT 0, heartbeat_at TEXT,
            result TEXT CHECK (result IS NULL OR json_valid(result)),
            created_at TEXT NOT NULL, finished_at TEXT)""",
        "CREATE INDEX gate_jobs_waiting ON gate_jobs (state, created_at)",
    ),
    (
        """CREATE TABLE quantum_jobs (
            env TEXT NOT NULL, job_id TEXT NOT NULL,
            app TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
            created_at TEXT NOT NULL, target TEXT NOT NULL DEFAULT '',
            began_at TEXT, ended_at TEXT, cost REAL, currency TEXT,
            PRIMARY KEY (env, job_id))""",
        "CREATE INDEX quantum_jobs_by_release ON quantum_jobs (env, app, version, created_at)",
        "CREATE INDEX quantum_jobs_by_created ON quantum_jobs (env, created_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_EVENT_COLUMNS = (
    "seq, time, env, app, action, from_version, to_version, revision, "
    "actor, reason, outcome, details, prev_hash, hash"
)
_EVENT_JSON = "json_object({})".format(  # one event row as JSON text; `details` embedded
    ", ".join(
        f"'{name}', json(details)" if name == "details" else f"'{name}', {name}"
        for name in _EVENT_COLUMNS.split(", ")
    )
)
_EVENT_LIST = TypeAdapter(list[Event])
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 14)})"  # noqa: S608 constant column list
_OBSERVED_COLUMNS = (
    "env",
    "app",
    "desired",
    "deployed",
    "sync",
    "health",
    "target",
    "availability",
    "message",
    "revision",
    "updated_at",
    "healthy_since",
    "failed_version",
    "failed_revision",
    "qir_sha256",
    "physical_qubits",
    "rollout",
    "rollout_step",
    "rollout_reason",
    "running_target",
    "failure",
    "attempts",
    "retry_at",
    "bake_until",
    "previous",
    "owner",
    "fence",
)
_GATE_JOB_COLUMNS = (
    "key, payload, state, worker, attempts, heartbeat_at, result, created_at, finished_at"
)
_LEASE_COLUMNS = "name, owner, token, expires_at, acquired_at"
_REPLICA_COLUMNS = "id, host, pid, address, serves, started_at, last_seen"
_OBSERVED_JSON = "json_object({})".format(", ".join(f"'{n}', {n}" for n in _OBSERVED_COLUMNS))
_OBSERVED_LIST = TypeAdapter(list[ObservedState])
_OBSERVED_BATCH = 2000
"""Stored states validated at a time: the read of 30,000 never holds all their JSON at once."""
_Row = TypeVar("_Row", Event, ObservedState)
_UPSERT_OBSERVED = (
    f"INSERT INTO observed ({', '.join(_OBSERVED_COLUMNS)}) "  # noqa: S608 constant column list
    f"VALUES ({', '.join('?' * len(_OBSERVED_COLUMNS))}) ON CONFLICT (env, app) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _OBSERVED_COLUMNS[2:])
)


def _history_sql(history: HistoryFilter, columns: str = _EVENT_COLUMNS) -> tuple[str, list[object]]:
    """The parameterised SELECT of `columns` for a history filter."""
    clauses, params = _history_where(history)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = " ORDER BY seq DESC" if history.descending else " ORDER BY seq"
    limit = ""
    if history.limit is not None:
        if history.limit < 0:
            raise ValueError(f"limit must not be negative, got {history.limit}")
        limit = " LIMIT ?"
        params.append(history.limit)
    return f"SELECT {columns} FROM events{where}{order}{limit}", params  # noqa: S608 clauses are constants, values bound


def _history_where(history: HistoryFilter) -> tuple[list[str], list[object]]:
    bounds: list[tuple[str, object]] = [
        ("env = ?", history.env),
        ("app = ?", history.app),
        ("time >= ?", None if history.since is None else _time_text(history.since)),
        ("time < ?", None if history.until is None else _time_text(history.until)),
        ("seq > ?", history.after_seq),
        ("seq < ?", history.before_seq),
    ]
    pairs = [(clause, value) for clause, value in bounds if value is not None]
    clauses, params = [clause for clause, _ in pairs], [value for _, value in pairs]
    actions = history.action_set()
    if actions is not None:
        names = sorted(actions)
        clauses.append(f"action IN ({', '.join('?' * len(names))})" if names else "0")
        params.extend(names)
    return clauses, params


class Store:
    """The controller's SQLite state (a `StateStore`); open with `Store.open(path)`."""

    def __init__(self, connection: sqlite3.Connection, location: str) -> None:
        self._connection = connection
        self.location = location
        self._depth = 0
        self._observed: tuple[tuple[int, int], Mapping[tuple[str, str], ObservedState]] | None = (
            None
        )
        self._observed_writes = 0  # this connection's writes to `observed`
        self._pending: dict[tuple[str, str], ObservedState | None] = {}  # not yet committed

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating it and its directory if needed) and migrate the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(_connect(str(path)), str(path))

    @classmethod
    def in_memory(cls) -> Store:
        """A private, empty database that lives as long as the Store: for tests and dry runs."""
        return cls(_connect(":memory:"), ":memory:")

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self._connection.close()

    def connect(self) -> Store:
        """Another connection to the same file, for another thread (not for `in_memory`)."""
        if self.location == ":memory:":
            raise StoreError("an in-memory SQLite store has no second connection")
        return Store.open(Path(self.location))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return _user_version(self._connection)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit, rolled back whole if the block raises; nests."""
        outermost = not self._depth
        try:
            with _savepoint(self._connection) if self._depth else _immediate(self._connection):
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
        except BaseException:
            if outermost:
                self._pending.clear()
                self._observed = None  # what was rolled back: read it all again
            raise
        if outermost and self._pending:
            self._settle_observed()

    # -- audit events -----------------------------------------------------------------

    def append(self, draft: EventDraft, *, time: datetime | None = None) -> Event:
        """Chain `draft` after the newest event (at `time`, default now) and store it."""
        moment = datetime.now(UTC) if time is None else time
        with self.transaction():
            tail_seq, tail_hash = self._chain_tail()
            event = link(draft, seq=tail_seq + 1, prev_hash=tail_hash, time=moment)
            self._connection.execute(_INSERT_EVENT, _event_row(event))
        return event

    def iter_events(
        self,
        *,
        app: str | None = None,
        env: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: Collection[str] | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> Generator[Event, None, None]:
        """Stream matching events in batches; exhaust or close the iterator to free its cursor."""
        history = HistoryFilter(
            env=env,
            app=app,
            since=since,
            until=until,
            actions=actions,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            descending=descending,
        )
        for batch in self._validated_batches(
            _EVENT_LIST, *_history_sql(history, _EVENT_JSON), _FETCH_BATCH
        ):
            yield from batch

    def events(
        self,
        *,
        app: str | None = None,
        env: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: Collection[str] | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[Event]:
        """Matching events in seq order (newest first when `descending`)."""
        history = HistoryFilter(
            env=env,
            app=app,
            since=since,
            until=until,
            actions=actions,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            descending=descending,
        )
        return [
            event
            for batch in self._validated_batches(_EVENT_LIST, *_history_sql(history, _EVENT_JSON))
            for event in batch
        ]

    def last_event(self, env: str, app: str, action: str | None = None) -> Event | None:
        """The newest event for (env, app), optionally of one action."""
        actions = None if action is None else (action,)
        newest = self.events(env=env, app=app, actions=actions, limit=1, descending=True)
        return newest[0] if newest else None

    def newest_seq(self) -> int:
        """The seq of the newest event (0 for an empty log)."""
        return self._chain_tail()[0]

    def count_events(self) -> int:
        """How many events the log holds."""
        row = self._connection.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(row[0])

    def query_plan(self, history: HistoryFilter) -> list[str]:
        """SQLite's plan for a history query, one line per step: to check index use."""
        sql, params = _history_sql(history)
        rows = self._connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return [str(row["detail"]) for row in rows]

    def verify(
        self,
        *,
        after_seq: int = 0,
        after_hash: str = GENESIS_HASH,
        see: Callable[[int, str], None] | None = None,
    ) -> ChainReport:
        """Stream the stored events after `after_seq` in seq order through the chain check.

        Each row's hash is checked straight off the row; only a row that check cannot vouch
        for is built into an `Event` (whose verdict, unreadable or not, then stands).
        """
        verifier = ChainVerifier(after_seq, after_hash, see)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq"  # noqa: S608 constant
        cursor = self._connection.cursor()
        cursor.row_factory = None
        try:
            cursor.execute(sql, (after_seq,))
            while rows := cursor.fetchmany(_FETCH_BATCH):
                for row in rows:
                    if not verifier.add_row(row):
                        self._verify_slowly(verifier, row)
        finally:
            cursor.close()
        return verifier.report()

    @staticmethod
    def _verify_slowly(verifier: ChainVerifier, row: tuple[Any, ...]) -> None:
        fields = dict(zip(_EVENT_COLUMNS.split(", "), row, strict=True))
        try:
            fields["time"] = _time_value(fields["time"])
            fields["details"] = _json_object(fields["details"])
            verifier.add(Event.model_validate(fields))
        except (ValueError, TypeError) as error:
            verifier.add_unreadable(int(fields["seq"]), fields["hash"], _first_line(error))

    # -- observed state ---------------------------------------------------------------

    def put_observed(self, state: ObservedState) -> None:
        """Record the controller's latest view of one (env, app), replacing the previous."""
        with self.transaction():
            self._connection.execute(_UPSERT_OBSERVED, _observed_row(state))
            self._pending[(state.env, state.app)] = state

    def put_observed_many(self, states: Collection[ObservedState]) -> None:
        """Record several views in one commit."""
        if not states:
            return
        with self.transaction():
            self._connection.executemany(_UPSERT_OBSERVED, [_observed_row(s) for s in states])
            self._pending.update(((s.env, s.app), s) for s in states)

    def get_observed(self, env: str, app: str) -> ObservedState | None:
        """The recorded state of one (env, app), if any."""
        sql = f"SELECT {_OBSERVED_JSON} FROM observed WHERE env = ? AND app = ?"  # noqa: S608 constant
        found = [
            s for batch in self._validated_batches(_OBSERVED_LIST, sql, [env, app]) for s in batch
        ]
        return found[0] if found else None

    def all_observed(self) -> list[ObservedState]:
        """Every recorded (env, app) state, ordered by env then app."""
        return list(self.observed_by_key().values())

    def observed_by_key(self) -> Mapping[tuple[str, str], ObservedState]:
        """Every recorded state by (env, app), in env then app order; do not modify it.

        Read again only when another connection committed since the last call (SQLite's
        `data_version` moves); what this connection commits itself is applied to a copy of
        the mapping it holds. A pass then costs one pragma, not thousands of rows.
        """
        version = self._observed_version()
        if self._observed is None or self._observed[0] != version:
            sql = f"SELECT {_OBSERVED_JSON} FROM observed ORDER BY env, app"  # noqa: S608 constant
            states = (
                s
                for batch in self._validated_batches(_OBSERVED_LIST, sql, [], _OBSERVED_BATCH)
                for s in batch
            )
            self._observed = (version, {(s.env, s.app): s for s in share_fields_set(states)})
        return self._observed[1]

    def delete_observed(self, env: str, app: str) -> None:
        """Forget one (env, app); forgetting an unknown one is harmless."""
        with self.transaction():
            self._connection.execute("DELETE FROM observed WHERE env = ? AND app = ?", (env, app))
            self._pending[(env, app)] = None

    def _observed_version(self) -> tuple[int, int]:
        data_version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        return int(data_version), self._observed_writes

    def _settle_observed(self) -> None:
        """After a commit: apply this connection's writes to a copy of the mapping it holds.

        The copy keeps env-then-app order only when no key came or went; otherwise the
        next call reads everything again (rare: apps added or pruned).
        """
        pending, self._pending = self._pending, {}
        cached, before = self._observed, self._observed_version()  # our commits leave
        self._observed_writes += 1  # data_version alone: it moves only for other connections
        if cached is None or cached[0] != before:
            self._observed = None
            return
        known = cached[1]
        if any((state is None) or (key not in known) for key, state in pending.items()):
            self._observed = None
            return
        updated = dict(known)
        updated.update(pending)  # type: ignore[arg-type]  # no None left: checked above
        self._observed = (self._observed_version(), updated)

    # -- runs -------------------------------------------------------------------------

    def begin_run(self, revision: str | None, *, time: datetime | None = None) -> int:
        """Record the start of a reconcile pass over `revision`; returns the run's id."""
        with self.transaction():
            cursor = self._connection.execute(
                "INSERT INTO runs (revision, started_at) VALUES (?, ?)",
                (revision, _time_text(time or datetime.now(UTC))),
            )
        return _rowid(cursor)

    def finish_run(
        self, run_id: int, outcome: str, summary: dict[str, Any], *, time: datetime | None = None
    ) -> None:
        """Record how an unfinished run ended."""
        with self.transaction():
            cursor = self._connection.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? "
                "WHERE id = ? AND finished_at IS NULL",
                (_time_text(time or datetime.now(UTC)), outcome, _json_text(summary), run_id),
            )
        if cursor.rowcount != 1:
            raise StoreError(f"run {run_id} does not exist or has already finished")

    def last_run(self) -> Run | None:
        """The most recently started run, finished or not."""
        row = self._connection.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else _run_from_row(row)

    def iter_runs(self) -> Iterator[Run]:
        """Every run, oldest first."""
        for row in self._stream("SELECT * FROM runs ORDER BY id", []):
            yield _run_from_row(row)

    def restore_run(self, run: Run) -> None:
        """Store a run copied from another store, keeping its id."""
        finished = None if run.finished_at is None else _time_text(run.finished_at)
        with self.transaction():
            self._connection.execute(
                "INSERT INTO runs (id, revision, started_at, finished_at, outcome, summary) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.revision,
                    _time_text(run.started_at),
                    finished,
                    run.outcome,
                    _json_text(run.summary),
                ),
            )

    # -- intents ----------------------------------------------------------------------

    def put_intent(
        self,
        env: str,
        app: str,
        step: str,
        payload: dict[str, Any],
        *,
        time: datetime | None = None,
    ) -> int:
        """Announce a side effect before starting it; returns the id to clear it with."""
        with self.transaction():
            cursor = self._connection.execute(
                "INSERT INTO intents (env, app, step, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (env, app, step, _json_text(payload), _time_text(time or datetime.now(UTC))),
            )
        return _rowid(cursor)

    def clear_intent(self, intent_id: int) -> None:
        """Mark an announced side effect done (or undone); clearing twice is harmless."""
        with self.transaction():
            self._connection.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def pending_intents(self) -> list[Intent]:
        """Announced side effects not yet cleared, oldest first."""
        rows = self._connection.execute("SELECT * FROM intents ORDER BY id").fetchall()
        return [_intent_from_row(row) for row in rows]

    def restore_intent(self, intent: Intent) -> None:
        """Store an intent copied from another store, keeping its id."""
        with self.transaction():
            self._connection.execute(
                "INSERT INTO intents (id, env, app, step, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    intent.id,
                    intent.env,
                    intent.app,
                    intent.step,
                    _json_text(intent.payload),
                    _time_text(intent.created_at),
                ),
            )

    # -- quantum jobs -----------------------------------------------------------------

    def put_jobs(self, jobs: Collection[QuantumJob]) -> None:
        """Record jobs as last read from the service (insert, or replace by (env, job id))."""
        if not jobs:
            return
        with self.transaction():
            self._connection.executemany(_UPSERT_JOB, [_job_row(job) for job in jobs])

    def jobs(
        self,
        env: str,
        app: str | None = None,
        version: str | None = None,
        *,
        since: datetime | None = None,
    ) -> list[QuantumJob]:
        """An environment's stored jobs (of one app, one release, created since), oldest first."""
        where: list[str] = ["env = ?"]
        params: list[object] = [env]
        for column, value in (("app", app), ("version", version)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("created_at >= ?")
            params.append(_time_text(since))
        condition = " AND ".join(where)
        order = "ORDER BY created_at, job_id"
        sql = f"SELECT {_JOB_SELECT} FROM quantum_jobs WHERE {condition} {order}"  # noqa: S608 constant columns
        return [_job_from_row(row) for row in self._connection.execute(sql, params).fetchall()]

    def open_jobs(self, env: str, limit: int) -> list[QuantumJob]:
        """Up to `limit` of an environment's jobs that have not ended, oldest created first."""
        marks = ", ".join("?" * len(ENDED_STATUSES))
        sql = (
            f"SELECT {_JOB_SELECT} FROM quantum_jobs WHERE env = ? AND status NOT IN ({marks}) "  # noqa: S608 constant columns
            "ORDER BY created_at, job_id LIMIT ?"
        )
        rows = self._connection.execute(sql, [env, *ENDED_STATUSES, limit]).fetchall()
        return [_job_from_row(row) for row in rows]

    def prune_jobs(self, env: str, before: datetime) -> int:
        """Forget an environment's jobs created before `before`; returns how many."""
        with self.transaction():
            cursor = self._connection.execute(
                "DELETE FROM quantum_jobs WHERE env = ? AND created_at < ?",
                [env, _time_text(before)],
            )
        return int(cursor.rowcount)

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key`, if any."""
        row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any previous value."""
        with self.transaction():
            self._connection.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def meta_items(self) -> dict[str, str]:
        """Every meta key with its value."""
        rows = self._connection.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        return {str(row["key"]): str(row["value"]) for row in rows}

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        """Set `key` to `value` only if it holds `expected` (None: absent); True if it did."""
        with self.transaction():
            if expected is None:
                sql = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
                changed = self._connection.execute(sql, (key, value)).rowcount
            else:
                sql = "UPDATE meta SET value = ? WHERE key = ? AND value = ?"
                changed = self._connection.execute(sql, (value, key, expected)).rowcount
        return changed == 1

    # -- leases and replicas ----------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> Lease | None:
        """Take the lease when it is free, expired or already `owner`'s, with a new token."""
        with self.transaction():
            lease = acquired(self._lease(name), name, owner, ttl, as_utc(now))
            if lease is not None:
                self._connection.execute(
                    "INSERT INTO leases (name, owner, token, expires_at, acquired_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                    "owner = excluded.owner, token = excluded.token, "
                    "expires_at = excluded.expires_at, acquired_at = excluded.acquired_at",
                    _lease_row(lease),
                )
        return lease

    def renew_lease(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease | None:
        """Extend a held lease (same token); None when someone acquired it since."""
        with self.transaction():
            fresh = renewed(self._lease(lease.name), lease, ttl, as_utc(now))
            if fresh is not None:
                self._connection.execute(
                    "UPDATE leases SET expires_at = ? WHERE name = ?",
                    [_time_text(fresh.expires_at), fresh.name],
                )
        return fresh

    def release_lease(self, lease: Lease) -> bool:
        """Give a held lease up (it expires at once); False when it was no longer held."""
        with self.transaction():
            changed = self._connection.execute(
                "UPDATE leases SET expires_at = acquired_at "
                "WHERE name = ? AND owner = ? AND token = ?",
                [lease.name, lease.owner, lease.token],
            ).rowcount
        return changed == 1

    def leases(self) -> list[Lease]:
        """Every lease ever taken, by name."""
        rows = self._connection.execute(f"SELECT {_LEASE_COLUMNS} FROM leases ORDER BY name")  # noqa: S608 constant
        return [_lease_from_row(row) for row in rows.fetchall()]

    def check_fence(self, name: str, owner: str, token: int) -> None:
        """Raise FencedError unless `owner` still holds lease `name` with `token`.

        Inside a transaction (`BEGIN IMMEDIATE` holds the write lock) nobody can take the
        lease over before the commit.
        """
        problem = fence_problem(self._lease(name), name, owner, token)
        if problem:
            raise FencedError(problem)

    def heartbeat(self, replica: Replica) -> None:
        """Record that a replica is alive (insert or refresh its row)."""
        serves = None if replica.serves is None else json.dumps(list(replica.serves))
        with self.transaction():
            self._connection.execute(
                f"INSERT INTO replicas ({_REPLICA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 constant
                "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "address = excluded.address, serves = excluded.serves, "
                "started_at = excluded.started_at, last_seen = excluded.last_seen",
                [
                    replica.id,
                    replica.host,
                    replica.pid,
                    replica.address,
                    serves,
                    _time_text(replica.started_at),
                    _time_text(replica.last_seen),
                ],
            )

    def replicas(self) -> list[Replica]:
        """Every replica that has beaten, by id."""
        sql = f"SELECT {_REPLICA_COLUMNS} FROM replicas ORDER BY id"  # noqa: S608 constant
        return [_replica_from_row(row) for row in self._connection.execute(sql).fetchall()]

    def forget_replica(self, replica_id: str) -> None:
        """Remove a replica's row (it stopped cleanly)."""
        with self.transaction():
            self._connection.execute("DELETE FROM replicas WHERE id = ?", [replica_id])

    # -- gate jobs ------------------------------------------------------------------------

    def enqueue_gate_job(self, key: str, payload: dict[str, Any], now: datetime) -> GateJob:
        """Queue gates for `key` unless a job for it exists; returns the job either way."""
        with self.transaction():
            self._connection.execute(
                "INSERT INTO gate_jobs (key, payload, state, created_at) "
                "VALUES (?, ?, 'queued', ?) ON CONFLICT (key) DO NOTHING",
                [key, _json_text(payload), _time_text(now)],
            )
            job = self._gate_job(key)
        assert job is not None
        return job

    def claim_gate_job(
        self, worker: str, now: datetime, stale: timedelta, key: str | None = None
    ) -> GateJob | None:
        """Take the oldest queued job, or a running one silent for `stale` (a new attempt).

        `key` claims that job only (a controller running its own job when no worker did)."""
        with self.transaction():
            row = self._connection.execute(
                "SELECT key FROM gate_jobs WHERE (? IS NULL OR key = ?) AND (state = 'queued' "
                "OR (state = 'running' AND heartbeat_at < ?)) ORDER BY created_at, key LIMIT 1",
                [key, key, _time_text(now - stale)],
            ).fetchone()
            if row is None:
                return None
            self._connection.execute(
                "UPDATE gate_jobs SET state = 'running', worker = ?, attempts = attempts + 1, "
                "heartbeat_at = ? WHERE key = ?",
                [worker, _time_text(now), row["key"]],
            )
            return self._gate_job(str(row["key"]))

    def heartbeat_gate_job(self, key: str, worker: str, attempt: int, now: datetime) -> bool:
        """Say the claimed attempt still runs; False when it was taken again meanwhile."""
        with self.transaction():
            changed = self._connection.execute(
                "UPDATE gate_jobs SET heartbeat_at = ? WHERE key = ? AND state = 'running' "
                "AND worker = ? AND attempts = ?",
                [_time_text(now), key, worker, attempt],
            ).rowcount
        return changed == 1

    def finish_gate_job(
        self, key: str, worker: str, attempt: int, result: dict[str, Any], now: datetime
    ) -> bool:
        """Store the result of a claimed attempt; False when it was taken again meanwhile."""
        with self.transaction():
            changed = self._connection.execute(
                "UPDATE gate_jobs SET state = 'done', result = ?, finished_at = ? "
                "WHERE key = ? AND state = 'running' AND worker = ? AND attempts = ?",
                [_json_text(result), _time_text(now), key, worker, attempt],
            ).rowcount
        return changed == 1

    def get_gate_job(self, key: str) -> GateJob | None:
        """The job for `key`, if any."""
        return self._gate_job(key)

    # -- helpers ----------------------------------------------------------------------

    def _gate_job(self, key: str) -> GateJob | None:
        sql = f"SELECT {_GATE_JOB_COLUMNS} FROM gate_jobs WHERE key = ?"  # noqa: S608 constant
        row = self._connection.execute(sql, [key]).fetchone()
        if row is None:
            return None
        result = row["result"]
        return GateJob(
            str(row["key"]),
            json.loads(row["payload"]),
            str(row["state"]),
            row["worker"],
            int(row["attempts"]),
            _time_value(row["heartbeat_at"]),
            None if result is None else json.loads(result),
            datetime.fromisoformat(str(row["created_at"])),
            _time_value(row["finished_at"]),
        )

    def _lease(self, name: str) -> Lease | None:
        sql = f"SELECT {_LEASE_COLUMNS} FROM leases WHERE name = ?"  # noqa: S608 constant
        row = self._connection.execute(sql, [name]).fetchone()
        return None if row is None else _lease_from_row(row)

    def _chain_tail(self) -> tuple[int, str]:
        row = self._connection.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row["seq"]), str(row["hash"]))

    def _validated_batches(
        self, adapter: TypeAdapter[list[_Row]], sql: str, params: list[object], size: int = 0
    ) -> Iterator[list[_Row]]:
        """Rows SQLite renders as JSON objects, validated a batch at a time in pydantic-core.

        One `validate_json` per batch instead of a dict, two parses and a model per row:
        a long history costs about twice the bare indexed SELECT rather than four times.
        A row that does not decode raises ValueError (`verify` reads row by row instead).
        `size` 0 reads everything as one batch.
        """
        cursor = self._connection.cursor()
        cursor.row_factory = None
        try:
            cursor.execute(sql, params)
            while rows := (cursor.fetchmany(size) if size else cursor.fetchall()):
                yield adapter.validate_json("[" + ",".join(row[0] for row in rows) + "]")
                if not size:
                    break
        except ValidationError as error:
            raise ValueError(f"a stored row does not decode: {_first_line(error)}") from error
        except sqlite3.OperationalError as error:
            if "JSON" not in str(error):
                raise
            raise ValueError(f"a stored row does not decode: {error}") from error
        finally:
            with suppress(sqlite3.ProgrammingError):  # the Store was closed mid-iteration
                cursor.close()

    def _stream(self, sql: str, params: list[object]) -> Iterator[sqlite3.Row]:
        cursor = self._connection.execute(sql, params)
        try:
            while batch := cursor.fetchmany(_FETCH_BATCH):
                yield from batch
        finally:
            with suppress(sqlite3.ProgrammingError):  # the Store was closed mid-iteration
                cursor.close()


def _connect(location: str) -> sqlite3.Connection:
    """A configured, migrated connection; closed again if any of that fails."""
    connection = sqlite3.connect(location, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        _migrate(connection, location)
    except sqlite3.DatabaseError as error:
        connection.close()
        raise StoreError(f"{location}: not a usable qrelease state database ({error})") from error
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, location: str) -> None:
    """Apply each missing migration in its own transaction, refusing a newer schema."""
    while (version := _checked_version(connection, location)) < SCHEMA_VERSION:
        with _immediate(connection):
            if _checked_version(connection, location) != version:
                continue  # another process migrated meanwhile; look again
            for statement in _MIGRATIONS[version]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version + 1:d}")


def _checked_version(connection: sqlite3.Connection, location: str) -> int:
    """The database's schema version, refused when newer than this code knows."""
    version = _user_version(connection)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{location}: schema version {version} is newer than {SCHEMA_VERSION}, the newest "
            "this qrelease knows; upgrade qrelease to use this state"
        )
    return version


def _user_version(connection: sqlite3.Connection) -> int:
    """The `PRAGMA user_version` of the database."""
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """An outermost transaction that holds the write lock from its start."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    try:
        connection.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise


@contextmanager
def _savepoint(connection: sqlite3.Connection) -> Iterator[None]:
    """A nested transaction: rolls back to where it began if the block raises."""
    connection.execute("SAVEPOINT nested")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK TO nested")
        connection.execute("RELEASE nested")
        raise
    connection.execute("RELEASE nested")


_JOB_SELECT = ", ".join(JOB_COLUMNS)
_UPSERT_JOB = (
    f"INSERT INTO quantum_jobs ({_JOB_SELECT}) VALUES ({', '.join('?' * len(JOB_COLUMNS))}) "  # noqa: S608 constant columns
    "ON CONFLICT (env, job_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in JOB_COLUMNS[2:])
)
_JOB_TIMES = frozenset({5, 7, 8})  # created_at, began_at, ended_at


def _job_row(job: QuantumJob) -> list[object]:
    """A job as the values of a `quantum_jobs` row."""
    return [_column_value(getattr(job, name)) for name in JOB_COLUMNS]


def _job_from_row(row: sqlite3.Row) -> QuantumJob:
    """A `quantum_jobs` row read back."""
    return job_from_row([_time_value(v) if i in _JOB_TIMES else v for i, v in enumerate(row)])


def _time_text(moment: datetime) -> str:
    """The stored form of a time: fixed-width UTC ISO 8601, so text order is time order."""
    return as_utc(moment).isoformat(timespec="microseconds")


def _time_value(text: object) -> datetime | None:
    """A stored time read back (None stays None)."""
    return None if text is None else datetime.fromisoformat(str(text))


def _json_text(value: dict[str, Any]) -> str:
    """The stored form of a JSON object (datetimes, enums and models converted as pydantic does)."""
    return json.dumps(to_jsonable_python(value), sort_keys=True, allow_nan=False)


def _json_object(text: object) -> dict[str, Any]:
    """A stored JSON object read back."""
    value = json.loads(str(text))
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _rowid(cursor: sqlite3.Cursor) -> int:
    """The id SQLite gave the row a cursor just inserted."""
    if cursor.lastrowid is None:
        raise StoreError("insert returned no row id")
    return cursor.lastrowid


def _event_row(event: Event) -> tuple[object, ...]:
    """An event as the values of `_INSERT_EVENT`."""
    return (
        event.seq,
        _time_text(event.time),
        event.env,
        event.app,
        event.action,
        event.from_version,
        event.to_version,
        event.revision,
        event.actor,
        event.reason,
        event.outcome,
        json.dumps(event.details, sort_keys=True, ensure_ascii=False, allow_nan=False),
        event.prev_hash,
        event.hash,
    )


def _event_from_row(row: sqlite3.Row) -> Event:
    """A stored event read back; raises ValueError if the row was mangled."""
    fields = dict(zip(row.keys(), row, strict=True))
    fields["time"] = _time_value(fields["time"])
    fields["details"] = _json_object(fields["details"])
    return Event.model_validate(fields)


def _lease_row(lease: Lease) -> list[object]:
    """A lease as the values of its INSERT."""
    return [
        lease.name,
        lease.owner,
        lease.token,
        _time_text(lease.expires_at),
        _time_text(lease.acquired_at),
    ]


def _lease_from_row(row: sqlite3.Row) -> Lease:
    """A stored lease read back."""
    return Lease(
        str(row["name"]),
        str(row["owner"]),
        int(row["token"]),
        datetime.fromisoformat(str(row["expires_at"])),
        datetime.fromisoformat(str(row["acquired_at"])),
    )


def _replica_from_row(row: sqlite3.Row) -> Replica:
    """A stored replica heartbeat read back."""
    serves = row["serves"]
    return Replica(
        str(row["id"]),
        str(row["host"]),
        int(row["pid"]),
        str(row["address"]),
        None if serves is None else tuple(json.loads(serves)),
        datetime.fromisoformat(str(row["started_at"])),
        datetime.fromisoformat(str(row["last_seen"])),
    )


def _observed_row(state: ObservedState) -> tuple[object, ...]:
    """An observed state as the values of `_UPSERT_OBSERVED`."""
    return tuple(_column_value(getattr(state, column)) for column in _OBSERVED_COLUMNS)


def _column_value(value: object) -> object:
    """A field value as SQLite stores it."""
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _run_from_row(row: sqlite3.Row) -> Run:
    """A stored run read back."""
    return Run(
        id=int(row["id"]),
        revision=row["revision"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=_time_value(row["finished_at"]),
        outcome=row["outcome"],
        summary=_json_object(row["summary"]),
    )


def _intent_from_row(row: sqlite3.Row) -> Intent:
    """A stored intent read back."""
    return Intent(
        id=int(row["id"]),
        env=str(row["env"]),
        app=str(row["app"]),
        step=str(row["step"]),
        payload=_json_object(row["payload"]),
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, for a one-line report."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__
