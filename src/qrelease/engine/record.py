"""Recording: rows and audit events written together, and every written row told to the sink.

A row and the events that explain it are committed in one transaction, so the store never
shows a state without its reason or an event without its state. Each thread records
through its own store connection.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qrelease.engine.report import RowSink
from qrelease.model.events import Event, EventDraft
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import EventKind, EventOutcome
from qrelease.planning.planner import Action
from qrelease.planning.status import row_of
from qrelease.store.base import StateStore


def draft(
    action: Action,
    kind: EventKind,
    outcome: EventOutcome | str,
    revision: str | None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> EventDraft:
    """An audit event about one action's (env, app) and versions."""
    return EventDraft(
        env=action.env,
        app=action.app,
        action=str(kind),
        from_version=action.from_version,
        to_version=action.to_version,
        revision=revision,
        reason=reason,
        outcome=str(outcome),
        details=details or {},
    )


@dataclass
class Recorder:
    """Writes through one store connection, timestamps with the engine's clock, tells the sink."""

    store: StateStore
    clock: Callable[[], datetime]
    on_row: RowSink | None = None

    def commit(
        self,
        state: ObservedState | None,
        events: Iterable[EventDraft] = (),
        *,
        intent: int | None = None,
        forget: tuple[str, str] | None = None,
    ) -> list[Event]:
        """In one transaction: write `state` (or forget a key), append events, clear an intent."""
        with self.store.transaction():
            if forget is not None:
                self.store.delete_observed(*forget)
            if state is not None:
                self.store.put_observed(state)
            appended = [self.store.append(event, time=self.clock()) for event in events]
            if intent is not None:
                self.store.clear_intent(intent)
        if state is not None and self.on_row is not None:
            self.on_row(row_of(state))
        return appended

    def commit_many(
        self, states: Collection[ObservedState], events: Iterable[EventDraft] = ()
    ) -> list[Event]:
        """Several rows and events in one transaction (a plan's rows); nothing to do, no commit."""
        events = list(events)
        if not states and not events:
            return []
        with self.store.transaction():
            self.store.put_observed_many(states)
            appended = [self.store.append(event, time=self.clock()) for event in events]
        if self.on_row is not None:
            for state in states:
                self.on_row(row_of(state))
        return appended

    def intent(self, action: Action, revision: str) -> int:
        """Announce a rollout before its first side effect."""
        payload = {"from": action.from_version, "to": action.to_version, "revision": revision}
        return self.store.put_intent(action.env, action.app, "deploy", payload, time=self.clock())
