"""The audit chain anchored in Git: written after passes and promotions, checked by `audit verify`.

Real git (a bare remote), real SQLite, the real CLI; the store is tampered with the way
someone bypassing qrelease would, with the append-only triggers dropped first.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease.anchoring import (
    CONTROLLER_ID_FILE,
    Anchoring,
    anchor_chain,
    controller_id,
    last_failure,
    read_controller_id,
)
from qrelease.cli import main
from qrelease.daemon.controller import initial_view
from qrelease.daemon.logs import make_logger
from qrelease.daemon.metrics import Metrics
from qrelease.daemon.reconciler import Reconciler
from qrelease.daemon.state import ControllerState
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.events import GENESIS_HASH, Event, EventDraft
from qrelease.promotion.promote import Promoter
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.anchors import anchor_ref, read_anchors
from qrelease.source.repo import GitRepo
from qrelease.source.workspace import mirror_path
from qrelease.store import DB_NAME, StateStore, open_store
from qrelease.store.audit import link
from tests.helpers.daemon import Rig
from tests.helpers.gitops import GitOpsRepo

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
LATER_EVENTS = 6


class Audited:
    """A bare GitOps remote and a state dir: one pass over fakes, then more events; two anchors."""

    def __init__(self, work: GitOpsRepo, root: Path) -> None:
        self.root = root
        self.bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(self.bare)], check=True)
        self.state = root / "state"
        self.main = self.git("rev-parse", "main")
        self.quantum = MemoryQuantum()
        with self.store() as store, GitRepo(self.bare) as repo:
            backends = Backends(lambda env: MemoryDeployer(), lambda env: self.quantum)
            Engine(repo, store, backends, clock=lambda: T0).reconcile("main")
            first = self.anchor(store, T0)
            for index in range(LATER_EVENTS):
                store.append(self.draft(index), time=T1)
            second = self.anchor(store, T1)
        assert first.anchor is not None and second.anchor is not None
        self.anchors = (second.anchor, first.anchor)
        self.head = second.anchor.seq

    def store(self) -> StateStore:
        return open_store(self.state)

    def draft(self, index: int) -> EventDraft:
        return EventDraft(
            env="dev", app="qrng", action="health", revision=self.main, reason=f"{index}"
        )

    def anchor(self, store: StateStore, at: datetime) -> Anchoring:
        return anchor_chain(store, str(self.bare), self.state, clock=lambda: at)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.bare), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    def tamper(self, *statements: str) -> None:
        """Edit the database directly, every trigger dropped first."""
        with closing(sqlite3.connect(self.state / DB_NAME, isolation_level=None)) as db:
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
                db.execute(f"DROP TRIGGER {name}")
            for statement in statements:
                db.execute(statement)

    def cli(self, *args: str, state: Path | None = None) -> tuple[int, str, str]:
        where = ["--repo", str(self.bare), "--state", str(state or self.state)]
        result = CliRunner().invoke(main, [*args, *where])
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def audited(example_repo: GitOpsRepo, tmp_path: Path) -> Audited:
    return Audited(example_repo, tmp_path)


def rewrite(audited: Audited, events: list[Event]) -> None:
    """Replace every stored event, as a forger with a copy of the schema would."""
    columns = "seq, time, env, app, action, from_version, to_version, revision, actor, reason, "
    columns += "outcome, details, prev_hash, hash"
    audited.tamper("DELETE FROM events")
    with closing(sqlite3.connect(audited.state / DB_NAME, isolation_level=None)) as db:
        for event in events:
            row = event.model_dump(mode="json")
            row["time"] = event.time.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
            row["details"] = json.dumps(row["details"])
            names = columns.split(", ")
            db.execute(
                f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608 constant columns
                [row[name] for name in names],
            )


def rehashed(events: list[Event], edit_seq: int) -> list[Event]:
    """The chain with one event edited and every later hash recomputed."""
    forged: list[Event] = []
    for event in events:
        content = event.model_copy(update={"reason": "forged"}) if event.seq == edit_seq else event
        prev_hash = forged[-1].hash if forged else GENESIS_HASH
        forged.append(link(content, seq=event.seq, prev_hash=prev_hash, time=event.time))
    return forged


def stored_events(audited: Audited) -> list[Event]:
    with audited.store() as store:
        return store.events()


# -- written --------------------------------------------------------------------------


def test_each_anchor_records_the_head_on_top_of_the_previous_one(audited: Audited) -> None:
    newest, first = audited.anchors
    events = stored_events(audited)
    assert newest.seq == events[-1].seq == first.seq + LATER_EVENTS
    assert (newest.head_hash, first.head_hash) == (events[-1].hash, events[first.seq - 1].hash)
    assert (newest.time, first.time) == (T1, T0)
    controller = read_controller_id(audited.state)
    assert controller is not None and newest.controller == controller
    assert audited.git("rev-parse", anchor_ref(controller)) == newest.commit
    assert audited.git("log", "-1", "--format=%P", newest.commit) == first.commit
    with audited.store() as store:
        again = anchor_chain(store, str(audited.bare), audited.state, clock=lambda: T1)
    assert again.anchor == newest and not again.written  # nothing new: no commit


def test_through_a_mirror_a_stale_anchor_ref_is_fetched_and_the_next_anchor_goes_on_top(
    audited: Audited,
) -> None:
    url = audited.bare.as_uri()  # not a local path: written in the state dir's mirror, pushed
    mirror = mirror_path(url, audited.state)
    with audited.store() as store:
        store.append(audited.draft(10), time=T1)
        assert anchor_chain(store, url, audited.state, clock=lambda: T1).written
        ref = anchor_ref(audited.anchors[0].controller)
        pushed = audited.git("rev-parse", ref)
        stale = ["update-ref", ref, audited.anchors[0].commit]
        subprocess.run(["git", "--git-dir", str(mirror), *stale], check=True)
        store.append(audited.draft(11), time=T1)  # the mirror is behind the remote now
        outcome = anchor_chain(store, url, audited.state, clock=lambda: T1)
        head = store.events(descending=True, limit=1)[0]
    assert outcome.written and outcome.anchor is not None
    assert (outcome.anchor.seq, outcome.anchor.head_hash) == (head.seq, head.hash)
    assert audited.git("log", "-1", "--format=%P", outcome.anchor.commit) == pushed


def test_the_controller_id_is_made_once_per_state_dir(tmp_path: Path) -> None:
    assert read_controller_id(tmp_path / "a") is None
    made = controller_id(tmp_path / "a")
    assert len(made) == 16 and int(made, 16) >= 0
    assert controller_id(tmp_path / "a") == read_controller_id(tmp_path / "a") == made
    assert (tmp_path / "a" / CONTROLLER_ID_FILE).read_text() == made + "\n"
    assert controller_id(tmp_path / "b") != made


def test_promotion_and_rollback_anchor_the_event_they_record(audited: Audited) -> None:
    with audited.store() as store:

        def promoter() -> Promoter:  # a fresh one reads the branch again
            return Promoter(
                str(audited.bare), audited.state, store, lambda env: audited.quantum, lambda: T1
            )

        promoter().promote("qrng", "prod", None, "hotfix", force=True)
        promoted = store.events(descending=True, limit=1)[0]
        controller = controller_id(audited.state)
        with GitRepo(audited.bare) as repo:
            assert read_anchors(repo, controller).anchors[0].head_hash == promoted.hash
        promoter().rollback("qrng", "prod", "0.1.0", "back")
        rolled_back = store.events(descending=True, limit=1)[0]
        with GitRepo(audited.bare) as repo:
            newest = read_anchors(repo, controller).anchors[0]
    assert (promoted.action, rolled_back.action) == ("promote", "rollback")
    assert (newest.seq, newest.head_hash) == (rolled_back.seq, rolled_back.hash)


def test_the_controller_anchors_after_each_pass_and_a_refused_push_fails_no_pass(
    rig: Rig,
) -> None:
    config = rig.config()
    state = ControllerState(initial_view(config))
    log = make_logger(stream=rig.log)
    with Reconciler(config, state, Metrics(), log, rig.backends) as reconciler:
        reconciler.cycle()
        with open_store(rig.state) as store, GitRepo(rig.remote) as repo:
            head = store.events(descending=True, limit=1)[0]
            newest = read_anchors(repo, controller_id(rig.state)).newest
        assert newest is not None and (newest.seq, newest.head_hash) == (head.seq, head.hash)
        rig.pin("dev", "qrng", "0.1.0")
        hook = rig.remote / "hooks" / "pre-receive"  # from now on the remote refuses every push
        hook.write_text("#!/bin/sh\necho 'no audit refs today' >&2\nexit 1\n")
        hook.chmod(0o755)
        reconciler.cycle()
    assert state.view.passes == 2 and state.view.pass_error is None
    assert "audit anchor not written" in rig.log.getvalue()
    assert "no audit refs today" in rig.log.getvalue()
    with open_store(rig.state) as store:
        failure = last_failure(store)
    assert failure is not None and "pre-receive hook declined" in failure


# -- checked ----------------------------------------------------------------------------


def test_an_untouched_store_verifies_against_its_anchors(audited: Audited) -> None:
    code, out, err = audited.cli("audit", "verify")
    assert (code, err) == (0, "")
    assert f"the chain matches the newest {audited.anchors[0].describe()}" in out
    assert f"{audited.head} events: chain intact, every revision in Git" in out


@pytest.mark.parametrize("cut", ["newest event", "newest half", "all events"])
def test_a_cut_off_chain_fails_verify_naming_the_anchor(audited: Audited, cut: str) -> None:
    kept = {"newest event": audited.head - 1, "newest half": audited.head // 2, "all events": 0}[
        cut
    ]
    audited.tamper(f"DELETE FROM events WHERE seq > {kept}")  # noqa: S608 an int
    code, _, err = audited.cli("audit", "verify")
    missing, anchor = audited.head - kept, f"the {audited.anchors[0].describe()} records them"
    expected = {
        "newest event": f"1 event missing after seq {kept}: {anchor}",
        "newest half": f"{missing} events missing after seq {kept}: {anchor}",
        "all events": f"{missing} events missing: the chain is empty, but {anchor}",
    }
    assert code == 1 and err.splitlines() == [expected[cut]]


def test_a_rehashed_chain_fails_verify_at_the_first_anchor_it_contradicts(
    audited: Audited,
) -> None:
    events = stored_events(audited)
    forged = rehashed(events, edit_seq=2)
    rewrite(audited, forged)
    with audited.store() as store:
        assert store.verify().ok  # the chain alone cannot tell
    code, _, err = audited.cli("audit", "verify")
    first = audited.anchors[1]
    assert code == 1
    assert err.splitlines() == [
        f"event {first.seq}: hash differs from the {first.describe()}: anchored "
        f"{first.head_hash[:12]}, stored {forged[first.seq - 1].hash[:12]}; "
        "1 later anchor(s) differ too; the chain matches no anchor before it"
    ]


def test_the_controller_does_not_anchor_over_a_cut_chain(audited: Audited) -> None:
    audited.tamper(f"DELETE FROM events WHERE seq > {audited.head - 2}")  # noqa: S608 an int
    with audited.store() as store:
        store.append(audited.draft(98), time=T1)
        store.append(audited.draft(99), time=T1)  # back at the anchored seq, with other events
        warnings: list[str] = []
        outcome = anchor_chain(store, str(audited.bare), audited.state, warn=warnings.append)
    assert not outcome.written and outcome.anchor == audited.anchors[0]
    assert warnings == [
        f"event {audited.head} differs from the {audited.anchors[0].describe()}: "
        "not anchoring over it (run qrelease audit verify)"
    ]
    assert audited.git("rev-parse", anchor_ref(audited.anchors[0].controller)) == (
        audited.anchors[0].commit
    )
    code, out, err = audited.cli("audit", "verify")
    assert code == 1 and f"event {audited.head}: hash differs from the" in err
    assert "the last attempt to anchor the chain failed at" in out


def test_a_refused_push_is_a_warning_and_verify_says_the_anchor_is_older(
    audited: Audited,
) -> None:
    hook = audited.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'audit refs are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    with audited.store() as store:
        store.append(audited.draft(7), time=T1)
        warnings: list[str] = []
        outcome = anchor_chain(
            store, str(audited.bare), audited.state, clock=lambda: T1, warn=warnings.append
        )
    assert not outcome.written and len(warnings) == 1
    assert "pre-receive hook declined" in warnings[0] and "audit refs are frozen" in warnings[0]
    code, out, err = audited.cli("audit", "verify")
    assert (code, err) == (0, "")
    assert (
        f"the newest {audited.anchors[0].describe()} is older than the chain: "
        "1 event after it is not anchored yet"
    ) in out
    assert f"the last attempt to anchor the chain failed at {T1.isoformat()}: push refused" in out
    hook.unlink()
    with audited.store() as store:
        assert anchor_chain(store, str(audited.bare), audited.state).written
        assert last_failure(store) is None


def test_verify_without_a_controller_id_names_the_anchored_controllers(
    audited: Audited,
) -> None:
    controller = controller_id(audited.state)
    (audited.state / CONTROLLER_ID_FILE).unlink()
    code, _, err = audited.cli("audit", "verify")
    assert code == 1
    assert err.splitlines()[0] == (
        "no controller id to match the chain with its anchors; the repository holds anchors of "
        f"{controller} (give --controller)"
    )
    assert audited.cli("audit", "verify", "--controller", controller)[0] == 0


# -- exported ---------------------------------------------------------------------------


def test_an_exported_chain_verifies_offline_and_a_doctored_one_fails(
    audited: Audited, tmp_path: Path
) -> None:
    export = tmp_path / "chain.jsonl"
    code, out, _ = audited.cli("audit", "export", "--output", str(export))
    controller = controller_id(audited.state)
    assert (code, out) == (
        0,
        f"{audited.head} events written to {export} (controller {controller})\n",
    )
    header, *lines = export.read_text().splitlines()
    assert json.loads(header)["controller"] == controller and len(lines) == audited.head
    elsewhere = tmp_path / "auditor"  # no state dir of the controller's: only the export and Git

    def verify(text: str) -> tuple[int, str, str]:
        doctored = tmp_path / "doctored.jsonl"
        doctored.write_text(text)
        return audited.cli("audit", "verify", "--from-export", str(doctored), state=elsewhere)

    code, out, err = verify("\n".join([header, *lines]) + "\n")
    assert (code, err) == (0, "") and "chain intact" in out
    newest = audited.anchors[0].describe()
    code, _, err = verify("\n".join([header, *lines[:-2]]) + "\n")
    assert code == 1
    assert (
        err.splitlines()[0]
        == f"2 events missing after seq {audited.head - 2}: the {newest} records them"
    )
    events = [Event.model_validate_json(line) for line in lines]
    forged = rehashed(events, edit_seq=3)
    code, _, err = verify("\n".join([header, *(e.model_dump_json() for e in forged)]) + "\n")
    assert code == 1 and err.startswith(f"event {audited.anchors[1].seq}: hash differs from the")
    edited = lines[4].replace('"reason":"', '"reason":"not ', 1)
    code, _, err = verify("\n".join([header, *lines[:4], edited, *lines[5:]]) + "\n")
    assert code == 1 and err.splitlines()[0] == "event 5: hash mismatch (content edited)"
    broken = lines[6].replace('"seq":7', '"seq":"seven"')
    code, _, err = verify("\n".join([header, *lines[:6], broken, *lines[7:]]) + "\n")
    assert code == 1 and f"{tmp_path / 'doctored.jsonl'}:8: seq: " in err
    stranger = header.replace(controller, "feedfacefeedface")
    code, _, err = verify("\n".join([stranger, *lines]) + "\n")
    assert code == 1 and err.splitlines()[0] == (
        "no anchors of controller feedfacefeedface in the repository: "
        "nothing to check a cut-off tail or a rewrite against"
    )
    code, _, err = verify("not an export\n")
    assert code == 1 and err.strip().endswith(
        "doctored.jsonl:1: format: not a qrelease audit export (no header line)"
    )


def test_export_to_standard_output_streams_the_same_lines(audited: Audited) -> None:
    code, out, _ = audited.cli("audit", "export")
    header, *lines = out.splitlines()
    assert code == 0 and json.loads(header)["format"] == "qrelease-audit-export"
    assert [Event.model_validate_json(line) for line in lines] == stored_events(audited)


# -- incremental verify -----------------------------------------------------------------------


def test_an_incremental_verify_reads_only_what_came_after_the_last_verified_anchor(
    audited: Audited,
) -> None:
    code, out, _ = audited.cli("audit", "verify", "--incremental")
    assert code == 0 and "no verified anchor to start from: the whole chain was read" in out
    assert f"{audited.head} events: chain intact" in out
    with audited.store() as store:
        for index in range(3):
            store.append(audited.draft(index), time=T1)
    code, out, _ = audited.cli("audit", "verify", "--incremental")
    assert code == 0, out
    assert f"events up to seq {audited.head} were verified before (anchored in Git)" in out
    assert "3 events: chain intact, every revision in Git" in out


def test_an_incremental_verify_still_finds_a_break_after_the_anchor(audited: Audited) -> None:
    assert audited.cli("audit", "verify")[0] == 0  # records the verified anchor
    with audited.store() as store:
        store.append(audited.draft(0), time=T1)
    audited.tamper(f"UPDATE events SET reason = 'edited' WHERE seq = {audited.head + 1}")  # noqa: S608 an int
    code, _, err = audited.cli("audit", "verify", "--incremental")
    assert code == 1
    assert err.splitlines()[0] == f"event {audited.head + 1}: hash mismatch (content edited)"


def test_an_incremental_verify_reads_everything_when_the_anchored_event_changed(
    audited: Audited,
) -> None:
    assert audited.cli("audit", "verify")[0] == 0
    forged = rehashed(stored_events(audited), edit_seq=2)
    rewrite(audited, forged)
    code, out, err = audited.cli("audit", "verify", "--incremental")
    assert code == 1 and "the whole chain was read" in out
    assert err.startswith(f"event {audited.anchors[1].seq}: hash differs from the")


def test_the_quick_row_check_and_the_model_agree_on_every_stored_event(audited: Audited) -> None:
    from qrelease.store.audit import stored_hash_matches

    audited.tamper(
        'UPDATE events SET details = \'{"n": 1e16, "s": "\\u00e9"}\' WHERE seq = 2',
        "UPDATE events SET time = '2026-05-01 12:00:00+00:00' WHERE seq = 3",
        "UPDATE events SET env = 5 WHERE seq = 4",
    )
    columns = "seq, time, env, app, action, from_version, to_version, revision, actor, reason, "
    columns += "outcome, details, prev_hash, hash"
    with closing(sqlite3.connect(audited.state / DB_NAME)) as db:
        rows = db.execute(f"SELECT {columns} FROM events ORDER BY seq").fetchall()  # noqa: S608 constant
    with audited.store() as store:
        report = store.verify()
    broken = {b.seq for b in report.breaks}
    assert {2, 4} <= broken
    for row in rows:
        if stored_hash_matches(row):
            assert row[0] not in broken
