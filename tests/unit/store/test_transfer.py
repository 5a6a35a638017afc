"""Copying a store: everything arrives, hashes kept, and only into an empty store.

SQLite and the in-memory store here; tests/integration/store/test_postgres.py moves a store
to PostgreSQL and back through `qrelease store migrate`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qrelease.model.events import EventDraft
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Health, Sync
from qrelease.store import DB_NAME, StateStore, StoreError, open_store
from qrelease.store.transfer import copy_store

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def fill(store: StateStore) -> None:
    """Observed rows, a finished and an unfinished run, intents with a gap, meta, events."""
    store.put_observed_many(
        [
            ObservedState(env="prod", app="bell", deployed="1.0.0", health=Health.HEALTHY),
            ObservedState(env="dev", app="bell", sync=Sync.OUT_OF_SYNC, updated_at=T0),
        ]
    )
    store.finish_run(store.begin_run("a" * 40, time=T0), "Succeeded", {"n": 1}, time=T0)
    store.begin_run(None, time=T0 + timedelta(minutes=1))
    store.clear_intent(store.put_intent("prod", "bell", "deploy", {}, time=T0))
    store.put_intent("dev", "bell", "switch", {"to": "1.1.0"}, time=T0)
    store.set_meta("last_revision", "b" * 40)
    store.set_meta("quantum_jobs.cursor.azure", '{"offset": 2, "since": "2026-05-01"}')
    store.put_jobs(
        [
            QuantumJob("azure", "j1", "bell", "1.0.0", JobStatus.SUCCEEDED, T0, cost=0.5),
            QuantumJob("prod", "j2", "bell", "1.0.0", JobStatus.WAITING, T0),
        ]
    )
    for index in range(12):
        store.append(
            EventDraft(env="prod", app="bell", action="deploy", details={"i": index, "x": 0.5}),
            time=T0 + timedelta(seconds=index),
        )


def dump(store: StateStore) -> dict[str, Any]:
    return {
        "observed": store.all_observed(),
        "runs": list(store.iter_runs()),
        "intents": store.pending_intents(),
        "meta": store.meta_items(),
        "events": store.events(),
        "jobs": store.jobs("azure") + store.jobs("prod"),
    }


def test_sqlite_to_memory_and_back_keeps_everything(tmp_path: Path) -> None:
    with open_store(tmp_path / "a") as source:
        fill(source)
        original = dump(source)
        memory = open_store("memory:")
        copied = copy_store(source, memory)
    counts = (copied.observed, copied.runs, copied.intents, copied.meta, copied.events)
    assert counts == (2, 2, 1, 2, 12)
    assert copied.jobs == 2
    assert copied.head_hash == original["events"][-1].hash
    assert dump(memory) == original
    assert memory.put_intent("dev", "x", "deploy", {}) == 3  # past the copied ids
    memory.clear_intent(3)
    with open_store(tmp_path / "b") as back:
        copy_store(memory, back)
        assert dump(back) == original
        assert back.begin_run(None) == 3


def test_a_target_holding_anything_is_refused() -> None:
    source = open_store("memory:")
    fill(source)
    target = open_store("memory:")
    target.put_observed(ObservedState(env="qa", app="x"))
    with pytest.raises(StoreError, match=r"not empty \(holds observed rows\)"):
        copy_store(source, target)
    assert target.count_events() == 0 and target.last_run() is None


def test_a_broken_source_chain_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with open_store(tmp_path / "a") as source:
        fill(source)
    with closing(sqlite3.connect(tmp_path / "a" / DB_NAME, isolation_level=None)) as connection:
        connection.execute("DROP TRIGGER events_no_delete")
        connection.execute("DELETE FROM events WHERE seq = 5")
    target = open_store("memory:")
    with open_store(tmp_path / "a") as source, pytest.raises(StoreError, match="missing event"):
        copy_store(source, target)
    assert dump(target) == dump(open_store("memory:"))


def test_a_failure_part_way_leaves_the_target_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = open_store("memory:")
    fill(source)
    with open_store(tmp_path / "target") as target:
        real_append = target.append
        appended: list[int] = []

        def append_then_fail(draft: EventDraft, *, time: datetime | None = None) -> Any:
            if len(appended) == 6:
                raise OSError("disk full")
            appended.append(1)
            return real_append(draft, time=time)

        monkeypatch.setattr(target, "append", append_then_fail)
        with pytest.raises(OSError, match="disk full"):
            copy_store(source, target)
        assert target.count_events() == 0
        assert target.all_observed() == [] and target.last_run() is None
        assert target.meta_items() == {} and target.pending_intents() == []
