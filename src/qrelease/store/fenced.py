"""Writes fenced by leases: a replica records what it did only while it still owns the work.

With several controller replicas on one store, each environment is owned through a lease
(`StateStore.acquire_lease`) whose token grows with every acquisition. The engine of a
replica writes through a `FencedStore`: every write about an environment (observed rows,
audit events, intents, quantum jobs) checks, inside the write's own transaction, that this
replica still holds that environment's lease with the token it acquired, and is stamped
with both (rows' `owner`/`fence`, events' and intents' `lease`). A replica that paused past
its lease's expiry, while another took the environment over, has its next write refused with
`FencedError` and nothing of it is stored. The engine records a row before every rollout
step, so the check also comes right before each side effect.

Reads, runs and meta pass straight through: they are the fleet's, not one environment's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from qrelease.model.events import Event, EventDraft
from qrelease.model.jobs import QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.store.base import FencedError, StateStore


def lease_name(env: str) -> str:
    """The lease that owns an environment."""
    return f"env:{env}"


@dataclass(frozen=True)
class Fence:
    """Who writes (`owner`) and the token it holds for an environment (None: not held)."""

    owner: str
    token_for: Callable[[str], int | None]

    def check(self, store: StateStore, env: str) -> int:
        """The token for `env`, after the store confirmed it is still current."""
        token = self.token_for(env)
        if token is None:
            raise FencedError(f"{self.owner} does not hold the lease of environment {env}")
        store.check_fence(lease_name(env), self.owner, token)
        return token

    def stamp(self, token: int) -> dict[str, Any]:
        """What a fenced record carries."""
        return {"replica": self.owner, "token": token}


class FencedStore:
    """A `StateStore` whose writes about an environment need that environment's lease."""

    def __init__(self, store: StateStore, fence: Fence) -> None:
        self.inner = store
        self.fence = fence
        self.location = store.location

    def __getattr__(self, name: str) -> Any:
        """Everything that is not a fenced write is the inner store's."""
        return getattr(self.inner, name)

    def connect(self) -> FencedStore:
        """Another fenced handle, on another connection of the same store."""
        return FencedStore(self.inner.connect(), self.fence)

    def close(self) -> None:
        """Close the inner handle."""
        self.inner.close()

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
        """The inner store's transaction."""
        with self.inner.transaction():
            yield

    # -- fenced writes ----------------------------------------------------------------

    def append(self, draft: EventDraft, *, time: datetime | None = None) -> Event:
        """Chain an event about an owned environment, stamped with the lease."""
        with self.inner.transaction():
            token = self.fence.check(self.inner, draft.env)
            stamped = draft.model_copy(
                update={"details": {**draft.details, "lease": self.fence.stamp(token)}}
            )
            return self.inner.append(stamped, time=time)

    def put_observed(self, state: ObservedState) -> None:
        """Record a row of an owned environment."""
        self.put_observed_many([state])

    def put_observed_many(self, states: Collection[ObservedState]) -> None:
        """Record rows of owned environments in one commit."""
        if not states:
            return
        with self.inner.transaction():
            tokens = {env: self.fence.check(self.inner, env) for env in {s.env for s in states}}
            self.inner.put_observed_many(
                [
                    s.model_copy(update={"owner": self.fence.owner, "fence": tokens[s.env]})
                    for s in states
                ]
            )

    def put_jobs(self, jobs: Collection[QuantumJob]) -> None:
        """Record the jobs of owned environments (only the lease holder reads a workspace)."""
        if not jobs:
            return
        with self.inner.transaction():
            for env in sorted({job.env for job in jobs}):
                self.fence.check(self.inner, env)
            self.inner.put_jobs(jobs)

    def delete_observed(self, env: str, app: str) -> None:
        """Forget a row of an owned environment."""
        with self.inner.transaction():
            self.fence.check(self.inner, env)
            self.inner.delete_observed(env, app)

    def put_intent(
        self,
        env: str,
        app: str,
        step: str,
        payload: dict[str, Any],
        *,
        time: datetime | None = None,
    ) -> int:
        """Announce a side effect in an owned environment, stamped with the lease."""
        with self.inner.transaction():
            token = self.fence.check(self.inner, env)
            stamped = {**payload, "lease": self.fence.stamp(token)}
            return self.inner.put_intent(env, app, step, stamped, time=time)
