"""The `StateStore` boundary: what the engine, promotion and the surfaces may ask of durable state.

Everything qrelease remembers goes through this Protocol: the observed state of each
(environment, app), the runs of the reconcile pass, the intents a crash may cut short, the
hash-chained audit log and a few meta facts. SQLite (`store/sqlite.py`) is the embedded
default; `store/postgres.py` serves controllers on several machines; `store/memory.py` is
the in-memory fake for unit tests; all three pass the same contract tests. Nothing outside
`store/` names a backend: callers get a store from `open_store` and another connection for
another thread from `connect()`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from qrelease.model.events import GENESIS_HASH, Event, EventDraft
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.store.audit import ChainReport


class StoreError(Exception):
    """The state database cannot be used as asked."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer qrelease whose schema this one does not know."""


class FencedError(StoreError):
    """A write under a lease this replica no longer holds: another replica owns the work now."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Who owns a piece of work (an environment) until when.

    `token` is the fencing token: it grows every time the lease is acquired (by anyone), and
    renewing keeps it. A write made under a lease names its token, and the store refuses it
    once the lease was acquired again, so a replica that paused past its lease's expiry
    cannot act on work another replica has taken over.
    """

    name: str
    owner: str
    token: int
    expires_at: datetime
    acquired_at: datetime


@dataclass(frozen=True, slots=True)
class Replica:
    """One running controller of a fleet that shares a store, as its heartbeat last said.

    `serves` lists the environments on the local venv deployer this replica may deploy
    (their releases live on its disk); None means every environment.
    """

    id: str
    host: str
    pid: int
    address: str
    serves: tuple[str, ...] | None
    started_at: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Run:
    """One reconcile pass as recorded: unfinished while `finished_at` is None."""

    id: int
    revision: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Intent:
    """A side effect that was announced and not yet cleared: the work a crash may have cut."""

    id: int
    env: str
    app: str
    step: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which events a history query selects, and in which order; None means no constraint.

    `since` is inclusive, `until` exclusive; `after_seq` and `before_seq` are exclusive;
    `actions` is a collection of action names (a single name also works).
    """

    env: str | None = None
    app: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    actions: Collection[str] | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    limit: int | None = None
    descending: bool = False

    def action_set(self) -> frozenset[str] | None:
        """The selected action names (a single string counts as one name)."""
        if self.actions is None:
            return None
        return frozenset({self.actions} if isinstance(self.actions, str) else self.actions)

    def matches(self, event: Event) -> bool:
        """True when `event` passes every constraint but the limit and the order."""
        actions = self.action_set()
        return (
            self.env in (None, event.env)
            and self.app in (None, event.app)
            and (self.since is None or event.time >= self.since)
            and (self.until is None or event.time < self.until)
            and (self.after_seq is None or event.seq > self.after_seq)
            and (self.before_seq is None or event.seq < self.before_seq)
            and (actions is None or event.action in actions)
        )


@dataclass(frozen=True, slots=True)
class GateJob:
    """Quantum gates to run for one piece of content, queued for any gate worker.

    `key` is the content key (program, entry, profile, gate spec, seed, qdk version...):
    the same gates of the same content are one job, however many environments or replicas
    ask, and a finished job's `result` answers them all. `state` is queued, running or done;
    a running job whose `heartbeat_at` is older than the caller's staleness bound was left by
    a worker that died, and the next claim takes it again (`attempts` grows, and a worker
    may only heartbeat or finish the attempt it claimed).
    """

    key: str
    payload: dict[str, Any]
    state: str
    worker: str | None
    attempts: int
    heartbeat_at: datetime | None
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


GATE_JOB_STATES = ("queued", "running", "done")


def acquired(
    current: Lease | None, name: str, owner: str, ttl: timedelta, now: datetime
) -> Lease | None:
    """The lease after `owner` asks for it at `now`, or None while someone else holds it.

    Every backend decides with this function under its own lock, so all agree.

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> a = acquired(None, "env:prod", "a", timedelta(seconds=15), t0)
    >>> a.token, acquired(a, "env:prod", "b", timedelta(seconds=15), t0) is None
    (1, True)
    >>> acquired(a, "env:prod", "b", timedelta(seconds=15), t0 + timedelta(seconds=15)).token
    2
    """
    if current is not None and current.owner != owner and current.expires_at > now:
        return None
    token = (current.token if current is not None else 0) + 1
    return Lease(name, owner, token, now + ttl, now)


def renewed(current: Lease | None, lease: Lease, ttl: timedelta, now: datetime) -> Lease | None:
    """The lease extended to `now + ttl`, or None when it was acquired again since `lease`.

    An expired lease nobody took is still the holder's: its token says nobody acted since.
    """
    if current is None or (current.owner, current.token) != (lease.owner, lease.token):
        return None
    return replace(current, expires_at=max(current.expires_at, now + ttl))


def fence_problem(current: Lease | None, name: str, owner: str, token: int) -> str | None:
    """Why a write under (`owner`, `token`) must be refused, or None when the lease allows it."""
    if current is None:
        return f"lease {name} was never taken; {owner} cannot write under token {token}"
    if (current.owner, current.token) != (owner, token):
        return (
            f"lease {name} is held by {current.owner} (token {current.token}) since "
            f"{current.acquired_at.isoformat()}; {owner} (token {token}) lost it"
        )
    return None


JOB_COLUMNS = (
    "env",
    "job_id",
    "app",
    "version",
    "status",
    "created_at",
    "target",
    "began_at",
    "ended_at",
    "cost",
    "currency",
)
"""The columns of the `quantum_jobs` table, in `QuantumJob` field order."""
JOB_CURSOR_KEY = "quantum_jobs.cursor."
"""Meta key prefix of each environment's job-list cursor (JSON: since, offset)."""
ENDED_STATUSES = tuple(str(status) for status in JobStatus if status.ended)


def job_from_row(row: Sequence[Any]) -> QuantumJob:
    """A stored job row (in JOB_COLUMNS order, times already datetimes) as a QuantumJob."""
    env, job_id, app, version, status, created, target, began, ended, cost, currency = row
    return QuantumJob(
        env=str(env),
        job_id=str(job_id),
        app=str(app),
        version=str(version),
        status=JobStatus(status),
        created_at=created,
        target=str(target),
        began_at=began,
        ended_at=ended,
        cost=None if cost is None else float(cost),
        currency=None if currency is None else str(currency),
    )


class StateStore(Protocol):
    """Durable controller state; every backend passes the same contract tests.

    Writes are atomic one by one; `transaction()` groups several into one commit that is
    rolled back whole if the block raises, and nests. `append` chains an event after the
    newest one even when several processes append at once.
    """

    location: str

    def close(self) -> None:
        """Release the connection; closing twice is harmless."""
        ...

    def connect(self) -> StateStore:
        """Another handle on the same state, for another thread (close it there)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes into one commit."""
        ...

    # -- audit log ----------------------------------------------------------------------

    def append(self, draft: EventDraft, *, time: datetime | None = None) -> Event:
        """Chain `draft` after the newest event and store it."""
        ...

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
    ) -> Iterator[Event]:
        """Matching events, streamed in seq order (newest first when `descending`)."""
        ...

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
        """Matching events as a list."""
        ...

    def last_event(self, env: str, app: str, action: str | None = None) -> Event | None:
        """The newest event for (env, app), optionally of one action."""
        ...

    def newest_seq(self) -> int:
        """The seq of the newest event (0 for an empty log)."""
        ...

    def count_events(self) -> int:
        """How many events the log holds."""
        ...

    def verify(
        self,
        *,
        after_seq: int = 0,
        after_hash: str = GENESIS_HASH,
        see: Callable[[int, str], None] | None = None,
    ) -> ChainReport:
        """Check the chain in seq order, from genesis or after an event already verified.

        `see` is called with every event's seq and stored hash as the check streams by.
        """
        ...

    # -- observed state -------------------------------------------------------------------

    def put_observed(self, state: ObservedState) -> None:
        """Record the latest view of one (env, app), replacing the previous."""
        ...

    def put_observed_many(self, states: Collection[ObservedState]) -> None:
        """Record several views in one commit."""
        ...

    def get_observed(self, env: str, app: str) -> ObservedState | None:
        """The recorded state of one (env, app), if any."""
        ...

    def all_observed(self) -> list[ObservedState]:
        """Every recorded state, ordered by env then app."""
        ...

    def observed_by_key(self) -> Mapping[tuple[str, str], ObservedState]:
        """Every recorded state by (env, app); do not modify it."""
        ...

    def delete_observed(self, env: str, app: str) -> None:
        """Forget one (env, app); forgetting an unknown one is harmless."""
        ...

    # -- runs, intents, meta ----------------------------------------------------------------

    def begin_run(self, revision: str | None, *, time: datetime | None = None) -> int:
        """Record the start of a pass; returns the run's id."""
        ...

    def finish_run(
        self, run_id: int, outcome: str, summary: dict[str, Any], *, time: datetime | None = None
    ) -> None:
        """Record how an unfinished run ended."""
        ...

    def last_run(self) -> Run | None:
        """The most recently started run, finished or not."""
        ...

    def iter_runs(self) -> Iterator[Run]:
        """Every run, oldest first (to copy a store)."""
        ...

    def restore_run(self, run: Run) -> None:
        """Store a run copied from another store, keeping its id."""
        ...

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
        ...

    def clear_intent(self, intent_id: int) -> None:
        """Mark an announced side effect done (or undone); clearing twice is harmless."""
        ...

    def pending_intents(self) -> list[Intent]:
        """Announced side effects not yet cleared, oldest first."""
        ...

    def restore_intent(self, intent: Intent) -> None:
        """Store an intent copied from another store, keeping its id."""
        ...

    # -- leases and replicas ----------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> Lease | None:
        """Take the lease when it is free, expired or already `owner`'s, with a new token."""
        ...

    def renew_lease(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease | None:
        """Extend a held lease (same token); None when someone acquired it since."""
        ...

    def release_lease(self, lease: Lease) -> bool:
        """Give a held lease up (it expires at once); False when it was no longer held."""
        ...

    def leases(self) -> list[Lease]:
        """Every lease ever taken, by name."""
        ...

    def check_fence(self, name: str, owner: str, token: int) -> None:
        """Raise FencedError unless `owner` still holds lease `name` with `token`.

        Inside a `transaction()` the check holds until the commit: a takeover waits for it.
        """
        ...

    def heartbeat(self, replica: Replica) -> None:
        """Record that a replica is alive (insert or refresh its row)."""
        ...

    def replicas(self) -> list[Replica]:
        """Every replica that has beaten, by id."""
        ...

    def forget_replica(self, replica_id: str) -> None:
        """Remove a replica's row (it stopped cleanly)."""
        ...

    # -- gate jobs ------------------------------------------------------------------------

    def enqueue_gate_job(self, key: str, payload: dict[str, Any], now: datetime) -> GateJob:
        """Queue gates for `key` unless a job for it exists; returns the job either way."""
        ...

    def claim_gate_job(
        self, worker: str, now: datetime, stale: timedelta, key: str | None = None
    ) -> GateJob | None:
        """Take the oldest queued job, or a running one silent for `stale` (a new attempt).

        `key` claims that job only (a controller running its own job when no worker did)."""
        ...

    def heartbeat_gate_job(self, key: str, worker: str, attempt: int, now: datetime) -> bool:
        """Say the claimed attempt still runs; False when it was taken again meanwhile."""
        ...

    def finish_gate_job(
        self, key: str, worker: str, attempt: int, result: dict[str, Any], now: datetime
    ) -> bool:
        """Store the result of a claimed attempt; False when it was taken again meanwhile."""
        ...

    def get_gate_job(self, key: str) -> GateJob | None:
        """The job for `key`, if any."""
        ...

    # -- quantum jobs of live releases -------------------------------------------------

    def put_jobs(self, jobs: Collection[QuantumJob]) -> None:
        """Record jobs as last read from the service (insert, or replace by (env, job id))."""
        ...

    def jobs(
        self,
        env: str,
        app: str | None = None,
        version: str | None = None,
        *,
        since: datetime | None = None,
    ) -> list[QuantumJob]:
        """An environment's stored jobs (of one app, one release, created since), oldest first."""
        ...

    def open_jobs(self, env: str, limit: int) -> list[QuantumJob]:
        """Up to `limit` of an environment's jobs that have not ended, oldest created first."""
        ...

    def prune_jobs(self, env: str, before: datetime) -> int:
        """Forget an environment's jobs created before `before`; returns how many."""
        ...

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key`, if any."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any previous value."""
        ...

    def meta_items(self) -> dict[str, str]:
        """Every meta key with its value."""
        ...

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        """Set `key` to `value` only if it holds `expected` (None: absent); True if it did."""
        ...
