"""The PostgreSQL store against a real embedded server: schema, audit chain, roles, moving over.

The backend-neutral behaviour is in tests/unit/store/test_contract.py; here is what only a
PostgreSQL database shows: migrations under concurrent opens, triggers and privileges that
keep events append-only, one chain under appenders in several processes, jsonb and
timestamptz giving back exactly what was hashed, and `qrelease store migrate` both ways.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors, sql

from qrelease.cli import main
from qrelease.model.events import EventDraft
from qrelease.model.jobs import JobStatus, QuantumJob
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability, Failure, Health, Rollout, Sync
from qrelease.store import SchemaTooNewError, StateStore, StoreError, open_store
from qrelease.store import postgres as store_postgres
from qrelease.store.postgres import SCHEMA_VERSION
from tests.helpers.gitops import GitOpsRepo
from tests.helpers.postgres import PostgresServer

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(postgres_url: str) -> Iterator[StateStore]:
    with open_store(postgres_url) as opened:
        yield opened


def raw(url: str) -> psycopg.Connection[Any]:
    """A plain autocommit connection, as someone bypassing qrelease would use."""
    return psycopg.connect(url, autocommit=True)


def full_state(env: str = "prod", app: str = "bell-service") -> ObservedState:
    return ObservedState(
        env=env,
        app=app,
        desired="1.1.0",
        deployed="1.0.0",
        sync=Sync.OUT_OF_SYNC,
        health=Health.PROGRESSING,
        target="quantinuum.sim.h2-1e",
        availability=Availability.DEGRADED,
        message="rolling out — ünïcode",
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


def chained(store: StateStore, length: int) -> None:
    with store.transaction():
        for index in range(length):
            store.append(
                EventDraft(env="prod", app="bell", action="Deploy", reason=str(index)),
                time=T0 + timedelta(seconds=index),
            )


# -- schema and migrations ---------------------------------------------------------------


def test_open_migrates_a_new_database_once(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        assert getattr(store, "schema_version") == SCHEMA_VERSION  # noqa: B009 not in the Protocol
    with open_store(postgres_url), raw(postgres_url) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_version")]
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert {"meta", "observed", "runs", "events", "chain_head", "intents"} <= tables


def test_columns_are_timestamptz_and_jsonb_and_cover_every_observed_field(
    store: StateStore, postgres_url: str
) -> None:
    with raw(postgres_url) as connection:
        columns = connection.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    types = {(table, column): kind for table, column, kind in columns}
    assert types["events", "time"] == types["observed", "updated_at"] == "timestamp with time zone"
    assert types["events", "details"] == types["runs", "summary"] == "jsonb"
    assert [column for table, column, _ in columns if table == "observed"] == list(
        ObservedState.model_fields
    )


def test_a_newer_schema_is_refused_with_a_clear_error(postgres_url: str) -> None:
    open_store(postgres_url).close()
    with raw(postgres_url) as connection:
        connection.execute("INSERT INTO schema_version (version) VALUES (%s)", [SCHEMA_VERSION + 1])
    with pytest.raises(SchemaTooNewError, match=rf"schema version {SCHEMA_VERSION + 1} is newer"):
        open_store(postgres_url)


def test_a_failing_migration_leaves_the_previous_version_whole(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(postgres_url).close()
    broken = ("CREATE TABLE extra (x text)", "THIS IS NOT SQL")
    monkeypatch.setattr(store_postgres, "_MIGRATIONS", (*store_postgres._MIGRATIONS, broken))
    monkeypatch.setattr(store_postgres, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="not a usable qrelease state database"):
        open_store(postgres_url)
    with raw(postgres_url) as connection:
        newest = connection.execute("SELECT max(version) FROM schema_version").fetchone()
        extra = connection.execute("SELECT to_regclass('extra')").fetchone()
    assert newest == (SCHEMA_VERSION,) and extra == (None,)


OPENER = """
import sys, time
from pathlib import Path
from qrelease.store import open_store

url, go = sys.argv[1], Path(sys.argv[2])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
open_store(url).close()
"""


def test_processes_opening_a_new_database_at_once_migrate_it_once(
    postgres_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, postgres_url, str(go)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    time.sleep(0.5)  # let them import; they then wait for `go`, not for this sleep
    go.touch()
    errors_seen = [opener.communicate(timeout=120)[1] for opener in openers]
    assert [opener.returncode for opener in openers] == [0, 0, 0, 0], errors_seen
    with raw(postgres_url) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_an_unreachable_database_is_a_store_error_that_hides_the_password(
    postgres_server: PostgresServer,
) -> None:
    url = f"postgresql://qrelease:Hunter2Secret@/no_such_db?host={postgres_server.data}"
    with pytest.raises(StoreError) as raised:
        open_store(url)
    assert "no_such_db" in str(raised.value)
    assert "Hunter2Secret" not in str(raised.value)
    with pytest.raises(StoreError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://root:Hunter2Secret@localhost/db")


def test_the_location_never_holds_the_password(postgres_server: PostgresServer) -> None:
    name = f"pw_{uuid.uuid4().hex[:8]}"
    with postgres_server.admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"postgresql://postgres:Hunter2Secret@/{name}?host={postgres_server.data}"
        with open_store(url) as store, store.connect() as other:
            assert "Hunter2Secret" not in store.location
            assert other.location == store.location
    finally:
        with postgres_server.admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# -- what goes in comes back -------------------------------------------------------------


def test_an_event_reads_back_exactly_as_it_was_hashed(store: StateStore) -> None:
    details = {
        "exponent": 1e16,  # jsonb writes it 10000000000000000: an int when read back
        "negative_zero": -0.0,  # jsonb has no negative zero
        "tenth": 0.1,
        "nested": {"b": [1, 2.5, None, True], "a": "ünïcode ✓"},
        "big": 2**70,
    }
    local = timezone(timedelta(hours=-5))
    appended = store.append(
        EventDraft(env="prod", app="bell", action="Deploy", details=details),
        time=(T0 + timedelta(microseconds=123456)).astimezone(local),
    )
    (read,) = store.events()
    assert read == appended
    assert read.recomputed_hash() == read.hash == appended.hash
    assert read.time == T0 + timedelta(microseconds=123456)
    assert read.time.utcoffset() == timedelta(0)
    assert read.details["exponent"] == 10**16 and read.details["big"] == 2**70
    assert store.verify().ok


def test_times_read_back_in_utc_whatever_the_server_zone(
    store: StateStore, postgres_url: str
) -> None:
    with raw(postgres_url) as connection:
        database = sql.Identifier(connection.info.dbname)
        connection.execute(
            sql.SQL("ALTER DATABASE {} SET timezone = 'Asia/Kolkata'").format(database)
        )
    with open_store(postgres_url) as fresh:
        fresh.put_observed(full_state())
        run = fresh.begin_run("a" * 40, time=T0)
        fresh.append(EventDraft(action="Deploy"), time=T0)
        assert fresh.get_observed("prod", "bell-service") == full_state()
        last = fresh.last_run()
        assert last is not None and last.id == run and last.started_at == T0
        assert last.started_at.utcoffset() == timedelta(0)
        assert fresh.events()[0].time.isoformat() == "2026-05-01T12:00:00+00:00"
        assert fresh.verify().ok
        with pytest.raises(ValueError, match="no time zone"):
            fresh.put_observed(ObservedState(env="e", app="a", updated_at=datetime(2026, 5, 1)))


def test_a_nested_failure_rolls_back_only_the_inner_block(store: StateStore) -> None:
    with store.transaction():
        store.set_meta("outer", "kept")
        with pytest.raises(KeyError), store.transaction():
            store.set_meta("inner", "dropped")
            store.append(EventDraft(action="Deploy"))
            raise KeyError("inner")
        store.append(EventDraft(action="Deploy"))
    assert (store.get_meta("outer"), store.get_meta("inner")) == ("kept", None)
    assert [event.seq for event in store.events()] == [1]
    assert store.verify().ok


def test_history_filters_stream_and_stop_early(store: StateStore) -> None:
    chained(store, 1200)  # more than one fetch batch
    since_local = (T0 + timedelta(seconds=1190)).astimezone(timezone(timedelta(hours=9)))
    assert [e.seq for e in store.events(since=since_local)] == list(range(1191, 1201))
    stream = store.iter_events(descending=True)
    assert [next(stream).seq, next(stream).seq] == [1200, 1199]
    stream.close()
    assert sum(1 for _ in store.iter_events()) == 1200
    assert store.events(actions=[]) == []
    last = store.last_event("prod", "bell", "Deploy")
    assert last is not None and last.seq == 1200
    with pytest.raises(ValueError, match="limit"):
        store.events(limit=-1)


def test_handles_share_the_pool_until_the_last_one_closes(store: StateStore) -> None:
    other = store.connect()
    store.close()
    store.close()
    other.append(EventDraft(action="Deploy"))
    assert other.count_events() == 1
    other.close()
    with pytest.raises(StoreError, match="closed"):
        other.count_events()
    with pytest.raises(StoreError, match="closed"):
        store.connect()


# -- the audit chain in the database ------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET reason = 'forged' WHERE seq = 5",
        "DELETE FROM events WHERE seq = 5",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
def test_the_database_refuses_to_change_or_remove_events(
    store: StateStore, postgres_url: str, statement: str
) -> None:
    chained(store, 10)
    with raw(postgres_url) as connection, pytest.raises(errors.IntegrityConstraintViolation):
        connection.execute(statement)
    assert store.count_events() == 10 and store.verify().ok


@pytest.mark.parametrize(
    ("seq_offset", "links_to_head"), [(1, False), (2, True), (0, True)], ids=["fork", "gap", "dup"]
)
def test_the_database_refuses_an_insert_that_does_not_extend_the_chain(
    store: StateStore, postgres_url: str, seq_offset: int, links_to_head: bool
) -> None:
    chained(store, 10)
    head = store.events(descending=True, limit=1)[0]
    insert = (
        "INSERT INTO events (seq, time, env, app, action, actor, reason, outcome, details, "
        "prev_hash, hash) VALUES (%s, now(), '', '', 'Deploy', 'intruder', '', '', '{}', %s, %s)"
    )
    prev_hash = head.hash if links_to_head else "f" * 64
    with raw(postgres_url) as connection, pytest.raises(psycopg.Error, match="extend the chain"):
        connection.execute(insert, [head.seq + seq_offset, prev_hash, "e" * 64])
    assert store.count_events() == 10
    assert store.append(EventDraft(action="Deploy")).seq == 11


def test_a_forged_chain_head_stops_appends_instead_of_forking(
    store: StateStore, postgres_url: str
) -> None:
    chained(store, 3)
    with raw(postgres_url) as connection:
        connection.execute("UPDATE chain_head SET hash = %s", ["f" * 64])
        with pytest.raises(errors.IntegrityConstraintViolation, match="chain head row"):
            connection.execute("DELETE FROM chain_head")
    with pytest.raises(psycopg.Error, match="does not extend the chain"):
        store.append(EventDraft(action="Deploy"))
    assert store.count_events() == 3 and store.verify().ok


def test_edits_by_the_table_owner_with_triggers_off_are_found_by_verify(
    store: StateStore, postgres_url: str
) -> None:
    chained(store, 10)
    with raw(postgres_url) as connection:
        connection.execute("ALTER TABLE events DISABLE TRIGGER USER")
        connection.execute("UPDATE events SET reason = 'nothing happened' WHERE seq = 4")
        connection.execute("DELETE FROM events WHERE seq = 7")
        connection.execute("UPDATE events SET details = '[1, 2]' WHERE seq = 9")
    breaks = [str(b) for b in store.verify().breaks]
    assert breaks[:2] == [
        "event 4: hash mismatch (content edited)",
        "missing event(s) between 6 and 8",
    ]
    assert breaks[2].startswith("event 9: unreadable (")


def test_a_role_without_update_or_delete_runs_the_controller(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """The README's production role: it appends and reads events but cannot change them."""
    open_store(postgres_url).close()  # the owner creates the schema
    role = f"qrelease_{uuid.uuid4().hex[:8]}"
    grants = [
        "CREATE ROLE {role} LOGIN",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON meta, observed, runs, intents, leases, replicas, "
        "quantum_jobs TO {role}",
        "GRANT SELECT, INSERT ON events TO {role}",
        "GRANT SELECT, UPDATE ON chain_head TO {role}",
        "GRANT SELECT ON schema_version TO {role}",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]
    with raw(postgres_url) as owner:
        for grant in grants:
            owner.execute(sql.SQL(grant).format(role=sql.Identifier(role)))
    with raw(postgres_url) as owner:
        as_role = postgres_server.url(owner.info.dbname, user=role)
    try:
        with open_store(as_role) as store:
            chained(store, 3)
            store.put_observed(full_state())
            store.finish_run(store.begin_run(None), "Succeeded", {})
            store.clear_intent(store.put_intent("prod", "bell", "deploy", {}))
            store.set_meta("last_revision", "a" * 40)
            job = QuantumJob("prod", "j1", "bell", "1.0.0", JobStatus.WAITING, T0)
            store.put_jobs([job])
            store.put_jobs([replace(job, status=JobStatus.SUCCEEDED)])
            assert store.prune_jobs("prod", T0 + timedelta(days=1)) == 1
            lease = store.acquire_lease("env:prod", "replica-a", timedelta(seconds=15), T0)
            assert lease is not None
            store.check_fence("env:prod", "replica-a", lease.token)
            assert store.verify().ok
        with raw(as_role) as connection:
            for statement in (
                "UPDATE events SET reason = 'forged'",
                "DELETE FROM events",
                "TRUNCATE events",
                "ALTER TABLE events DISABLE TRIGGER USER",
            ):
                with pytest.raises(
                    (errors.InsufficientPrivilege, errors.IntegrityConstraintViolation)
                ):
                    connection.execute(statement)
    finally:
        with raw(postgres_url) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


APPENDER = """
import sys, time
from pathlib import Path
from qrelease.model.events import EventDraft
from qrelease.store import open_store

url, actor, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
with open_store(url) as store:
    (go.parent / f"ready-{actor}").touch()
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    for index in range(count):
        store.append(EventDraft(env="prod", app="bell", action="Deploy", actor=actor,
                                reason=str(index), details={"index": index}))
        time.sleep(0.001)  # let the others in, so the appenders really interleave
"""


def wait_for_files(*paths: Path) -> None:
    """Wait (at most 60 s) until every path exists: the appenders are ready to race."""
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in paths) and time.monotonic() < deadline:
        time.sleep(0.005)


def test_processes_appending_at_once_keep_one_chain(
    store: StateStore, postgres_url: str, tmp_path: Path
) -> None:
    go, per_process, actors = tmp_path / "go", 100, ("process-a", "process-b", "process-c")
    appenders = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, postgres_url, actor, str(per_process), str(go)],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for actor in actors
    ]
    wait_for_files(*(tmp_path / f"ready-{actor}" for actor in actors))
    go.touch()
    failures = [appender.communicate(timeout=120)[1] for appender in appenders]
    assert [appender.returncode for appender in appenders] == [0, 0, 0], failures
    events = store.events()
    assert [event.seq for event in events] == list(range(1, 3 * per_process + 1))
    assert [event.prev_hash for event in events[1:]] == [event.hash for event in events[:-1]]
    assert store.verify().ok
    for actor in actors:
        reasons = [event.reason for event in events if event.actor == actor]
        assert reasons == [str(index) for index in range(per_process)]
    switches = sum(1 for one, other in itertools.pairwise(events) if one.actor != other.actor)
    assert switches > 2, "the appenders did not overlap, so nothing was tested"


# -- moving over: qrelease store migrate ---------------------------------------------------


def fill(store: StateStore) -> None:
    """Every kind of row, with gaps in the intent ids and a run left unfinished."""
    store.put_observed_many([full_state(), full_state(env="dev"), ObservedState(env="qa", app="x")])
    first = store.begin_run("a" * 40, time=T0)
    store.finish_run(first, "Succeeded", {"deployed": ["bell-service"], "at": T0}, time=T0)
    store.begin_run(None, time=T0 + timedelta(minutes=1))
    kept = store.put_intent("prod", "bell", "deploy", {"to": "1.1.0"}, time=T0)
    store.clear_intent(store.put_intent("prod", "other", "deploy", {}, time=T0))
    assert kept == 1
    store.put_intent("dev", "bell", "switch", {"to": "1.2.0", "n": [1, 2]}, time=T0)
    store.set_meta("last_revision", "c" * 40)
    store.put_jobs(
        [
            QuantumJob(
                "prod",
                "job-1",
                "bell",
                "1.0.0",
                JobStatus.FAILED,
                T0,
                "ionq.qpu.aria-1",
                T0 + timedelta(seconds=5),
                T0 + timedelta(seconds=9, microseconds=7),
                0.125,
                "USD",
            )
        ]
    )
    for index in range(30):
        store.append(
            EventDraft(
                env=("dev", "prod")[index % 2],
                app="bell-service",
                action=("Deploy", "Health")[index % 2],
                reason=f"event {index} ✓",
                details={"index": index, "score": 0.25 * index, "gates": {"smoke": "Passed"}},
            ),
            time=T0 + timedelta(seconds=index, microseconds=index),
        )


def dump(store: StateStore) -> dict[str, Any]:
    """Everything a store holds, to compare two stores."""
    return {
        "observed": store.all_observed(),
        "runs": list(store.iter_runs()),
        "intents": store.pending_intents(),
        "meta": store.meta_items(),
        "events": store.events(),
        "jobs": store.jobs("prod"),
    }


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_migrate_sqlite_to_postgresql_and_back_keeps_everything(
    postgres_url: str, tmp_path: Path, example_repo: GitOpsRepo
) -> None:
    state = tmp_path / "state"
    with open_store(state) as sqlite_store:
        fill(sqlite_store)
        original = dump(sqlite_store)
    code, out, err = cli("store", "migrate", "--from", str(state), "--to", postgres_url)
    assert code == 0, err
    assert out.startswith("copied 30 events (head ")
    assert "3 observed rows, 2 runs, 2 intents, 1 meta keys and 1 quantum jobs" in out
    with open_store(postgres_url) as pg_store:
        assert dump(pg_store) == original
        assert pg_store.put_intent("dev", "x", "deploy", {}) == 4  # after the copied ids
        pg_store.clear_intent(4)
    verify = ("audit", "verify", "--repo", str(example_repo.path), "--state", str(state))
    code, out, err = cli(*verify, "--store", postgres_url)
    assert code == 0, err
    assert "30 events: chain intact" in out  # (and a note: nothing is anchored in Git yet)

    back = f"sqlite:///{tmp_path / 'back' / 'state.db'}"
    code, out, err = cli("store", "migrate", "--from", postgres_url, "--to", back, "--json")
    assert code == 0, err
    assert '"events": 30' in out
    with open_store(back) as sqlite_again:
        assert dump(sqlite_again) == original
    code, out, err = cli(*verify, "--store", back)
    assert code == 0 and "30 events: chain intact" in out, err


def test_migrate_refuses_a_target_that_is_not_empty(postgres_url: str, tmp_path: Path) -> None:
    with open_store(tmp_path / "state") as source:
        fill(source)
    with open_store(postgres_url) as target:
        target.set_meta("something", "here")
    code, _, err = cli("store", "migrate", "--from", str(tmp_path / "state"), "--to", postgres_url)
    assert code == 1
    assert "not empty (holds meta keys)" in err
    with open_store(postgres_url) as target:
        assert target.count_events() == 0 and target.all_observed() == []


def test_migrate_refuses_a_missing_source_and_a_broken_chain(
    postgres_url: str, tmp_path: Path
) -> None:
    code, _, err = cli(
        "store", "migrate", "--from", str(tmp_path / "nothing"), "--to", postgres_url
    )
    assert code == 1 and "no such state database" in err
    assert not (tmp_path / "nothing").exists()
    with open_store(postgres_url) as source:
        chained(source, 5)
    with raw(postgres_url) as connection:
        connection.execute("ALTER TABLE events DISABLE TRIGGER USER")
        connection.execute("UPDATE events SET reason = 'forged' WHERE seq = 2")
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    code, _, err = cli("store", "migrate", "--from", postgres_url, "--to", target)
    assert code == 1 and "the audit chain is broken (event 2: hash mismatch" in err
    with open_store(target) as copy:
        assert copy.count_events() == 0


def test_migrate_refuses_details_postgresql_would_change_and_writes_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    with open_store(tmp_path / "state") as source:
        source.append(EventDraft(action="Deploy"), time=T0)
        source.append(EventDraft(action="Deploy", details={"qubits": 1e16}), time=T0)
    code, _, err = cli("store", "migrate", "--from", str(tmp_path / "state"), "--to", postgres_url)
    assert code == 1
    assert "event 2 would not keep its hash there" in err
    with open_store(postgres_url) as target:
        assert target.count_events() == 0


def test_the_store_flag_beats_the_config_and_status_reads_postgresql(
    postgres_url: str, tmp_path: Path, example_repo: GitOpsRepo
) -> None:
    with open_store(postgres_url) as store:
        store.put_observed(ObservedState(env="dev", app="bell-service", deployed="1.0.0"))
    config = tmp_path / "controller.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "from-config.db"}"\n')
    base = ("status", "--json", "--repo", str(example_repo.path), "--state", str(tmp_path / "s"))
    code, out, err = cli(*base, "--config", str(config), "--store", postgres_url)
    assert code == 0, err
    assert '"deployed": "1.0.0"' in out
    assert not (tmp_path / "from-config.db").exists()
    assert not (tmp_path / "s" / "qrelease.db").exists()
