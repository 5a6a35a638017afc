"""The audit hash chain: linking, verifying, DB-level append-only, tampering, concurrency."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qrelease.model.events import GENESIS_HASH, Event, EventDraft
from qrelease.source.anchors import Anchor
from qrelease.store import verify_chain
from qrelease.store.audit import MAX_BREAKS, AnchorCheck, AnchorFindings, link
from qrelease.store.sqlite import Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHAIN_LENGTH = 1000


def draft(index: int) -> EventDraft:
    """A varied, deterministic event draft."""
    return EventDraft(
        env=("dev", "staging", "prod")[index % 3],
        app=("bell-service", "teleport")[index % 2],
        action=("Deploy", "Health", "Rollback")[index % 3],
        from_version=f"1.0.{index}",
        to_version=f"1.0.{index + 1}",
        revision=f"{index // 10:040x}",
        reason=f"event number {index} — ünïcode",
        outcome="Succeeded",
        details={"index": index, "gates": {"smoke": "Passed"}, "tags": ["a", "b"]},
    )


def pure_chain(length: int) -> list[Event]:
    """A chain built without any storage."""
    events: list[Event] = []
    for index in range(length):
        prev_hash = events[-1].hash if events else GENESIS_HASH
        moment = T0 + timedelta(seconds=index)
        events.append(link(draft(index), seq=index + 1, prev_hash=prev_hash, time=moment))
    return events


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "state.db"


@pytest.fixture
def chained(db_path: Path) -> Iterator[Store]:
    """A store holding a 1,000-event chain."""
    with Store.open(db_path) as store:
        with store.transaction():
            for index in range(CHAIN_LENGTH):
                store.append(draft(index), time=T0 + timedelta(seconds=index))
        yield store


def tamper(db_path: Path, *statements: str) -> None:
    """Edit the file directly, as someone bypassing qrelease would: triggers dropped first."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as connection:
        connection.execute("DROP TRIGGER events_no_update")
        connection.execute("DROP TRIGGER events_no_delete")
        for statement in statements:
            connection.execute(statement)


# -- the pure chain ----------------------------------------------------------------------


def test_an_intact_pure_chain_verifies() -> None:
    events = pure_chain(20)
    report = verify_chain(events)
    assert report.ok and report.first_break is None
    assert (report.checked, report.head_seq, report.head_hash) == (20, 20, events[-1].hash)


def test_an_empty_chain_is_intact() -> None:
    report = verify_chain([])
    assert report.ok and report.checked == 0 and report.head_seq == 0


def test_link_normalises_details_so_the_hash_survives_a_round_trip() -> None:
    odd = EventDraft(action="Deploy", details={"when": T0, "pair": (1, 2), "nested": {"x": None}})
    event = link(odd, seq=1, prev_hash=GENESIS_HASH, time=T0)
    assert event.details == {"when": "2024-05-01T12:00:00Z", "pair": [1, 2], "nested": {"x": None}}
    assert event.recomputed_hash() == event.hash
    assert Event.model_validate_json(event.model_dump_json()).recomputed_hash() == event.hash


def test_link_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        link(EventDraft(action="x"), seq=1, prev_hash=GENESIS_HASH, time=datetime(2024, 5, 1))


def test_link_takes_only_the_content_of_an_event_given_as_draft() -> None:
    first = pure_chain(1)[0]
    again = link(first, seq=first.seq, prev_hash=first.prev_hash, time=first.time)
    assert again == first


def test_pure_chain_breaks_are_named() -> None:
    events = pure_chain(10)
    edited = [*events[:4], events[4].model_copy(update={"reason": "forged"}), *events[5:]]
    assert str(verify_chain(edited).first_break) == "event 5: hash mismatch (content edited)"
    missing = events[:4] + events[6:]
    assert str(verify_chain(missing).first_break) == "missing event(s) between 4 and 7"
    assert str(verify_chain(events[2:]).first_break) == "missing event(s) before 3"
    swapped = verify_chain([*events[:4], events[5], events[4], *events[6:]])
    assert [(b.seq, str(b)) for b in swapped.breaks[:2]] == [
        (5, "missing event(s) between 4 and 6"),
        (5, "event 5: out of order after event 6"),
    ]
    forged_start = [events[0].model_copy(update={"prev_hash": "f" * 64}), *events[1:]]
    assert (
        str(verify_chain(forged_start).first_break) == "event 1: prev_hash is not the genesis hash"
    )


def test_a_report_keeps_a_bounded_number_of_breaks() -> None:
    events = pure_chain(MAX_BREAKS + 20)
    forged = [event.model_copy(update={"reason": "forged"}) for event in events]
    report = verify_chain(forged)
    assert len(report.breaks) == MAX_BREAKS and report.checked == MAX_BREAKS + 20


# -- anchors: the head recorded outside the database ------------------------------------


def anchors_of(events: list[Event], *seqs: int) -> list[Anchor]:
    """Anchors of `events` at `seqs`, newest first as the audit ref lists them."""
    return [
        Anchor(seq, events[seq - 1].hash, T0 + timedelta(hours=seq), "c0ffee", f"{seq:02x}" * 20)
        for seq in sorted(seqs, reverse=True)
    ]


def checked(events: list[Event], anchors: list[Anchor]) -> AnchorFindings:
    check = AnchorCheck(anchors)
    for event in events:
        check.see(event.seq, event.hash)
    return check.findings(events[-1].seq if events else 0)


def rehashed(events: list[Event], edit_seq: int) -> list[Event]:
    """The chain with one event edited and every later hash recomputed: it verifies alone."""
    forged: list[Event] = []
    for event in events:
        content = event.model_copy(update={"reason": "forged"}) if event.seq == edit_seq else event
        prev_hash = forged[-1].hash if forged else GENESIS_HASH
        forged.append(link(content, seq=event.seq, prev_hash=prev_hash, time=event.time))
    return forged


def test_a_chain_that_matches_its_anchors_has_no_problem() -> None:
    events = pure_chain(20)
    anchors = anchors_of(events, 5, 12, 20)
    assert checked(events, anchors) == AnchorFindings(
        (), (f"the chain matches the newest {anchors[0].describe()}",)
    )
    assert anchors[0].describe() == (
        f"anchor at seq 20 (2024-05-02T08:00:00+00:00, commit {'14' * 6})"
    )


def test_a_cut_off_tail_is_counted_against_the_newest_anchor() -> None:
    events = pure_chain(20)
    anchors = anchors_of(events, 12, 20)
    findings = checked(events[:17], anchors)
    assert findings.problems == (
        f"3 events missing after seq 17: the {anchors[0].describe()} records them",
    )
    assert checked(events[:19], anchors).problems[0].startswith("1 event missing after seq 19")
    assert checked(events[:10], anchors).problems == (
        f"10 events missing after seq 10: the {anchors[0].describe()} records them",
    )
    assert checked([], anchors).problems == (
        f"20 events missing: the chain is empty, but the {anchors[0].describe()} records them",
    )


def test_a_rehashed_chain_is_named_at_the_first_anchor_it_contradicts() -> None:
    events = pure_chain(20)
    anchors = anchors_of(events, 3, 8, 14, 20)
    forged = rehashed(events, edit_seq=6)
    assert verify_chain(forged).ok  # the chain alone cannot tell
    (problem,) = checked(forged, anchors).problems
    assert problem == (
        f"event 8: hash differs from the {anchors[2].describe()}: "
        f"anchored {events[7].hash[:12]}, stored {forged[7].hash[:12]}; "
        "2 later anchor(s) differ too; the last anchor the chain matches is at seq 3"
    )
    wholly = checked(rehashed(events, edit_seq=1), anchors).problems[0]
    assert wholly.endswith("; the chain matches no anchor before it")


def test_events_after_the_newest_anchor_are_a_note_not_a_problem() -> None:
    events = pure_chain(20)
    anchors = anchors_of(events, 15)
    assert checked(events, anchors) == AnchorFindings(
        (),
        (f"the newest {anchors[0].describe()} is older than the chain: "
         "5 events after it are not anchored yet",),
    )  # fmt: skip
    assert checked(events, []) == AnchorFindings((), ())
    assert AnchorCheck(anchors).last_anchored_seq == 15


# -- the stored chain --------------------------------------------------------------------


def test_a_stored_chain_of_1000_events_verifies(chained: Store) -> None:
    report = chained.verify()
    assert report.ok, report.breaks
    assert (report.checked, report.head_seq) == (CHAIN_LENGTH, CHAIN_LENGTH)
    assert report.head_hash == chained.events(descending=True, limit=1)[0].hash
    assert len(report.revisions) == CHAIN_LENGTH // 10
    assert report.revisions[f"{7:040x}"] == 71


def test_appended_events_read_back_identical(db_path: Path) -> None:
    with Store.open(db_path) as store:
        appended = [store.append(draft(index)) for index in range(5)]
        assert appended[0].prev_hash == GENESIS_HASH
        assert [event.prev_hash for event in appended[1:]] == [e.hash for e in appended[:-1]]
    with Store.open(db_path) as store:
        assert store.events() == appended
        assert all(event.time.tzinfo is not None for event in appended)


def test_the_database_refuses_update_and_delete_of_events(chained: Store, db_path: Path) -> None:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as connection:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("UPDATE events SET reason = 'forged' WHERE seq = 500")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("DELETE FROM events WHERE seq = 500")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("DELETE FROM events")
    assert chained.count_events() == CHAIN_LENGTH
    assert chained.verify().ok


INSERT_EVENT = (
    "INSERT INTO events (seq, time, env, app, action, actor, reason, outcome, details,"
    " prev_hash, hash) VALUES (?, '2024-05-01T12:00:00.000000+00:00', '', '', 'Deploy',"
    " 'intruder', '', '', '{}', ?, ?)"
)


@pytest.mark.parametrize(
    ("seq_offset", "links_to_head"), [(1, False), (2, True), (0, True)], ids=["fork", "gap", "dup"]
)
def test_the_database_refuses_an_insert_that_does_not_extend_the_chain(
    chained: Store, db_path: Path, seq_offset: int, links_to_head: bool
) -> None:
    head = chained.events(descending=True, limit=1)[0]
    prev_hash = head.hash if links_to_head else "f" * 64
    with (
        closing(sqlite3.connect(db_path, isolation_level=None)) as connection,
        pytest.raises(sqlite3.IntegrityError, match="does not extend the chain"),
    ):
        connection.execute(INSERT_EVENT, (head.seq + seq_offset, prev_hash, "e" * 64))
    assert chained.count_events() == CHAIN_LENGTH


def test_an_edited_event_is_detected(chained: Store, db_path: Path) -> None:
    tamper(db_path, "UPDATE events SET reason = 'nothing happened' WHERE seq = 500")
    report = chained.verify()
    assert report.first_break is not None and report.first_break.seq == 500
    assert str(report.first_break) == "event 500: hash mismatch (content edited)"
    assert len(report.breaks) == 1


def test_an_edited_event_with_a_recomputed_hash_breaks_the_next_link(
    chained: Store, db_path: Path
) -> None:
    original = chained.events(after_seq=499, limit=1)[0]
    forged = link(
        original.model_copy(update={"reason": "forged"}),
        seq=500,
        prev_hash=original.prev_hash,
        time=original.time,
    )
    forge = f"UPDATE events SET reason = 'forged', hash = '{forged.hash}' WHERE seq = 500"  # noqa: S608 a hex digest
    tamper(db_path, forge)
    report = chained.verify()
    assert str(report.first_break) == "event 501: prev_hash does not match event 500"


def test_a_deleted_middle_event_is_detected(chained: Store, db_path: Path) -> None:
    tamper(db_path, "DELETE FROM events WHERE seq = 500")
    report = chained.verify()
    assert report.first_break is not None and report.first_break.seq == 500
    assert str(report.first_break) == "missing event(s) between 499 and 501"


def test_two_swapped_events_are_detected(chained: Store, db_path: Path) -> None:
    tamper(
        db_path,
        "UPDATE events SET seq = -1 WHERE seq = 500",
        "UPDATE events SET seq = 500 WHERE seq = 501",
        "UPDATE events SET seq = 501 WHERE seq = -1",
    )
    report = chained.verify()
    assert report.first_break is not None and report.first_break.seq == 500
    assert str(report.first_break) == "event 500: prev_hash does not match event 499"


def test_an_undecodable_event_is_reported_not_raised(chained: Store, db_path: Path) -> None:
    tamper(db_path, "UPDATE events SET details = '[1, 2]', time = 'yesterday' WHERE seq = 7")
    report = chained.verify()
    assert report.first_break is not None and report.first_break.seq == 7
    assert str(report.first_break).startswith("event 7: unreadable (")
    assert report.checked == CHAIN_LENGTH


# -- concurrency -------------------------------------------------------------------------

APPENDER = """
import sys, time
from pathlib import Path
from qrelease.model.events import EventDraft
from qrelease.store.sqlite import Store

path, actor, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
with Store.open(path) as store:
    (go.parent / f"ready-{actor}").touch()
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    for index in range(count):
        store.append(EventDraft(env="prod", app="bell", action="Deploy", actor=actor,
                                reason=str(index)))
        time.sleep(0.001)  # let the other appender in, so the two really interleave
"""


def assert_one_linear_chain(store: Store, expected: int) -> None:
    """The store holds seqs 1..expected, each linked to its predecessor."""
    events = store.events()
    assert [event.seq for event in events] == list(range(1, expected + 1))
    assert len({event.hash for event in events}) == expected
    report = store.verify()
    assert report.ok, report.breaks


def wait_for(*paths: Path) -> None:
    """Wait (at most 60 s) until every path exists: the appenders are ready to race."""
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in paths) and time.monotonic() < deadline:
        time.sleep(0.005)


def test_two_processes_appending_at_once_keep_one_chain(db_path: Path, tmp_path: Path) -> None:
    go, per_process = tmp_path / "go", 150
    appenders = [
        subprocess.Popen(
            [
                sys.executable,
                "-W",
                "error",
                "-c",
                APPENDER,
                str(db_path),
                actor,
                str(per_process),
                str(go),
            ],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for actor in ("process-a", "process-b")
    ]
    wait_for(tmp_path / "ready-process-a", tmp_path / "ready-process-b")
    go.touch()
    errors = [process.communicate(timeout=120)[1] for process in appenders]
    assert [process.returncode for process in appenders] == [0, 0], errors
    with Store.open(db_path) as store:
        assert_one_linear_chain(store, 2 * per_process)
        actors = [event.actor for event in store.events()]
        for actor in ("process-a", "process-b"):
            reasons = [e.reason for e in store.events() if e.actor == actor]
            assert reasons == [str(index) for index in range(per_process)]
    switches = sum(1 for one, other in itertools.pairwise(actors) if one != other)
    assert switches > 1, "the appenders did not overlap, so nothing was tested"


def test_threads_with_their_own_stores_keep_one_chain(db_path: Path) -> None:
    Store.open(db_path).close()
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def append_many(actor: str) -> None:
        try:
            with Store.open(db_path) as store:
                start.wait()
                for index in range(50):
                    store.append(EventDraft(action="Deploy", actor=actor, reason=str(index)))
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    workers = [threading.Thread(target=append_many, args=(f"t{n}",)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    with Store.open(db_path) as store:
        assert_one_linear_chain(store, 200)
