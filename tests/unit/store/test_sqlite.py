"""The SQLite store against real database files: schema, state tables, history, transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from qrelease.model.events import EventDraft
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability, Failure, Health, Rollout, Sync
from qrelease.store import HistoryFilter, SchemaTooNewError, StoreError
from qrelease.store import sqlite as store_sqlite
from qrelease.store.sqlite import SCHEMA_VERSION, Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database lives (its folder does not exist yet)."""
    return tmp_path / "state" / "nested" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """An open store on a fresh file."""
    with Store.open(db_path) as opened:
        yield opened


def raw(db_path: Path) -> closing[sqlite3.Connection]:
    """A plain sqlite3 connection to the file, closed on leaving the `with` block."""
    return closing(sqlite3.connect(db_path, isolation_level=None))


def full_state(env: str = "prod", app: str = "bell-service") -> ObservedState:
    """An observed state with every field set."""
    return ObservedState(
        env=env,
        app=app,
        desired="1.1.0",
        deployed="1.0.0",
        sync=Sync.OUT_OF_SYNC,
        health=Health.PROGRESSING,
        target="quantinuum.sim.h2-1e",
        availability=Availability.DEGRADED,
        message="rolling out",
        revision="a" * 40,
        updated_at=T0,
        healthy_since=T0 - timedelta(hours=1),
        failed_version="1.0.1",
        failed_revision="b" * 40,
        qir_sha256="c" * 64,
        physical_qubits=12345,
        rollout=Rollout.FAILED,
        rollout_step="install",
        rollout_reason="wheel source unreachable",
        running_target="ionq.simulator",
        failure=Failure.TRANSIENT,
        attempts=2,
        retry_at=T0 + timedelta(minutes=1),
    )


# -- schema and migrations ---------------------------------------------------------------


def test_open_creates_folders_and_migrates_an_empty_file(db_path: Path) -> None:
    with Store.open(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION
    with raw(db_path) as connection:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"meta", "observed", "runs", "events", "intents"} <= tables
    assert journal_mode == "wal"


def test_reopening_keeps_data_and_does_not_migrate_again(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.put_observed(full_state())
        store.append(EventDraft(env="prod", app="bell-service", action="Deploy"), time=T0)
        store.set_meta("last_revision", "a" * 40)
    with Store.open(db_path) as store:
        assert store.get_observed("prod", "bell-service") == full_state()
        assert store.count_events() == 1
        assert store.get_meta("last_revision") == "a" * 40
        assert store.schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused_with_a_clear_error(db_path: Path) -> None:
    Store.open(db_path).close()
    with raw(db_path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError, match=rf"schema version {SCHEMA_VERSION + 1} is newer"):
        Store.open(db_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite, it is a text file long enough to have a header" * 10)
    with pytest.raises(StoreError, match="not a usable qrelease state database"):
        Store.open(path)


def test_a_failing_migration_leaves_the_previous_version_whole(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_path).close()
    broken = ("CREATE TABLE extra (x TEXT)", "THIS IS NOT SQL")
    monkeypatch.setattr(store_sqlite, "_MIGRATIONS", (*store_sqlite._MIGRATIONS, broken))
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError):
        Store.open(db_path)
    with raw(db_path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        extra = connection.execute("SELECT name FROM sqlite_master WHERE name = 'extra'")
        assert extra.fetchone() is None


def test_a_version_1_database_gains_the_rollout_columns_and_keeps_its_rows(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with raw(db_path) as connection:
        for statement in store_sqlite._MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 1")
        connection.execute(
            "INSERT INTO observed (env, app, desired, deployed, sync, health, target, "
            "availability, message) VALUES ('prod', 'bell', '1.1.0', '1.0.0', 'Synced', "
            "'Healthy', 'ionq.simulator', 'Available', '')"
        )
    with Store.open(db_path) as store:
        state = store.get_observed("prod", "bell")
        assert store.schema_version == SCHEMA_VERSION
    assert state is not None and state.deployed == "1.0.0" and state.health == Health.HEALTHY
    assert (state.rollout, state.rollout_step, state.attempts) == (None, "", 0)
    assert state.running_target == "ionq.simulator"  # the live release's target, kept


def test_observed_columns_cover_every_observed_state_field(store: Store, db_path: Path) -> None:
    with raw(db_path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(observed)")]
    assert columns == list(ObservedState.model_fields)


def test_in_memory_store_works_like_a_file_store() -> None:
    with Store.in_memory() as store:
        store.append(EventDraft(action="Deploy"), time=T0)
        store.put_observed(full_state())
        assert store.verify().ok
        assert store.all_observed() == [full_state()]


def test_a_store_refuses_use_from_another_thread(store: Store) -> None:
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.count_events()
        except sqlite3.ProgrammingError as error:
            errors.append(error)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert len(errors) == 1


# -- observed state ----------------------------------------------------------------------


def test_observed_state_round_trips_every_field(store: Store) -> None:
    store.put_observed(full_state())
    assert store.get_observed("prod", "bell-service") == full_state()
    assert store.get_observed("prod", "unknown") is None


def test_put_observed_replaces_and_delete_forgets(store: Store) -> None:
    store.put_observed(full_state())
    store.put_observed(ObservedState(env="prod", app="bell-service", deployed="1.1.0"))
    store.put_observed(full_state(env="dev"))
    assert store.get_observed("prod", "bell-service") == ObservedState(
        env="prod", app="bell-service", deployed="1.1.0"
    )
    assert [(state.env, state.app) for state in store.all_observed()] == [
        ("dev", "bell-service"),
        ("prod", "bell-service"),
    ]
    store.delete_observed("prod", "bell-service")
    store.delete_observed("prod", "bell-service")
    assert store.get_observed("prod", "bell-service") is None


def test_the_observed_view_is_reread_when_any_connection_writes(
    store: Store, db_path: Path
) -> None:
    store.put_observed(full_state())
    first = store.all_observed()
    assert store.all_observed() == first
    assert store.observed_by_key() is store.observed_by_key()  # unchanged: rows not read again
    with Store.open(db_path) as other:
        other.put_observed(full_state(env="dev"))  # another connection commits
    dev, prod = store.all_observed()
    assert (dev.env, prod.env) == ("dev", "prod")
    assert dev.__pydantic_fields_set__ is prod.__pydantic_fields_set__  # one set, not one each
    with closing(sqlite3.connect(db_path, isolation_level=None)) as connection:
        connection.execute("DELETE FROM observed WHERE env = 'dev'")  # a process outside qrelease
    assert [s.env for s in store.all_observed()] == ["prod"]
    store.put_observed(ObservedState(env="prod", app="bell-service", deployed="9.9.9"))
    assert store.observed_by_key()[("prod", "bell-service")].deployed == "9.9.9"
    with pytest.raises(RuntimeError), store.transaction():
        store.put_observed(full_state(env="qa"))
        raise RuntimeError("rolled back")
    assert [s.env for s in store.all_observed()] == ["prod"]


def test_reading_history_refuses_an_event_row_that_does_not_decode(
    store: Store, db_path: Path
) -> None:
    for index in range(3):
        store.append(EventDraft(env="prod", app="bell", action="Deploy", reason=str(index)))
    with closing(sqlite3.connect(db_path, isolation_level=None)) as connection:
        connection.execute("DROP TRIGGER events_no_update")
        connection.execute("UPDATE events SET details = '[1, 2]' WHERE seq = 2")
    with pytest.raises(ValueError, match="does not decode"):
        store.events(env="prod")
    assert [event.seq for event in store.events(env="prod", before_seq=2)] == [1]
    assert store.verify().first_break is not None


def test_times_are_stored_in_utc_and_naive_times_refused(store: Store) -> None:
    paris_summer = timezone(timedelta(hours=2))
    store.put_observed(ObservedState(env="e", app="a", updated_at=T0.astimezone(paris_summer)))
    read_back = store.get_observed("e", "a")
    assert read_back is not None and read_back.updated_at == T0
    assert read_back.updated_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="no time zone"):
        store.put_observed(ObservedState(env="e", app="a", updated_at=datetime(2024, 5, 1)))


# -- runs, intents, meta -----------------------------------------------------------------


def test_runs_begin_finish_and_last(store: Store) -> None:
    assert store.last_run() is None
    first = store.begin_run("a" * 40, time=T0)
    store.finish_run(
        first, "Succeeded", {"deployed": ["bell-service"]}, time=T0 + timedelta(seconds=3)
    )
    second = store.begin_run(None, time=T0 + timedelta(minutes=1))
    last = store.last_run()
    assert last is not None
    assert (last.id, last.revision, last.finished_at, last.outcome) == (second, None, None, None)
    store.finish_run(second, "Failed", {"error": "gate failed", "at": T0})
    last = store.last_run()
    assert last is not None and last.summary == {
        "error": "gate failed",
        "at": "2024-05-01T12:00:00Z",
    }


def test_finishing_a_run_twice_or_an_unknown_run_is_refused(store: Store) -> None:
    run_id = store.begin_run("a" * 40)
    store.finish_run(run_id, "Succeeded", {})
    with pytest.raises(StoreError, match="already finished"):
        store.finish_run(run_id, "Failed", {})
    with pytest.raises(StoreError, match="does not exist"):
        store.finish_run(run_id + 100, "Failed", {})


def test_intents_survive_reopen_and_ids_are_never_reused(db_path: Path) -> None:
    with Store.open(db_path) as store:
        swap = store.put_intent("prod", "bell-service", "switch", {"to": "1.1.0"}, time=T0)
        cleared = store.put_intent("prod", "other", "install", {"to": "2.0.0"}, time=T0)
        store.clear_intent(cleared)
    with Store.open(db_path) as store:
        pending = store.pending_intents()
        assert [(i.id, i.env, i.app, i.step, i.payload) for i in pending] == [
            (swap, "prod", "bell-service", "switch", {"to": "1.1.0"})
        ]
        assert pending[0].created_at == T0
        store.clear_intent(swap)
        store.clear_intent(swap)
        assert store.pending_intents() == []
        assert store.put_intent("prod", "x", "install", {}) > cleared


def test_meta_set_get_replace(store: Store) -> None:
    assert store.get_meta("last_revision") is None
    store.set_meta("last_revision", "a" * 40)
    store.set_meta("last_revision", "b" * 40)
    assert store.get_meta("last_revision") == "b" * 40


# -- transactions ------------------------------------------------------------------------


def test_a_failed_transaction_leaves_no_event_and_no_observed_change(store: Store) -> None:
    store.put_observed(full_state())
    with pytest.raises(RuntimeError, match="deploy blew up"), store.transaction():
        store.put_observed(ObservedState(env="prod", app="bell-service", deployed="9.9.9"))
        store.append(EventDraft(env="prod", app="bell-service", action="Deploy"))
        raise RuntimeError("deploy blew up")
    assert store.get_observed("prod", "bell-service") == full_state()
    assert store.count_events() == 0
    assert store.append(EventDraft(action="Deploy")).seq == 1


def test_a_transaction_commits_state_and_event_together(db_path: Path) -> None:
    with Store.open(db_path) as store, store.transaction():
        store.put_observed(full_state())
        store.append(EventDraft(env="prod", app="bell-service", action="Deploy"))
    with Store.open(db_path) as store:
        assert store.get_observed("prod", "bell-service") == full_state()
        assert store.count_events() == 1


def test_a_nested_failure_rolls_back_only_the_inner_block(store: Store) -> None:
    with store.transaction():
        store.set_meta("outer", "kept")
        with pytest.raises(KeyError), store.transaction():
            store.set_meta("inner", "dropped")
            raise KeyError("inner")
        store.append(EventDraft(action="Deploy"))
    assert (store.get_meta("outer"), store.get_meta("inner")) == ("kept", None)
    assert store.count_events() == 1


# -- history -----------------------------------------------------------------------------


@pytest.fixture
def history(store: Store) -> Store:
    """A store holding 40 events over 2 envs x 2 apps, one minute apart from T0."""
    with store.transaction():
        for index in range(40):
            store.append(
                EventDraft(
                    env=("dev", "prod")[index % 2],
                    app=("bell", "teleport")[index // 2 % 2],
                    action=("Deploy", "Health", "Rollback", "Deploy")[index % 4],
                    to_version=f"1.0.{index}",
                ),
                time=T0 + timedelta(minutes=index),
            )
    return store


def test_history_filters_by_env_and_app(history: Store) -> None:
    prod = history.events(env="prod")
    assert [event.seq for event in prod] == list(range(2, 41, 2))
    prod_bell = history.events(env="prod", app="bell")
    assert {(event.env, event.app) for event in prod_bell} == {("prod", "bell")}
    assert [event.seq for event in prod_bell] == [2, 6, 10, 14, 18, 22, 26, 30, 34, 38]
    assert len(history.events(app="teleport")) == 20


def test_history_filters_by_time_window_limit_and_order(history: Store) -> None:
    window = history.events(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=15))
    assert [event.seq for event in window] == [11, 12, 13, 14, 15]
    newest = history.events(env="dev", limit=3, descending=True)
    assert [event.seq for event in newest] == [39, 37, 35]
    page = history.events(after_seq=30, limit=2)
    assert [event.seq for event in page] == [31, 32]
    older = history.events(before_seq=5, descending=True)
    assert [event.seq for event in older] == [4, 3, 2, 1]
    since_local = T0.astimezone(timezone(timedelta(hours=-5))) + timedelta(minutes=38)
    assert [event.seq for event in history.events(since=since_local)] == [39, 40]


def test_history_filters_by_action(history: Store) -> None:
    rollbacks = history.events(actions={"Rollback"})
    assert {event.action for event in rollbacks} == {"Rollback"}
    assert len(rollbacks) == 10
    assert len(history.events(actions=["Rollback", "Health"])) == 20
    assert history.events(actions=[]) == []
    assert history.events(actions="Rollback") == rollbacks


def test_last_event_and_count(history: Store) -> None:
    last = history.last_event("prod", "bell")
    assert last is not None and last.seq == 38
    last_deploy = history.last_event("dev", "bell", action="Deploy")
    assert last_deploy is not None and last_deploy.seq == 37
    assert history.last_event("staging", "bell") is None
    assert history.count_events() == 40


def test_iter_events_streams_and_can_stop_early(history: Store) -> None:
    stream = history.iter_events(env="dev")
    assert next(stream).seq == 1
    assert next(stream).seq == 3
    stream.close()
    assert sum(1 for _ in history.iter_events()) == 40


def test_a_negative_limit_is_refused(history: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        history.events(limit=-1)


@pytest.mark.parametrize(
    ("history_filter", "index"),
    [
        (HistoryFilter(env="prod"), "events_by_env"),
        (HistoryFilter(env="prod", descending=True, limit=50), "events_by_env"),
        (HistoryFilter(env="prod", since=T0), "events_by_env"),
        (HistoryFilter(app="bell"), "events_by_app"),
        (HistoryFilter(env="prod", app="bell", actions=["Deploy"]), "events_by_env_app"),
    ],
)
def test_history_queries_use_an_index(
    history: Store, history_filter: HistoryFilter, index: str
) -> None:
    plan = " | ".join(history.query_plan(history_filter))
    assert f"USING INDEX {index}" in plan
    assert "TEMP B-TREE" not in plan


def test_the_observed_mapping_follows_this_connection_and_others(tmp_path: Path) -> None:
    def state(app: str, deployed: str) -> ObservedState:
        return ObservedState(
            env="dev", app=app, deployed=deployed, updated_at=datetime(2026, 1, 1, tzinfo=UTC)
        )

    with Store.open(tmp_path / "db") as store, Store.open(tmp_path / "db") as other:
        store.put_observed_many([state("a", "1"), state("b", "1")])
        first = store.observed_by_key()
        store.put_observed(state("a", "2"))  # applied to a copy; the first mapping is kept
        assert first[("dev", "a")].deployed == "1"
        assert store.observed_by_key()[("dev", "a")].deployed == "2"
        other.put_observed(state("b", "3"))  # another connection: read again
        assert store.observed_by_key()[("dev", "b")].deployed == "3"
        with pytest.raises(RuntimeError), store.transaction():
            store.put_observed(state("a", "9"))
            raise RuntimeError("rolled back")
        assert store.observed_by_key()[("dev", "a")].deployed == "2"
        store.put_observed(state("c", "1"))  # a new key: order kept by reading again
        assert list(store.observed_by_key()) == [("dev", "a"), ("dev", "b"), ("dev", "c")]
        store.delete_observed("dev", "b")
        assert list(store.observed_by_key()) == [("dev", "a"), ("dev", "c")]
        fresh = {(s.env, s.app): s for s in other.all_observed()}
        assert store.observed_by_key() == fresh
