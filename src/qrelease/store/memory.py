"""An in-memory `StateStore` for unit tests of the engine, the planner's callers and promotion.

It fakes our own boundary, never SQLite's: the same chain linking (`store/audit.link`), the
same filters and the same contract tests as the real backends, with everything in dicts
behind one lock. `connect()` returns the same store, so rollout workers on other threads
see and write the same state, as they would through a database.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from qrelease.model.events import GENESIS_HASH, Event, EventDraft
from qrelease.model.jobs import QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.store.audit import ChainReport, ChainVerifier, as_utc, link
from qrelease.store.base import (
    FencedError,
    GateJob,
    HistoryFilter,
    Intent,
    Lease,
    Replica,
    Run,
    StoreError,
    acquired,
    fence_problem,
    renewed,
)


class MemoryStore:
    """Observed state, runs, intents, meta and the audit chain in dicts; thread-safe."""

    location = ":memory:"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._events: list[Event] = []
        self._observed: dict[tuple[str, str], ObservedState] = {}
        self._runs: dict[int, Run] = {}
        self._intents: dict[int, Intent] = {}
        self._meta: dict[str, str] = {}
        self._jobs: dict[tuple[str, str], QuantumJob] = {}
        self._leases: dict[str, Lease] = {}
        self._replicas: dict[str, Replica] = {}
        self._gate_jobs: dict[str, GateJob] = {}
        self._last_run_id = 0
        self._last_intent_id = 0
        self._depth = 0

    def close(self) -> None:
        """Nothing to release."""

    def connect(self) -> Self:
        """The same store: threads share one lock and one set of dicts."""
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: the outermost block restores every table if it raises."""
        with self._lock:
            saved = self._tables() if self._depth == 0 else None
            self._depth += 1
            try:
                yield
            except BaseException:
                if saved is not None:
                    self._restore(saved)
                raise
            finally:
                self._depth -= 1

    # -- audit log --------------------------------------------------------------------

    def append(self, draft: EventDraft, *, time: datetime | None = None) -> Event:
        """Chain `draft` after the newest event."""
        with self._lock:
            tail = self._events[-1] if self._events else None
            event = link(
                draft,
                seq=tail.seq + 1 if tail else 1,
                prev_hash=tail.hash if tail else GENESIS_HASH,
                time=datetime.now(UTC) if time is None else time,
            )
            self._events.append(event)
            return event

    def iter_events(self, **query: Any) -> Iterator[Event]:
        """Matching events (same keywords as `events`)."""
        yield from self.events(**query)

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
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        history = HistoryFilter(
            env,
            app,
            None if since is None else as_utc(since),
            None if until is None else as_utc(until),
            actions,
            after_seq,
            before_seq,
        )
        with self._lock:
            ordered = reversed(self._events) if descending else iter(self._events)
            found = [event for event in ordered if history.matches(event)]
        return found if limit is None else found[:limit]

    def last_event(self, env: str, app: str, action: str | None = None) -> Event | None:
        """The newest event for (env, app), optionally of one action."""
        actions = None if action is None else (action,)
        newest = self.events(env=env, app=app, actions=actions, limit=1, descending=True)
        return newest[0] if newest else None

    def newest_seq(self) -> int:
        """The seq of the newest event (0 for an empty log)."""
        with self._lock:
            return self._events[-1].seq if self._events else 0

    def count_events(self) -> int:
        """How many events the log holds."""
        return len(self._events)

    def verify(
        self,
        *,
        after_seq: int = 0,
        after_hash: str = GENESIS_HASH,
        see: Callable[[int, str], None] | None = None,
    ) -> ChainReport:
        """Check the chain after `after_seq` (whose event's hash is `after_hash`)."""
        with self._lock:
            events = [event for event in self._events if event.seq > after_seq]
        verifier = ChainVerifier(after_seq, after_hash, see)
        for event in events:
            verifier.add(event)
        return verifier.report()

    # -- observed state ---------------------------------------------------------------

    def put_observed(self, state: ObservedState) -> None:
        """Record the latest view of one (env, app)."""
        with self._lock:
            self._observed[state.key] = state

    def put_observed_many(self, states: Collection[ObservedState]) -> None:
        """Record several views at once."""
        with self._lock:
            for state in states:
                self._observed[state.key] = state

    def get_observed(self, env: str, app: str) -> ObservedState | None:
        """The recorded state of one (env, app), if any."""
        return self._observed.get((env, app))

    def all_observed(self) -> list[ObservedState]:
        """Every recorded state, ordered by env then app."""
        return list(self.observed_by_key().values())

    def observed_by_key(self) -> Mapping[tuple[str, str], ObservedState]:
        """Every recorded state by (env, app), in key order."""
        with self._lock:
            return dict(sorted(self._observed.items()))

    def delete_observed(self, env: str, app: str) -> None:
        """Forget one (env, app)."""
        with self._lock:
            self._observed.pop((env, app), None)

    # -- runs, intents, meta ------------------------------------------------------------

    def begin_run(self, revision: str | None, *, time: datetime | None = None) -> int:
        """Record the start of a pass."""
        with self._lock:
            self._last_run_id += 1
            run_id = self._last_run_id
            started = datetime.now(UTC) if time is None else time
            self._runs[run_id] = Run(run_id, revision, started, None, None, {})
            return run_id

    def finish_run(
        self, run_id: int, outcome: str, summary: dict[str, Any], *, time: datetime | None = None
    ) -> None:
        """Record how an unfinished run ended."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.finished_at is not None:
                raise StoreError(f"run {run_id} does not exist or has already finished")
            finished = datetime.now(UTC) if time is None else time
            self._runs[run_id] = Run(
                run_id, run.revision, run.started_at, finished, outcome, copy.deepcopy(summary)
            )

    def last_run(self) -> Run | None:
        """The most recently started run."""
        with self._lock:
            return self._runs[max(self._runs)] if self._runs else None

    def iter_runs(self) -> Iterator[Run]:
        """Every run, oldest first."""
        with self._lock:
            runs = [self._runs[key] for key in sorted(self._runs)]
        yield from runs

    def restore_run(self, run: Run) -> None:
        """Store a copied run under its own id."""
        with self._lock:
            if run.id in self._runs:
                raise StoreError(f"run {run.id} already exists")
            self._runs[run.id] = copy.deepcopy(run)
            self._last_run_id = max(self._last_run_id, run.id)

    def put_intent(
        self,
        env: str,
        app: str,
        step: str,
        payload: dict[str, Any],
        *,
        time: datetime | None = None,
    ) -> int:
        """Announce a side effect."""
        with self._lock:
            self._last_intent_id += 1
            intent_id = self._last_intent_id
            created = datetime.now(UTC) if time is None else time
            self._intents[intent_id] = Intent(
                intent_id, env, app, step, copy.deepcopy(payload), created
            )
            return intent_id

    def clear_intent(self, intent_id: int) -> None:
        """Mark an announced side effect done."""
        with self._lock:
            self._intents.pop(intent_id, None)

    def pending_intents(self) -> list[Intent]:
        """Announced side effects not yet cleared, oldest first."""
        with self._lock:
            return [self._intents[key] for key in sorted(self._intents)]

    def restore_intent(self, intent: Intent) -> None:
        """Store a copied intent under its own id."""
        with self._lock:
            if intent.id in self._intents:
                raise StoreError(f"intent {intent.id} already exists")
            self._intents[intent.id] = copy.deepcopy(intent)
            self._last_intent_id = max(self._last_intent_id, intent.id)

    def put_jobs(self, jobs: Collection[QuantumJob]) -> None:
        """Record jobs as last read from the service (insert, or replace by (env, job id))."""
        with self._lock:
            self._jobs.update((job.key, job) for job in jobs)

    def jobs(
        self,
        env: str,
        app: str | None = None,
        version: str | None = None,
        *,
        since: datetime | None = None,
    ) -> list[QuantumJob]:
        """An environment's stored jobs (of one app, one release, created since), oldest first."""
        with self._lock:
            found = [
                job
                for job in self._jobs.values()
                if job.env == env
                and app in (None, job.app)
                and version in (None, job.version)
                and (since is None or job.created_at >= since)
            ]
        return sorted(found, key=lambda job: (job.created_at, job.job_id))

    def open_jobs(self, env: str, limit: int) -> list[QuantumJob]:
        """Up to `limit` of an environment's jobs that have not ended, oldest created first."""
        return [job for job in self.jobs(env) if not job.status.ended][:limit]

    def prune_jobs(self, env: str, before: datetime) -> int:
        """Forget an environment's jobs created before `before`; returns how many."""
        with self._lock:
            old = [
                key for key, job in self._jobs.items() if key[0] == env and job.created_at < before
            ]
            for key in old:
                del self._jobs[key]
        return len(old)

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key`."""
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`."""
        with self._lock:
            self._meta[key] = value

    def meta_items(self) -> dict[str, str]:
        """Every meta key with its value."""
        with self._lock:
            return dict(sorted(self._meta.items()))

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        """Set `key` to `value` only if it holds `expected` (None: absent)."""
        with self._lock:
            if self._meta.get(key) != expected:
                return False
            self._meta[key] = value
            return True

    # -- helpers ------------------------------------------------------------------------

    # -- leases and replicas ----------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> Lease | None:
        """Take the lease when it is free, expired or already `owner`'s, with a new token."""
        with self._lock:
            lease = acquired(self._leases.get(name), name, owner, ttl, as_utc(now))
            if lease is not None:
                self._leases[name] = lease
            return lease

    def renew_lease(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease | None:
        """Extend a held lease (same token); None when someone acquired it since."""
        with self._lock:
            fresh = renewed(self._leases.get(lease.name), lease, ttl, as_utc(now))
            if fresh is not None:
                self._leases[lease.name] = fresh
            return fresh

    def release_lease(self, lease: Lease) -> bool:
        """Give a held lease up (it expires at once); False when it was no longer held."""
        with self._lock:
            current = self._leases.get(lease.name)
            if fence_problem(current, lease.name, lease.owner, lease.token) or current is None:
                return False
            self._leases[lease.name] = replace(current, expires_at=current.acquired_at)
            return True

    def leases(self) -> list[Lease]:
        """Every lease ever taken, by name."""
        with self._lock:
            return [self._leases[name] for name in sorted(self._leases)]

    def check_fence(self, name: str, owner: str, token: int) -> None:
        """Raise FencedError unless `owner` still holds lease `name` with `token`."""
        with self._lock:
            problem = fence_problem(self._leases.get(name), name, owner, token)
        if problem:
            raise FencedError(problem)

    def heartbeat(self, replica: Replica) -> None:
        """Record that a replica is alive."""
        with self._lock:
            self._replicas[replica.id] = replica

    def replicas(self) -> list[Replica]:
        """Every replica that has beaten, by id."""
        with self._lock:
            return [self._replicas[key] for key in sorted(self._replicas)]

    def forget_replica(self, replica_id: str) -> None:
        """Remove a replica's row."""
        with self._lock:
            self._replicas.pop(replica_id, None)

    # -- gate jobs ------------------------------------------------------------------------

    def enqueue_gate_job(self, key: str, payload: dict[str, Any], now: datetime) -> GateJob:
        """Queue gates for `key` unless a job for it exists; returns the job either way."""
        with self._lock:
            job = self._gate_jobs.get(key)
            if job is None:
                job = GateJob(key, copy.deepcopy(payload), "queued", None, 0, None, None, now, None)
                self._gate_jobs[key] = job
            return job

    def claim_gate_job(
        self, worker: str, now: datetime, stale: timedelta, key: str | None = None
    ) -> GateJob | None:
        """Take the oldest queued job, or a running one silent for `stale` (a new attempt).

        `key` claims that job only (a controller running its own job when no worker did)."""
        with self._lock:
            ready = [
                job
                for job in self._gate_jobs.values()
                if (key in (None, job.key) and job.state == "queued")
                or (
                    key in (None, job.key)
                    and job.state == "running"
                    and job.heartbeat_at is not None
                    and job.heartbeat_at < now - stale
                )
            ]
            if not ready:
                return None
            oldest = min(ready, key=lambda job: (job.created_at, job.key))
            claimed = replace(
                oldest, state="running", worker=worker, attempts=oldest.attempts + 1,
                heartbeat_at=now,
            )  # fmt: skip
            self._gate_jobs[claimed.key] = claimed
            return claimed

    def heartbeat_gate_job(self, key: str, worker: str, attempt: int, now: datetime) -> bool:
        """Say the claimed attempt still runs; False when it was taken again meanwhile."""
        with self._lock:
            job = self._gate_jobs.get(key)
            if job is None or (job.state, job.worker, job.attempts) != ("running", worker, attempt):
                return False
            self._gate_jobs[key] = replace(job, heartbeat_at=now)
            return True

    def finish_gate_job(
        self, key: str, worker: str, attempt: int, result: dict[str, Any], now: datetime
    ) -> bool:
        """Store the result of a claimed attempt; False when it was taken again meanwhile."""
        with self._lock:
            job = self._gate_jobs.get(key)
            if job is None or (job.state, job.worker, job.attempts) != ("running", worker, attempt):
                return False
            self._gate_jobs[key] = replace(
                job, state="done", result=copy.deepcopy(result), finished_at=now
            )
            return True

    def get_gate_job(self, key: str) -> GateJob | None:
        """The job for `key`, if any."""
        with self._lock:
            return self._gate_jobs.get(key)

    def _tables(self) -> tuple[Any, ...]:
        return (
            list(self._events),
            dict(self._observed),
            dict(self._runs),
            dict(self._intents),
            dict(self._meta),
            dict(self._jobs),
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        self._events, self._observed, self._runs, self._intents, self._meta, self._jobs = saved
