"""Moving a controller's state from one store to another (SQLite to PostgreSQL and back).

Outgrowing one machine must not cost the history: auditors still need every event with the
hash it was written with, and the controller still needs what it knew. `copy_store` copies
observed state, runs, intents, meta, the quantum jobs and the audit chain into an empty store in one
transaction, and proves the chain came through unchanged: each event is chained again in
the target and must get back exactly the hash it had, and the target's head must be the
source's head. Anything less and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrelease.model.events import EventDraft
from qrelease.model.observed import ObservedState
from qrelease.store.base import JOB_CURSOR_KEY, StateStore, StoreError

_DRAFT_FIELDS = set(EventDraft.model_fields)


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What one copy moved, and the chain head both stores now share."""

    observed: int
    runs: int
    intents: int
    meta: int
    events: int
    head_hash: str
    jobs: int = 0


def copy_store(source: StateStore, target: StateStore) -> CopyReport:
    """Copy everything in `source` into the empty `target` in one transaction, hashes kept."""
    chain = source.verify()
    if not chain.ok:
        raise StoreError(
            f"{source.location}: the audit chain is broken ({chain.first_break}); "
            "a copy would hide that, so nothing was copied"
        )
    _refuse_unless_empty(target)
    with target.transaction():
        observed = source.all_observed()
        target.put_observed_many(observed)
        runs = 0
        for run in source.iter_runs():
            target.restore_run(run)
            runs += 1
        intents = source.pending_intents()
        for intent in intents:
            target.restore_intent(intent)
        meta = source.meta_items()
        for key, value in meta.items():
            target.set_meta(key, value)
        jobs = 0
        for env in sorted(_job_environments(meta, observed)):
            found = source.jobs(env)
            target.put_jobs(found)
            jobs += len(found)
        events = _copy_chain(source, target)
        copied = target.verify()
        if not copied.ok or copied.head_hash != chain.head_hash:
            raise StoreError(f"{target.location}: the copied chain does not verify; rolled back")
    return CopyReport(len(observed), runs, len(intents), len(meta), events, chain.head_hash, jobs)


def _job_environments(meta: dict[str, str], observed: list[ObservedState]) -> set[str]:
    """Every environment that may have stored jobs: those read (a cursor) or recorded."""
    read = {key.removeprefix(JOB_CURSOR_KEY) for key in meta if key.startswith(JOB_CURSOR_KEY)}
    return read | {state.env for state in observed}


def _copy_chain(source: StateStore, target: StateStore) -> int:
    """Chain every source event again in the target; each must keep its hash."""
    count = 0
    for event in source.iter_events():
        draft = EventDraft.model_validate(event.model_dump(include=_DRAFT_FIELDS))
        copied = target.append(draft, time=event.time)
        if (copied.seq, copied.hash) != (event.seq, event.hash):
            raise StoreError(
                f"{target.location}: event {event.seq} would not keep its hash there "
                "(its details do not survive that store unchanged); nothing was copied"
            )
        count += 1
    return count


def _refuse_unless_empty(target: StateStore) -> None:
    """Refuse a target that holds anything: a copy never merges two histories."""
    held = {
        "events": target.count_events(),
        "observed rows": len(target.all_observed()),
        "runs": 0 if target.last_run() is None else 1,
        "intents": len(target.pending_intents()),
        "meta keys": len(target.meta_items()),
    }
    found = [name for name, count in held.items() if count]
    if found:
        raise StoreError(
            f"{target.location}: not empty (holds {', '.join(found)}); "
            "copy only into a new, empty store"
        )
