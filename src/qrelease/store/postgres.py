"""The controller's durable state in PostgreSQL, for controllers that outgrow one machine.

SQLite serves one controller on one host; several controllers (and later gate workers) need
a store they can all reach, with the audit chain still one ordered, gap-free chain. This
module implements the same `StateStore` contract over psycopg 3 and a psycopg_pool
connection pool; it is the only module that imports psycopg.

Stored format, schema version 5 (`schema_version` holds one row per applied migration;
`_MIGRATIONS` lists the steps; each runs in its own transaction while the process holds an
advisory lock, so two processes opening a new database at once migrate it once):

- ``schema_version(version integer PRIMARY KEY, applied_at timestamptz)``.
- ``meta(key text PRIMARY KEY, value text)`` — small facts such as the last applied revision.
- ``observed(env, app, desired, deployed, sync, health, target, availability, message,
  revision, updated_at timestamptz, healthy_since timestamptz, failed_version,
  failed_revision, qir_sha256, physical_qubits integer, rollout, rollout_step,
  rollout_reason, running_target, failure, attempts integer, retry_at timestamptz,
  bake_until timestamptz, previous, owner, fence bigint)`` — one `ObservedState` per row,
  primary key ``(env, app)``; enums stored as their values (version 2 added the bake
  columns, version 3 the lease owner and token).
- ``runs(id bigint identity PRIMARY KEY, revision, started_at timestamptz, finished_at
  timestamptz, outcome, summary jsonb)`` — one row per reconcile pass.
- ``events(seq bigint PRIMARY KEY, time timestamptz, env, app, action, from_version,
  to_version, revision, actor, reason, outcome, details jsonb, prev_hash, hash UNIQUE)`` —
  the audit chain (see `store/audit.py`), indexed by ``(env, seq)``, ``(app, seq)``,
  ``(env, app, seq)`` and ``(time)``. Triggers refuse UPDATE, DELETE and TRUNCATE, and any
  INSERT whose seq and prev_hash do not extend the newest stored event.
- ``chain_head(id boolean PRIMARY KEY CHECK (id), seq bigint, hash text)`` — exactly one row:
  the newest event's seq and hash, advanced by the insert trigger. Every append locks it
  ``FOR UPDATE`` before reading the tail, so appenders in any number of processes queue
  on it and the chain never forks or gaps.
- ``intents(id bigint identity PRIMARY KEY, env, app, step, payload jsonb, created_at
  timestamptz)`` — side effects announced and not yet cleared.
- ``leases(name text PRIMARY KEY, owner, token bigint, expires_at timestamptz, acquired_at
  timestamptz)`` — which replica owns which work, and the fencing token (version 3). A lease
  is decided under ``SELECT … FOR UPDATE`` of its row; a fenced write reads it ``FOR SHARE``
  in its own transaction, so a takeover waits for writes under the old token to commit and
  every later one fails.
- ``replicas(id text PRIMARY KEY, host, pid integer, address, serves jsonb, started_at,
  last_seen)`` — each controller replica's heartbeat (version 3).
- ``gate_jobs(key text PRIMARY KEY, payload jsonb, state, worker, attempts integer,
  heartbeat_at, result jsonb, created_at, finished_at)`` — quantum gates queued for gate
  workers, one job per content key (version 4). Workers claim with ``FOR UPDATE SKIP
  LOCKED``, so several take different jobs at once without waiting on each other.
- ``quantum_jobs(env, job_id, app, version, status, created_at timestamptz, target,
  began_at timestamptz, ended_at timestamptz, cost double precision, currency)`` — the
  quantum jobs of each environment's releases as last read from the workspace
  (`QuantumJob`), primary key ``(env, job_id)``, indexed by release and by creation time
  (version 5).

Every connection sets ``TimeZone`` to UTC, so times read back in UTC; naive datetimes are
refused. An event's `details` is passed through jsonb before it is hashed (jsonb may write a
number differently, e.g. ``1e+16`` as ``10000000000000000``), so what is read back is what
the hash covers. Text cannot hold NUL characters in PostgreSQL; such a value is refused.

Reads name their columns, never ``SELECT *``, so a later migration can add columns.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from qrelease.model.events import GENESIS_HASH, Event, EventDraft
from qrelease.model.jobs import QuantumJob
from qrelease.model.manifest import share_fields_set
from qrelease.model.observed import ObservedState
from qrelease.redaction import redact, redact_url
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

POOL_MAX_SIZE = 8
"""Connections one process keeps at most; a handle borrows one per operation or transaction."""
POOL_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10
_FETCH_BATCH = 500
_MIGRATION_LOCK = 0x71_72_65_6C  # "qrel": the advisory lock key that serialises migrations

_REFUSE = """CREATE FUNCTION qrelease_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
    END $$"""
_EXTEND_CHAIN = f"""CREATE FUNCTION qrelease_extend_chain() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        tail_seq bigint := 0;
        tail_hash text := '{GENESIS_HASH}';
    BEGIN
        PERFORM 1 FROM chain_head FOR UPDATE;
        SELECT seq, hash INTO tail_seq, tail_hash FROM events ORDER BY seq DESC LIMIT 1;
        IF NOT FOUND THEN
            tail_seq := 0;
            tail_hash := '{GENESIS_HASH}';
        END IF;
        IF NEW.seq IS DISTINCT FROM tail_seq + 1 OR NEW.prev_hash IS DISTINCT FROM tail_hash THEN
            RAISE EXCEPTION 'audit event % does not extend the chain (its newest event is %)',
                NEW.seq, tail_seq USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        UPDATE chain_head SET seq = NEW.seq, hash = NEW.hash;
        RETURN NEW;
    END $$"""  # noqa: S608 only the GENESIS_HASH constant is interpolated
_APPEND_ONLY = "'audit events are append-only'"

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE schema_version (
            version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""",
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
        """CREATE TABLE observed (
            env text NOT NULL, app text NOT NULL,
            desired text, deployed text,
            sync text NOT NULL, health text NOT NULL,
            target text, availability text NOT NULL,
            message text NOT NULL, revision text,
            updated_at timestamptz, healthy_since timestamptz,
            failed_version text, failed_revision text,
            qir_sha256 text, physical_qubits integer,
            rollout text, rollout_step text NOT NULL DEFAULT '',
            rollout_reason text NOT NULL DEFAULT '', running_target text,
            failure text, attempts integer NOT NULL DEFAULT 0, retry_at timestamptz,
            PRIMARY KEY (env, app))""",
        """CREATE TABLE runs (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, revision text,
            started_at timestamptz NOT NULL, finished_at timestamptz, outcome text,
            summary jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(summary) = 'object'))""",
        """CREATE TABLE events (
            seq bigint PRIMARY KEY CHECK (seq > 0), time timestamptz NOT NULL,
            env text NOT NULL, app text NOT NULL, action text NOT NULL,
            from_version text, to_version text, revision text,
            actor text NOT NULL, reason text NOT NULL, outcome text NOT NULL,
            details jsonb NOT NULL,
            prev_hash text NOT NULL, hash text NOT NULL UNIQUE)""",
        "CREATE INDEX events_by_env ON events (env, seq)",
        "CREATE INDEX events_by_app ON events (app, seq)",
        "CREATE INDEX events_by_env_app ON events (env, app, seq)",
        "CREATE INDEX events_by_time ON events (time)",
        """CREATE TABLE chain_head (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            seq bigint NOT NULL, hash text NOT NULL)""",
        f"INSERT INTO chain_head (seq, hash) VALUES (0, '{GENESIS_HASH}')",  # noqa: S608 a constant
        _REFUSE,
        _EXTEND_CHAIN,
        f"""CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION qrelease_refuse({_APPEND_ONLY})""",
        f"""CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION qrelease_refuse({_APPEND_ONLY})""",
        """CREATE TRIGGER events_extend_chain BEFORE INSERT ON events
            FOR EACH ROW EXECUTE FUNCTION qrelease_extend_chain()""",
        """CREATE TRIGGER chain_head_kept BEFORE DELETE ON chain_head
            FOR EACH ROW EXECUTE FUNCTION qrelease_refuse('the chain head row must stay')""",
        """CREATE TABLE intents (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            env text NOT NULL, app text NOT NULL, step text NOT NULL,
            payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
            created_at timestamptz NOT NULL)""",
    ),
    (
        "ALTER TABLE observed ADD COLUMN bake_until timestamptz",
        "ALTER TABLE observed ADD COLUMN previous text",
    ),
    (
        "ALTER TABLE observed ADD COLUMN owner text",
        "ALTER TABLE observed ADD COLUMN fence bigint",
        """CREATE TABLE leases (
            name text PRIMARY KEY, owner text NOT NULL, token bigint NOT NULL,
            expires_at timestamptz NOT NULL, acquired_at timestamptz NOT NULL)""",
        """CREATE TABLE replicas (
            id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL,
            address text NOT NULL,
            serves jsonb CHECK (serves IS NULL OR jsonb_typeof(serves) = 'array'),
            started_at timestamptz NOT NULL, last_seen timestamptz NOT NULL)""",
    ),
    (
        """CREATE TABLE gate_jobs (
            key text PRIMARY KEY,
            payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
            state text NOT NULL CHECK (state IN ('queued', 'running', 'done')),
            worker text, attempts integer NOT NULL DEFAULT 0, heartbeat_at timestamptz,
            result jsonb CHECK (result IS NULL OR jsonb_typeof(result) = 'object'),
            created_at timestamptz NOT NULL, finished_at timestamptz)""",
        "CREATE INDEX gate_jobs_waiting ON gate_jobs (state, created_at)",
    ),
    (
        """CREATE TABLE quantum_jobs (
            env text NOT NULL, job_id text NOT NULL,
            app text NOT NULL, version text NOT NULL, status text NOT NULL,
            created_at timestamptz NOT NULL, target text NOT NULL DEFAULT '',
            began_at timestamptz, ended_at timestamptz,
            cost double precision, currency text,
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
_EVENT_JSON = "json_build_object({})::text".format(  # one event row as JSON text
    ", ".join(f"'{name}', {name}" for name in _EVENT_COLUMNS.split(", "))
)
_EVENT_LIST = TypeAdapter(list[Event])
_JOB_SELECT = ", ".join(JOB_COLUMNS)
_UPSERT_JOB = (
    f"INSERT INTO quantum_jobs ({_JOB_SELECT}) VALUES ({', '.join(['%s'] * len(JOB_COLUMNS))}) "  # noqa: S608 constant columns
    "ON CONFLICT (env, job_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in JOB_COLUMNS[2:])
)
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})"  # noqa: S608 constant column list
_OBSERVED_COLUMNS = tuple(ObservedState.model_fields)
_OBSERVED_JSON = "json_build_object({})::text".format(
    ", ".join(f"'{name}', {name}" for name in _OBSERVED_COLUMNS)
)
_OBSERVED_LIST = TypeAdapter(list[ObservedState])
_UPSERT_OBSERVED = (
    f"INSERT INTO observed ({', '.join(_OBSERVED_COLUMNS)}) "  # noqa: S608 constant column list
    f"VALUES ({', '.join(['%s'] * len(_OBSERVED_COLUMNS))}) ON CONFLICT (env, app) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _OBSERVED_COLUMNS[2:])
)
_GATE_JOB_COLUMNS = (
    "key, payload, state, worker, attempts, heartbeat_at, result, created_at, finished_at"
)
_LEASE_COLUMNS = "name, owner, token, expires_at, acquired_at"
_REPLICA_COLUMNS = "id, host, pid, address, serves, started_at, last_seen"
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
"""A placeholder lease row (token 0) expired at this time: never taken."""
_RUN_COLUMNS = "id, revision, started_at, finished_at, outcome, summary"
_INTENT_COLUMNS = "id, env, app, step, payload, created_at"
_Row = TypeVar("_Row", Event, ObservedState)
_cursor_names = itertools.count(1)


def _history_sql(history: HistoryFilter, columns: str = _EVENT_COLUMNS) -> tuple[str, list[object]]:
    """The parameterised SELECT of `columns` for a history filter."""
    bounds: list[tuple[str, object]] = [
        ("env = %s", history.env),
        ("app = %s", history.app),
        ("time >= %s", None if history.since is None else as_utc(history.since)),
        ("time < %s", None if history.until is None else as_utc(history.until)),
        ("seq > %s", history.after_seq),
        ("seq < %s", history.before_seq),
    ]
    pairs = [(clause, value) for clause, value in bounds if value is not None]
    clauses, params = [clause for clause, _ in pairs], [value for _, value in pairs]
    actions = history.action_set()
    if actions is not None:
        clauses.append("action = ANY(%s)")
        params.append(sorted(actions))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = " ORDER BY seq DESC" if history.descending else " ORDER BY seq"
    limit = ""
    if history.limit is not None:
        if history.limit < 0:
            raise ValueError(f"limit must not be negative, got {history.limit}")
        limit = " LIMIT %s"
        params.append(history.limit)
    return f"SELECT {columns} FROM events{where}{order}{limit}", params  # noqa: S608 clauses are constants, values bound


class _SharedPool:
    """One connection pool shared by a store and every handle `connect()` made from it."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[TupleRow]]) -> None:
        self.pool = pool
        self._users = 1
        self._lock = threading.Lock()

    def share(self) -> None:
        """Count one more handle; refused once the last handle closed the pool."""
        with self._lock:
            if self._users == 0:
                raise StoreError("the store is closed")
            self._users += 1

    def release(self) -> None:
        """Count one handle less, closing the pool with the last."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.pool.close()


class PostgresStore:
    """The controller's PostgreSQL state (a `StateStore`); open with `PostgresStore.open(url)`.

    A handle belongs to one thread at a time; `connect()` gives another thread its own
    handle on the same pool. Each operation borrows a pooled connection; a `transaction()`
    keeps one for its whole block.
    """

    def __init__(self, shared: _SharedPool, location: str) -> None:
        self._shared = shared
        self.location = location
        self._pinned: psycopg.Connection[TupleRow] | None = None
        self._closed = False

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        """Connect to the database at `url`, migrate it, and start the connection pool."""
        location = redact_url(url)
        with (
            _unusable_as_store_error(url, location),
            psycopg.connect(url, **_connect_options(url)) as connection,
        ):
            _configure(connection)
            _migrate(connection, location)
        pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            url,
            kwargs=_connect_options(url),
            min_size=1,
            max_size=POOL_MAX_SIZE,
            timeout=POOL_TIMEOUT_SECONDS,
            configure=_configure,
            check=ConnectionPool.check_connection,
            name=f"qrelease {location}",
            open=True,
        )
        return cls(_SharedPool(pool), location)

    def close(self) -> None:
        """Give this handle's share of the pool back; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._shared.release()

    def connect(self) -> PostgresStore:
        """Another handle on the same pool, for another thread (close it there)."""
        self._shared.share()
        return PostgresStore(self._shared, self.location)

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
        """The schema version of the database."""
        with self._connection() as connection:
            return _schema_version(connection)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit, rolled back whole if the block raises; nests."""
        if self._closed:
            raise StoreError(f"{self.location}: the store is closed")
        if self._pinned is not None:
            with self._pinned.transaction():  # a savepoint inside the outer block
                yield
            return
        with self._shared.pool.connection() as connection:
            self._pinned = connection
            try:
                with connection.transaction():
                    yield
            finally:
                self._pinned = None

    # -- audit events -----------------------------------------------------------------

    def append(self, draft: EventDraft, *, time: datetime | None = None) -> Event:
        """Chain `draft` after the newest event (at `time`, default now) and store it."""
        moment = datetime.now(UTC) if time is None else time
        with self.transaction():
            connection = self._held()
            if draft.details:
                draft = draft.model_copy(update={"details": _through_jsonb(connection, draft)})
            row = connection.execute("SELECT seq, hash FROM chain_head FOR UPDATE").fetchone()
            if row is None:
                raise StoreError(f"{self.location}: the chain_head row is missing")
            event = link(draft, seq=int(row[0]) + 1, prev_hash=str(row[1]), time=moment)
            connection.execute(_INSERT_EVENT, _event_row(event))
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
        for batch in self._validated_batches(_EVENT_LIST, *_history_sql(history, _EVENT_JSON)):
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
        return list(
            self.iter_events(
                app=app,
                env=env,
                since=since,
                until=until,
                actions=actions,
                after_seq=after_seq,
                before_seq=before_seq,
                limit=limit,
                descending=descending,
            )
        )

    def last_event(self, env: str, app: str, action: str | None = None) -> Event | None:
        """The newest event for (env, app), optionally of one action."""
        actions = None if action is None else (action,)
        newest = self.events(env=env, app=app, actions=actions, limit=1, descending=True)
        return newest[0] if newest else None

    def newest_seq(self) -> int:
        """The seq of the newest event (0 for an empty log)."""
        return self._number("SELECT COALESCE(max(seq), 0) FROM events")

    def count_events(self) -> int:
        """How many events the log holds."""
        return self._number("SELECT count(*) FROM events")

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
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > %s ORDER BY seq"  # noqa: S608 constant
        names = _EVENT_COLUMNS.split(", ")
        for row in self._stream(sql, [after_seq]):
            if verifier.add_row(tuple(row)):
                continue
            fields = dict(zip(names, row, strict=True))
            try:
                verifier.add(Event.model_validate(fields))
            except (ValueError, TypeError) as error:
                verifier.add_unreadable(int(fields["seq"]), fields["hash"], _first_line(error))
        return verifier.report()

    # -- observed state ---------------------------------------------------------------

    def put_observed(self, state: ObservedState) -> None:
        """Record the controller's latest view of one (env, app), replacing the previous."""
        self.put_observed_many([state])

    def put_observed_many(self, states: Collection[ObservedState]) -> None:
        """Record several views in one commit."""
        if not states:
            return
        rows = [_observed_row(state) for state in states]
        with self.transaction(), self._held().cursor() as cursor:
            cursor.executemany(_UPSERT_OBSERVED, rows)

    def get_observed(self, env: str, app: str) -> ObservedState | None:
        """The recorded state of one (env, app), if any."""
        sql = f"SELECT {_OBSERVED_JSON} FROM observed WHERE env = %s AND app = %s"  # noqa: S608 constant
        found = [
            s for batch in self._validated_batches(_OBSERVED_LIST, sql, [env, app]) for s in batch
        ]
        return found[0] if found else None

    def all_observed(self) -> list[ObservedState]:
        """Every recorded (env, app) state, ordered by env then app."""
        return list(self.observed_by_key().values())

    def observed_by_key(self) -> Mapping[tuple[str, str], ObservedState]:
        """Every recorded state by (env, app), in env then app order (read on every call)."""
        sql = f"SELECT {_OBSERVED_JSON} FROM observed ORDER BY env, app"  # noqa: S608 constant
        states = (s for batch in self._validated_batches(_OBSERVED_LIST, sql, []) for s in batch)
        return {(s.env, s.app): s for s in share_fields_set(states)}

    def delete_observed(self, env: str, app: str) -> None:
        """Forget one (env, app); forgetting an unknown one is harmless."""
        self._write("DELETE FROM observed WHERE env = %s AND app = %s", [env, app])

    # -- runs -------------------------------------------------------------------------

    def begin_run(self, revision: str | None, *, time: datetime | None = None) -> int:
        """Record the start of a reconcile pass over `revision`; returns the run's id."""
        started = as_utc(time or datetime.now(UTC))
        return self._inserted_id(
            "INSERT INTO runs (revision, started_at) VALUES (%s, %s) RETURNING id",
            [revision, started],
        )

    def finish_run(
        self, run_id: int, outcome: str, summary: dict[str, Any], *, time: datetime | None = None
    ) -> None:
        """Record how an unfinished run ended."""
        finished = as_utc(time or datetime.now(UTC))
        changed = self._write(
            "UPDATE runs SET finished_at = %s, outcome = %s, summary = %s "
            "WHERE id = %s AND finished_at IS NULL",
            [finished, outcome, _jsonb(summary), run_id],
        )
        if changed != 1:
            raise StoreError(f"run {run_id} does not exist or has already finished")

    def last_run(self) -> Run | None:
        """The most recently started run, finished or not."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1"  # noqa: S608 constant
        with self._connection() as connection:
            row = connection.execute(sql).fetchone()
        return None if row is None else _run_from_row(row)

    def iter_runs(self) -> Iterator[Run]:
        """Every run, oldest first."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id"  # noqa: S608 constant
        for row in self._stream(sql, []):
            yield _run_from_row(row)

    def restore_run(self, run: Run) -> None:
        """Store a run copied from another store, keeping its id."""
        finished = None if run.finished_at is None else as_utc(run.finished_at)
        with self.transaction():
            self._held().execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",  # noqa: S608 constant
                [
                    run.id,
                    run.revision,
                    as_utc(run.started_at),
                    finished,
                    run.outcome,
                    _jsonb(run.summary),
                ],
            )
            _advance_identity(self._held(), "runs")

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
        created = as_utc(time or datetime.now(UTC))
        return self._inserted_id(
            "INSERT INTO intents (env, app, step, payload, created_at) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [env, app, step, _jsonb(payload), created],
        )

    def clear_intent(self, intent_id: int) -> None:
        """Mark an announced side effect done (or undone); clearing twice is harmless."""
        self._write("DELETE FROM intents WHERE id = %s", [intent_id])

    def pending_intents(self) -> list[Intent]:
        """Announced side effects not yet cleared, oldest first."""
        sql = f"SELECT {_INTENT_COLUMNS} FROM intents ORDER BY id"  # noqa: S608 constant
        with self._connection() as connection:
            rows = connection.execute(sql).fetchall()
        return [_intent_from_row(row) for row in rows]

    def restore_intent(self, intent: Intent) -> None:
        """Store an intent copied from another store, keeping its id."""
        with self.transaction():
            self._held().execute(
                f"INSERT INTO intents ({_INTENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",  # noqa: S608 constant
                [
                    intent.id,
                    intent.env,
                    intent.app,
                    intent.step,
                    _jsonb(intent.payload),
                    as_utc(intent.created_at),
                ],
            )
            _advance_identity(self._held(), "intents")

    # -- quantum jobs -----------------------------------------------------------------

    def put_jobs(self, jobs: Collection[QuantumJob]) -> None:
        """Record jobs as last read from the service (insert, or replace by (env, job id))."""
        if not jobs:
            return
        rows = [[_job_value(getattr(job, name)) for name in JOB_COLUMNS] for job in jobs]
        with self.transaction(), self._held().cursor() as cursor:
            cursor.executemany(_UPSERT_JOB, rows)

    def jobs(
        self,
        env: str,
        app: str | None = None,
        version: str | None = None,
        *,
        since: datetime | None = None,
    ) -> list[QuantumJob]:
        """An environment's stored jobs (of one app, one release, created since), oldest first."""
        where: list[str] = ["env = %s"]
        params: list[object] = [env]
        for column, value in (("app", app), ("version", version)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("created_at >= %s")
            params.append(as_utc(since))
        condition = " AND ".join(where)
        order = "ORDER BY created_at, job_id"
        sql = f"SELECT {_JOB_SELECT} FROM quantum_jobs WHERE {condition} {order}"  # noqa: S608 constant columns
        with self._connection() as connection:
            return [job_from_row(row) for row in connection.execute(sql, params).fetchall()]

    def open_jobs(self, env: str, limit: int) -> list[QuantumJob]:
        """Up to `limit` of an environment's jobs that have not ended, oldest created first."""
        sql = (
            f"SELECT {_JOB_SELECT} FROM quantum_jobs WHERE env = %s AND NOT (status = ANY(%s)) "  # noqa: S608 constant columns
            "ORDER BY created_at, job_id LIMIT %s"
        )
        with self._connection() as connection:
            rows = connection.execute(sql, [env, list(ENDED_STATUSES), limit]).fetchall()
        return [job_from_row(row) for row in rows]

    def prune_jobs(self, env: str, before: datetime) -> int:
        """Forget an environment's jobs created before `before`; returns how many."""
        return self._write(
            "DELETE FROM quantum_jobs WHERE env = %s AND created_at < %s", [env, as_utc(before)]
        )

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key`, if any."""
        with self._connection() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = %s", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any previous value."""
        self._write(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def meta_items(self) -> dict[str, str]:
        """Every meta key with its value."""
        with self._connection() as connection:
            rows = connection.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        return {str(key): str(value) for key, value in rows}

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        """Set `key` to `value` only if it holds `expected` (None: absent); True if it did.

        Under READ COMMITTED the UPDATE re-checks its WHERE on the row it locked, so two
        controllers swapping the same value cannot both win.
        """
        if expected is None:
            sql = "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"
            return self._write(sql, [key, value]) == 1
        sql = "UPDATE meta SET value = %s WHERE key = %s AND value = %s"
        return self._write(sql, [value, key, expected]) == 1

    # -- leases and replicas ----------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> Lease | None:
        """Take the lease when it is free, expired or already `owner`'s, with a new token."""
        with self.transaction():
            connection = self._held()
            connection.execute(
                "INSERT INTO leases (name, owner, token, expires_at, acquired_at) "
                "VALUES (%s, '', 0, %s, %s) ON CONFLICT (name) DO NOTHING",
                [name, _NEVER, _NEVER],
            )
            current = self._lease(connection, name, "FOR UPDATE")
            lease = acquired(
                current if current and current.token else None, name, owner, ttl, as_utc(now)
            )
            if lease is not None:
                connection.execute(
                    "UPDATE leases SET owner = %s, token = %s, expires_at = %s, acquired_at = %s "
                    "WHERE name = %s",
                    [lease.owner, lease.token, lease.expires_at, lease.acquired_at, name],
                )
        return lease

    def renew_lease(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease | None:
        """Extend a held lease (same token); None when someone acquired it since."""
        with self.transaction():
            connection = self._held()
            fresh = renewed(
                self._lease(connection, lease.name, "FOR UPDATE"), lease, ttl, as_utc(now)
            )
            if fresh is not None:
                connection.execute(
                    "UPDATE leases SET expires_at = %s WHERE name = %s",
                    [fresh.expires_at, fresh.name],
                )
        return fresh

    def release_lease(self, lease: Lease) -> bool:
        """Give a held lease up (it expires at once); False when it was no longer held."""
        changed = self._write(
            "UPDATE leases SET expires_at = acquired_at WHERE name = %s AND owner = %s "
            "AND token = %s",
            [lease.name, lease.owner, lease.token],
        )
        return changed == 1

    def leases(self) -> list[Lease]:
        """Every lease ever taken, by name."""
        sql = f"SELECT {_LEASE_COLUMNS} FROM leases WHERE token > 0 ORDER BY name"  # noqa: S608 constant
        with self._connection() as connection:
            return [_lease_from_row(row) for row in connection.execute(sql).fetchall()]

    def check_fence(self, name: str, owner: str, token: int) -> None:
        """Raise FencedError unless `owner` still holds lease `name` with `token`.

        The lease row is read FOR SHARE: inside a transaction, a takeover (which updates the
        row) waits until this transaction commits.
        """
        with self.transaction():
            current = self._lease(self._held(), name, "FOR SHARE")
        problem = fence_problem(current if current and current.token else None, name, owner, token)
        if problem:
            raise FencedError(problem)

    def heartbeat(self, replica: Replica) -> None:
        """Record that a replica is alive (insert or refresh its row)."""
        serves = None if replica.serves is None else Jsonb(list(replica.serves))
        self._write(
            f"INSERT INTO replicas ({_REPLICA_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "  # noqa: S608 constant
            "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
            "address = excluded.address, serves = excluded.serves, "
            "started_at = excluded.started_at, last_seen = excluded.last_seen",
            [
                replica.id,
                replica.host,
                replica.pid,
                replica.address,
                serves,
                as_utc(replica.started_at),
                as_utc(replica.last_seen),
            ],
        )

    def replicas(self) -> list[Replica]:
        """Every replica that has beaten, by id."""
        sql = f"SELECT {_REPLICA_COLUMNS} FROM replicas ORDER BY id"  # noqa: S608 constant
        with self._connection() as connection:
            return [_replica_from_row(row) for row in connection.execute(sql).fetchall()]

    def forget_replica(self, replica_id: str) -> None:
        """Remove a replica's row (it stopped cleanly)."""
        self._write("DELETE FROM replicas WHERE id = %s", [replica_id])

    # -- gate jobs ------------------------------------------------------------------------

    def enqueue_gate_job(self, key: str, payload: dict[str, Any], now: datetime) -> GateJob:
        """Queue gates for `key` unless a job for it exists; returns the job either way."""
        with self.transaction():
            connection = self._held()
            connection.execute(
                "INSERT INTO gate_jobs (key, payload, state, created_at) "
                "VALUES (%s, %s, 'queued', %s) ON CONFLICT (key) DO NOTHING",
                [key, _jsonb(payload), as_utc(now)],
            )
            job = self._gate_job(connection, key)
        assert job is not None
        return job

    def claim_gate_job(
        self, worker: str, now: datetime, stale: timedelta, key: str | None = None
    ) -> GateJob | None:
        """Take the oldest queued job, or a running one silent for `stale` (a new attempt).

        `key` claims that job only (a controller running its own job when no worker did).

        ``FOR UPDATE SKIP LOCKED``: a job another worker is claiming right now is passed over.
        """
        with self.transaction():
            connection = self._held()
            row = connection.execute(
                "SELECT key FROM gate_jobs WHERE (%s::text IS NULL OR key = %s) AND "
                "(state = 'queued' OR (state = 'running' AND heartbeat_at < %s)) "
                "ORDER BY created_at, key LIMIT 1 FOR UPDATE SKIP LOCKED",
                [key, key, as_utc(now - stale)],
            ).fetchone()
            if row is None:
                return None
            connection.execute(
                "UPDATE gate_jobs SET state = 'running', worker = %s, attempts = attempts + 1, "
                "heartbeat_at = %s WHERE key = %s",
                [worker, as_utc(now), row[0]],
            )
            return self._gate_job(connection, str(row[0]))

    def heartbeat_gate_job(self, key: str, worker: str, attempt: int, now: datetime) -> bool:
        """Say the claimed attempt still runs; False when it was taken again meanwhile."""
        changed = self._write(
            "UPDATE gate_jobs SET heartbeat_at = %s WHERE key = %s AND state = 'running' "
            "AND worker = %s AND attempts = %s",
            [as_utc(now), key, worker, attempt],
        )
        return changed == 1

    def finish_gate_job(
        self, key: str, worker: str, attempt: int, result: dict[str, Any], now: datetime
    ) -> bool:
        """Store the result of a claimed attempt; False when it was taken again meanwhile."""
        changed = self._write(
            "UPDATE gate_jobs SET state = 'done', result = %s, finished_at = %s "
            "WHERE key = %s AND state = 'running' AND worker = %s AND attempts = %s",
            [_jsonb(result), as_utc(now), key, worker, attempt],
        )
        return changed == 1

    def get_gate_job(self, key: str) -> GateJob | None:
        """The job for `key`, if any."""
        with self._connection() as connection:
            return self._gate_job(connection, key)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _gate_job(connection: psycopg.Connection[TupleRow], key: str) -> GateJob | None:
        sql = f"SELECT {_GATE_JOB_COLUMNS} FROM gate_jobs WHERE key = %s"  # noqa: S608 constant
        row = connection.execute(sql, [key]).fetchone()
        if row is None:
            return None
        key_, payload, state, worker, attempts, heartbeat, result, created, finished = row
        return GateJob(
            str(key_),
            _object(payload),
            str(state),
            worker,
            int(attempts),
            heartbeat,
            None if result is None else _object(result),
            created,
            finished,
        )

    @staticmethod
    def _lease(connection: psycopg.Connection[TupleRow], name: str, lock: str) -> Lease | None:
        sql = f"SELECT {_LEASE_COLUMNS} FROM leases WHERE name = %s {lock}"  # noqa: S608 constants
        row = connection.execute(sql, [name]).fetchone()
        return None if row is None else _lease_from_row(row)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """The transaction's connection, else one borrowed for this read (committed after)."""
        if self._closed:
            raise StoreError(f"{self.location}: the store is closed")
        if self._pinned is not None:
            yield self._pinned
            return
        with self._shared.pool.connection() as connection:
            yield connection

    def _held(self) -> psycopg.Connection[TupleRow]:
        """The connection of the transaction in progress."""
        if self._pinned is None:
            raise StoreError("no transaction in progress")
        return self._pinned

    def _write(self, sql: str, params: list[object]) -> int:
        """Run one statement in a transaction; returns how many rows it changed."""
        with self.transaction():
            return self._held().execute(sql, params).rowcount

    def _inserted_id(self, sql: str, params: list[object]) -> int:
        """Run an INSERT ... RETURNING id in a transaction; returns the id."""
        with self.transaction():
            row = self._held().execute(sql, params).fetchone()
        if row is None:
            raise StoreError("insert returned no row id")
        return int(row[0])

    def _number(self, sql: str) -> int:
        """The one integer a query returns."""
        with self._connection() as connection:
            row = connection.execute(sql).fetchone()
        if row is None:
            raise StoreError(f"{sql!r} returned no row")
        return int(row[0])

    def _stream(self, sql: str, params: list[object]) -> Iterator[TupleRow]:
        """Rows through a server-side cursor, a batch at a time."""
        with self._connection() as connection, connection.transaction():
            name = f"qrelease_{next(_cursor_names)}"
            with connection.cursor(name=name) as cursor:
                cursor.itersize = _FETCH_BATCH
                cursor.execute(sql, params)
                while batch := cursor.fetchmany(_FETCH_BATCH):
                    yield from batch

    def _validated_batches(
        self, adapter: TypeAdapter[list[_Row]], sql: str, params: list[object]
    ) -> Iterator[list[_Row]]:
        """Rows PostgreSQL renders as JSON objects, validated a batch at a time by pydantic."""
        rows: list[TupleRow] = []
        try:
            for row in self._stream(sql, params):
                rows.append(row)
                if len(rows) == _FETCH_BATCH:
                    yield adapter.validate_json("[" + ",".join(r[0] for r in rows) + "]")
                    rows = []
            if rows:
                yield adapter.validate_json("[" + ",".join(r[0] for r in rows) + "]")
        except ValidationError as error:
            raise ValueError(f"a stored row does not decode: {_first_line(error)}") from error


@contextmanager
def _unusable_as_store_error(url: str, location: str) -> Iterator[None]:
    """Turn a driver error into a StoreError that names the database but no password."""
    try:
        yield
    except psycopg.Error as error:
        reason = redact(_first_line(error), [urlsplit(url).password])
        raise StoreError(f"{location}: not a usable qrelease state database ({reason})") from None


def _connect_options(url: str) -> dict[str, Any]:
    """Connection keywords qrelease adds unless the URL sets them."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    return {} if "connect_timeout" in given else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


def _configure(connection: psycopg.Connection[TupleRow]) -> None:
    """Every connection reads and writes times in UTC."""
    connection.execute("SET TIME ZONE 'UTC'")
    connection.commit()


def _migrate(connection: psycopg.Connection[TupleRow], location: str) -> None:
    """Apply each missing migration in its own transaction, one process at a time.

    The advisory lock is a session lock taken before the transactions that read the
    version: a transaction that waited for a lock may keep reading the catalog as it was
    before the wait, and then miss a table another process just created.
    """
    if _checked_version(connection, location) >= SCHEMA_VERSION:
        connection.commit()
        return
    connection.rollback()
    connection.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
    connection.commit()
    try:
        while (version := _checked_version(connection, location)) < SCHEMA_VERSION:
            connection.commit()
            with connection.transaction():
                for statement in _MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_version (version) VALUES (%s)", [version + 1]
                )
        connection.commit()
    finally:
        connection.rollback()
        connection.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK])
        connection.commit()


def _checked_version(connection: psycopg.Connection[TupleRow], location: str) -> int:
    """The database's schema version, refused when newer than this code knows."""
    version = _schema_version(connection)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{location}: schema version {version} is newer than {SCHEMA_VERSION}, the newest "
            "this qrelease knows; upgrade qrelease to use this state"
        )
    return version


def _schema_version(connection: psycopg.Connection[TupleRow]) -> int:
    """The newest applied migration (0 for a database qrelease never opened)."""
    row = connection.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    newest = connection.execute("SELECT COALESCE(max(version), 0) FROM schema_version").fetchone()
    return 0 if newest is None else int(newest[0])


def _advance_identity(connection: psycopg.Connection[TupleRow], table: str) -> None:
    """Move a table's id sequence past the ids already in it (after rows with explicit ids)."""
    connection.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 table is a constant of ours
        f"(SELECT max(id) FROM {table}))"
    )


def _through_jsonb(connection: psycopg.Connection[TupleRow], draft: EventDraft) -> dict[str, Any]:
    """An event's details as jsonb will give them back, so its hash covers what is read."""
    text = json.dumps(draft.model_dump(mode="json")["details"], allow_nan=False)
    row = connection.execute("SELECT %s::jsonb", [text]).fetchone()
    if row is None or not isinstance(row[0], dict):
        raise StoreError("event details did not survive jsonb as an object")
    return row[0]


def _jsonb(value: dict[str, Any]) -> Jsonb:
    """A JSON object as a jsonb parameter (datetimes, enums, models converted as pydantic does)."""
    return Jsonb(to_jsonable_python(value))


def _event_row(event: Event) -> tuple[object, ...]:
    """An event as the values of `_INSERT_EVENT`."""
    return (
        event.seq,
        as_utc(event.time),
        event.env,
        event.app,
        event.action,
        event.from_version,
        event.to_version,
        event.revision,
        event.actor,
        event.reason,
        event.outcome,
        Jsonb(event.details),
        event.prev_hash,
        event.hash,
    )


def _observed_row(state: ObservedState) -> tuple[object, ...]:
    """An observed state as the values of `_UPSERT_OBSERVED`."""
    return tuple(_column_value(getattr(state, column)) for column in _OBSERVED_COLUMNS)


def _column_value(value: object) -> object:
    """A field value as PostgreSQL stores it."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _lease_from_row(row: TupleRow) -> Lease:
    """A stored lease read back."""
    name, owner, token, expires_at, acquired_at = row
    return Lease(str(name), str(owner), int(token), expires_at, acquired_at)


def _replica_from_row(row: TupleRow) -> Replica:
    """A stored replica heartbeat read back."""
    replica_id, host, pid, address, serves, started_at, last_seen = row
    listed = None if serves is None else tuple(str(name) for name in serves)
    return Replica(
        str(replica_id), str(host), int(pid), str(address), listed, started_at, last_seen
    )


def _run_from_row(row: TupleRow) -> Run:
    """A stored run read back."""
    run_id, revision, started_at, finished_at, outcome, summary = row
    return Run(int(run_id), revision, started_at, finished_at, outcome, _object(summary))


def _intent_from_row(row: TupleRow) -> Intent:
    """A stored intent read back."""
    intent_id, env, app, step, payload, created_at = row
    return Intent(int(intent_id), str(env), str(app), str(step), _object(payload), created_at)


def _object(value: object) -> dict[str, Any]:
    """A jsonb column that must hold an object."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, for a one-line report."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _job_value(value: object) -> object:
    """A job field as psycopg passes it (enums as their values, times in UTC)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return as_utc(value)
    return value
