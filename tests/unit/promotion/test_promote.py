"""Promotion, rollback, diff, history and audit on a real bare remote and a real store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability
from qrelease.promotion.promote import Promoter, PromotionError
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.pinlog import pin_commits, rollback_hold
from qrelease.source.pins import set_pin
from qrelease.source.publish import PinConflict
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from tests.helpers.gitops import GitOpsRepo

DEPLOYED_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
LATER = DEPLOYED_AT + timedelta(hours=2)


class Remote:
    """A bare GitOps remote reconciled once by an engine over fakes, plus a promoter."""

    def __init__(self, work: GitOpsRepo, root: Path) -> None:
        self.bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(self.bare)], check=True)
        self.state = root / "state"
        self.store = open_store(self.state)
        self.quantum = MemoryQuantum()
        with GitRepo(self.bare) as repo:
            backends = Backends(lambda env: MemoryDeployer(), lambda env: self.quantum)
            Engine(repo, self.store, backends, clock=lambda: DEPLOYED_AT).reconcile("main")
        self.other = GitOpsRepo(root / "colleague")
        subprocess.run(["git", "clone", "-q", str(self.bare), str(self.other.path)], check=True)

    def promoter(self, now: datetime = LATER) -> Promoter:
        return Promoter(
            str(self.bare), self.state, self.store, lambda env: self.quantum, lambda: now
        )

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.bare), *args], check=True, capture_output=True, text=True
        ).stdout

    def rows(self) -> dict[tuple[str, str], ObservedState]:
        """What the controller recorded, as auto-promotion is handed it."""
        return dict(self.store.observed_by_key())

    def file(self, path: str, rev: str = "main") -> str:
        return self.git("show", f"{rev}:{path}")


@pytest.fixture
def remote(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[Remote]:
    remote = Remote(example_repo, tmp_path)
    yield remote
    remote.store.close()


def test_pin_edit_keeps_every_other_byte() -> None:
    text = (
        "# staging\nenvironment: staging   # keep this comment\napps:\n"
        "  bell-service: '1.1.0'   # quoted on purpose\n  qrng: 0.2.0\n\n  # trailing comment\n"
    )
    edited = set_pin(text, "bell-service", "1.2.0")
    assert edited == text.replace("'1.1.0'", "'1.2.0'")
    assert set_pin(text, "qrng", "0.3.0") == text.replace("qrng: 0.2.0", "qrng: 0.3.0")
    added = set_pin(text, "teleport", "0.1.0")
    assert added == text.replace("  qrng: 0.2.0\n", "  qrng: 0.2.0\n  teleport: 0.1.0\n")


def test_promotion_refused_names_every_failed_check_and_commits_nothing(remote: Remote) -> None:
    head = remote.git("rev-parse", "main")
    result = remote.promoter(DEPLOYED_AT + timedelta(minutes=1)).promote(
        "bell-service", "staging", None, "ship it"
    )
    assert result.refused
    assert [c.name for c in result.checks if not c.passed] == ["soak"]
    assert remote.git("rev-parse", "main") == head


def test_promotion_commits_only_the_pin_line_with_trailers(remote: Remote) -> None:
    before = remote.file("releases/staging.yaml")
    result = remote.promoter().promote(
        "bell-service",
        "staging",
        None,
        "feed-forward Bell pairs",
        actor="Ada Lovelace <ada@example.com>",
    )
    assert not result.refused and result.published and result.published.pushed
    after = remote.file("releases/staging.yaml")
    assert after == before.replace("bell-service: 1.1.0", "bell-service: 1.2.0")
    message = remote.git("log", "-1", "--format=%an <%ae>%n%B", "main")
    assert message.startswith(
        "Ada Lovelace <ada@example.com>\npromote bell-service 1.1.0 -> 1.2.0 in staging"
    )
    for trailer in (
        "Qrelease-Action: promote",
        "Qrelease-App: bell-service",
        "Qrelease-Env: staging",
        "Qrelease-From: 1.1.0",
        "Qrelease-To: 1.2.0",
        "Qrelease-Reason: feed-forward Bell pairs",
    ):
        assert trailer in message
    event = remote.store.events(env="staging", app="bell-service", actions=["promote"])[-1]
    assert event.outcome == "Committed" and event.revision == result.published.commit


def test_force_overrides_and_is_recorded(remote: Remote) -> None:
    result = remote.promoter(DEPLOYED_AT).promote("qrng", "prod", None, "hotfix", force=True)
    assert result.published is not None
    assert "Qrelease-Override: soak" in remote.git("log", "-1", "--format=%B", "main")
    event = remote.store.events(env="prod", app="qrng", actions=["promote"])[-1]
    assert event.outcome == "Forced" and event.details["override"] == ["soak"]


def test_deny_window_and_unavailable_target_refuse(remote: Remote) -> None:
    friday_evening = datetime(2026, 11, 6, 18, 0, tzinfo=UTC)
    remote.quantum.availability["rigetti.sim.qvm"] = Availability.UNAVAILABLE
    staging = remote.file("releases/staging.yaml")
    assert "qrng: 0.2.0" in staging
    result = remote.promoter(friday_evening).promote("qrng", "prod", None, "weekend fun")
    failed = {c.name: c.detail for c in result.checks if not c.passed}
    assert "window" in failed and "no Friday-evening releases" in failed["window"]
    remote.quantum.availability["ionq.simulator"] = Availability.UNAVAILABLE
    result = remote.promoter().promote("qrng", "prod", None, "x")
    assert [c.name for c in result.checks if not c.passed] == ["target-available"]


def test_rollback_defaults_to_last_healthy_and_holds(remote: Remote) -> None:
    remote.promoter().promote("bell-service", "staging", None, "try 1.2.0")
    with GitRepo(remote.bare) as repo:
        backends = Backends(lambda env: MemoryDeployer(), lambda env: remote.quantum)
        Engine(repo, remote.store, backends, clock=lambda: LATER).reconcile("main")
    result = remote.promoter(LATER).rollback("bell-service", "staging", None, "1.2.0 misbehaves")
    assert result.change.to_version == "1.1.0" and result.published is not None
    assert "bell-service: 1.1.0" in remote.file("releases/staging.yaml")
    with GitRepo(remote.bare) as repo:
        hold = rollback_hold(repo, "main", "staging", "bell-service")
        assert hold is not None and hold.reason == "1.2.0 misbehaves"
    remote.promoter(LATER + timedelta(hours=1)).promote(
        "bell-service", "staging", "1.2.0", "fixed", force=True
    )
    with GitRepo(remote.bare) as repo:
        assert rollback_hold(repo, "main", "staging", "bell-service") is None


def test_rollback_refuses_a_manifest_that_no_longer_validates(remote: Remote) -> None:
    remote.other.write("manifests/bell-service/1.0.0.yaml", "app: bell-service\n")
    remote.other.commit("break 1.0.0")
    remote.other.git("push", "-q", "origin", "main")
    with pytest.raises(
        PromotionError,
        match=r"bell-service 1.0.0 does not validate: manifests/bell-service/1.0.0.yaml",
    ):
        remote.promoter().rollback("bell-service", "prod", "1.0.0", "x")


def test_lost_push_race_is_rebased_when_the_pin_is_untouched(remote: Remote) -> None:
    def colleague_pushes(attempt: int) -> None:
        if attempt == 1:
            remote.other.write("README.md", "a colleague's change\n")
            remote.other.commit("docs")
            remote.other.git("push", "-q", "origin", "main")

    promoter = remote.promoter()
    promoter.before_push = colleague_pushes
    result = promoter.promote("bell-service", "staging", None, "ship")
    assert result.published is not None and result.published.attempts == 2
    log = remote.git("log", "--format=%s", "main").splitlines()
    assert log[:2] == ["promote bell-service 1.1.0 -> 1.2.0 in staging", "docs"]


def test_conflicting_pin_change_is_refused_naming_the_other_commit(remote: Remote) -> None:
    def colleague_moves_same_pin(attempt: int) -> None:
        text = remote.other.read("releases/staging.yaml").replace(
            "bell-service: 1.1.0", "bell-service: 1.0.0"
        )
        remote.other.write("releases/staging.yaml", text)
        remote.other.commit("colleague pins 1.0.0")
        remote.other.git("push", "-q", "origin", "main")

    promoter = remote.promoter()
    promoter.before_push = colleague_moves_same_pin
    with pytest.raises(PinConflict) as raised:
        promoter.promote("bell-service", "staging", None, "ship")
    other = remote.git("rev-parse", "main").strip()
    assert raised.value.other_commit == other and other[:12] in str(raised.value)
    assert "bell-service: 1.0.0" in remote.file("releases/staging.yaml")  # their change kept


def colleague_pins(remote: Remote, env: str, app: str, version: str) -> str:
    """A colleague moves one pin on the remote by hand; returns their commit."""
    remote.other.git("pull", "-q", "--ff-only", "origin", "main")
    path = f"releases/{env}.yaml"
    remote.other.write(path, set_pin(remote.other.read(path), app, version))
    commit = remote.other.commit(f"colleague pins {app} {version} in {env}")
    remote.other.git("push", "-q", "origin", "main")
    return commit


def test_a_pin_moved_after_the_checks_is_not_overwritten(remote: Remote) -> None:
    promoter = remote.promoter()
    assert promoter.snapshot().environments["staging"].apps["bell-service"] == "1.1.0"
    mover = colleague_pins(remote, "staging", "bell-service", "1.0.0")
    colleague_pins(remote, "staging", "qrng", "0.1.0")  # a later commit that moves another pin
    head = remote.git("rev-parse", "main").strip()
    with pytest.raises(PinConflict) as raised:
        promoter.promote("bell-service", "staging", None, "ship")
    assert raised.value.other_commit == mover  # the commit that moved this pin, not the newest
    assert str(raised.value).startswith(
        f"releases/staging.yaml: apps.bell-service is now 1.0.0, set by {mover[:12]} "
        "(Test Author: colleague pins bell-service 1.0.0 in staging), not 1.1.0 as checked; "
        "nothing was committed"
    )
    assert remote.git("rev-parse", "main").strip() == head
    assert remote.store.events(env="staging", app="bell-service", actions=["promote"]) == []


def test_the_loser_of_a_same_version_race_is_told_who_pinned_it(remote: Remote) -> None:
    promoter = remote.promoter()
    promoter.snapshot()
    winner = colleague_pins(remote, "staging", "bell-service", "1.2.0")
    with pytest.raises(PinConflict) as raised:
        promoter.promote("bell-service", "staging", "1.2.0", "ship")
    assert raised.value.other_commit == winner
    assert str(raised.value).startswith(
        f"bell-service is already pinned to 1.2.0 in staging by {winner[:12]} "
    )


def test_a_same_version_race_lost_at_the_push_is_told_who_pinned_it(remote: Remote) -> None:
    winner: list[str] = []

    def colleague_ships_first(attempt: int) -> None:
        if attempt == 1:
            winner.append(colleague_pins(remote, "staging", "bell-service", "1.2.0"))

    promoter = remote.promoter()
    promoter.before_push = colleague_ships_first
    with pytest.raises(PinConflict, match=r"already pinned to 1\.2\.0 in staging by ") as raised:
        promoter.promote("bell-service", "staging", "1.2.0", "ship")
    assert raised.value.other_commit == winner[0] and "nothing was pushed" in str(raised.value)
    assert remote.git("rev-parse", "main").strip() == winner[0]


RACE_ROUNDS = 20
RACE_VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
Outcome = str | PinConflict | BaseException
"""A race contender's end: its pushed commit, the conflict that stopped it, or a failure."""


def race_once(
    remote: Remote, states: Path, versions: list[str], *, one_after_another: bool
) -> dict[str, Outcome]:
    """Each version promoted to prod by its own promoter: all judge the pin, then all publish.

    They publish at once, or (`one_after_another`) each only when the one before has finished:
    the lost update of issue 13, where the later one resets to a head the checks never saw.
    """
    judged = threading.Barrier(len(versions))
    finished = [threading.Event() for _ in versions]
    outcomes: dict[str, Outcome] = {}

    def contend(index: int, version: str) -> None:
        store = open_store("memory:")
        state = states / f"state-{version}"
        promoter = Promoter(
            str(remote.bare), state, store, lambda env: MemoryQuantum(), lambda: LATER
        )
        try:
            promoter.snapshot()  # every contender judges the same pin ...
            judged.wait()  # ... before any of them publishes
            if one_after_another and index:
                finished[index - 1].wait()
            result = promoter.promote("bell-service", "prod", version, "race", force=True)
            assert result.published is not None
            outcomes[version] = result.published.commit
        except BaseException as ended:  # reported by the test, not lost in the thread
            outcomes[version] = ended
        finally:
            store.close()
            finished[index].set()

    threads = [threading.Thread(target=contend, args=pair) for pair in enumerate(versions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_racing_promotions_with_different_versions_lose_no_update(
    remote: Remote, tmp_path: Path
) -> None:
    winners: list[tuple[str, str]] = []
    for round_number in range(RACE_ROUNDS):
        pinned = remote.file("releases/prod.yaml").split("bell-service: ")[1].split()[0]
        contenders = [v for v in RACE_VERSIONS if v != pinned]
        outcomes = race_once(remote, tmp_path, contenders, one_after_another=round_number % 2 == 0)
        won = [(version, end) for version, end in outcomes.items() if isinstance(end, str)]
        lost = [end for end in outcomes.values() if isinstance(end, PinConflict)]
        assert len(won) == 1 and len(lost) == 1, (round_number, outcomes)
        version, commit = won[0]
        assert lost[0].other_commit == commit and commit[:12] in str(lost[0])
        winners.append((commit, version))
    with GitRepo(remote.bare) as repo:
        history = [
            (change.commit, change.from_version, change.to_version)
            for change in reversed(pin_commits(repo, "main"))
            if (change.env, change.app) == ("prod", "bell-service")
        ]
    froms = ["1.0.0", *[version for _, version in winners[:-1]]]
    expected = [(c, before, v) for (c, v), before in zip(winners, froms, strict=True)]
    assert history[0][1:] == (None, "1.0.0")  # the initial commit
    assert history[1:] == expected  # every winner on the branch, in order, each from the last


def test_promotions_sharing_a_state_dir_take_turns_and_both_land(remote: Remote) -> None:
    """Two terminals on one machine, one `.qrelease/`: the scratch clone serves one at a time."""
    judged = threading.Barrier(2)
    outcomes: dict[str, Outcome] = {}

    def promote(app: str, version: str) -> None:
        store = open_store("memory:")
        state = remote.state / "shared"
        promoter = Promoter(
            str(remote.bare), state, store, lambda env: MemoryQuantum(), lambda: LATER
        )
        try:
            promoter.snapshot()
            judged.wait()
            result = promoter.promote(app, "prod", version, "both", force=True)
            outcomes[app] = result.published.commit if result.published else "refused"
        except BaseException as ended:  # reported by the test, not lost in the thread
            outcomes[app] = ended
        finally:
            store.close()

    threads = [
        threading.Thread(target=promote, args=pair)
        for pair in (("bell-service", "1.2.0"), ("qrng", "0.2.0"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(end, str) and end != "refused" for end in outcomes.values()), outcomes
    prod = remote.file("releases/prod.yaml")
    assert "bell-service: 1.2.0" in prod and "qrng: 0.2.0" in prod


def cli(remote: Remote, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, [*args, "--repo", str(remote.bare), "--state", str(remote.state)]
    )
    return result.exit_code, result.stdout, result.stderr


def test_cli_refusal_exit_1_and_diff(remote: Remote) -> None:
    remote.store.close()
    args = ("promote", "bell-service", "--to", "prod", "--version", "1.2.0", "--reason", "now")
    code, _, err = cli(remote, *args)
    assert code == 1 and "refused" in err
    assert "✗ upstream-healthy: staging runs 1.1.0, not 1.2.0" in err and "✗ upstream-gates" in err
    code, out, _ = cli(remote, "diff", "bell-service", "1.1.0", "1.2.0")
    assert code == 0
    assert "quantum.target.profile" in out and "+        if first == One {" in out
    remote.store = open_store(remote.state)


def test_history_joins_git_and_controller_events(remote: Remote) -> None:
    remote.promoter().promote("bell-service", "staging", None, "ship")
    remote.store.close()
    code, out, _ = cli(
        remote, "history", "--env", "staging", "--app", "bell-service", "--format", "json"
    )
    rows = json.loads(out)
    assert code == 0
    assert {
        "seq",
        "time",
        "env",
        "app",
        "action",
        "from_version",
        "to_version",
        "revision",
        "actor",
        "reason",
        "outcome",
        "hash",
    } <= set(rows[0])
    sources = {(r["source"], r["action"]) for r in rows}
    assert ("controller", "deploy") in sources
    (promotion,) = [r for r in rows if r["action"] == "promote"]  # one entry, not two
    author = remote.git("log", "-1", "--format=%an <%ae>", "main").strip()
    assert promotion["source"] == "git+controller" and promotion["actor"] == author
    assert promotion["seq"] is not None and promotion["hash"] and promotion["reason"] == "ship"
    code, out, _ = cli(remote, "history", "--format", "csv")
    assert out.splitlines()[0].startswith("seq,time,env,app,action")
    remote.store = open_store(remote.state)


def test_audit_verify_finds_an_edited_event(remote: Remote) -> None:
    remote.store.close()
    code, out, _ = cli(remote, "audit", "verify")
    assert code == 0 and "chain intact" in out
    with sqlite3.connect(remote.state / "qrelease.db") as db:
        db.execute("DROP TRIGGER IF EXISTS events_no_update")
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE events SET outcome='Healthy' WHERE seq=3")
    code, _, err = cli(remote, "audit", "verify")
    assert code == 1 and "event 3: hash mismatch" in err
    remote.store = open_store(remote.state)


def test_audit_verify_finds_a_revision_missing_from_git(remote: Remote, tmp_path: Path) -> None:
    from qrelease.model.events import EventDraft

    remote.store.append(EventDraft(env="dev", app="qrng", action="deploy", revision="f" * 40))
    remote.store.close()
    code, _, err = cli(remote, "audit", "verify")
    assert code == 1 and "revision ffffffffffff is not in the repository's history" in err
    remote.store = open_store(remote.state)


def test_auto_promotion_commits_as_the_controller_and_respects_a_rollback_hold(
    remote: Remote,
) -> None:
    from qrelease.promotion.auto import auto_promote

    staging = remote.other.read("releases/staging.yaml").replace(
        "auto_promote: false", "auto_promote: true"
    )
    remote.other.write("releases/staging.yaml", staging)
    remote.other.commit("staging auto-promotes")
    remote.other.git("push", "-q", "origin", "main")
    promoter = remote.promoter()
    with GitRepo(remote.bare) as repo:
        held = lambda env, app: rollback_hold(repo, "main", env, app) is not None  # noqa: E731
        results = auto_promote(promoter, promoter.snapshot(), remote.rows(), held)
    assert [(r.change.env, r.change.app, r.change.to_version) for r in results] == [
        ("staging", "bell-service", "1.2.0")
    ]
    assert remote.git("log", "-1", "--format=%an", "main").strip() == "qrelease-controller"
    # roll it back: the next auto-promotion pass leaves it alone
    with GitRepo(remote.bare) as repo:
        backends = Backends(lambda env: MemoryDeployer(), lambda env: remote.quantum)
        Engine(repo, remote.store, backends, clock=lambda: LATER).reconcile("main")
    remote.promoter().rollback("bell-service", "staging", "1.1.0", "not yet")
    promoter = remote.promoter(LATER + timedelta(hours=3))
    with GitRepo(remote.bare) as repo:
        held = lambda env, app: rollback_hold(repo, "main", env, app) is not None  # noqa: E731
        assert auto_promote(promoter, promoter.snapshot(), remote.rows(), held) == []


def test_auto_promotion_leaves_a_suspended_app_alone(remote: Remote) -> None:
    from qrelease.promotion.auto import auto_promote, candidates

    staging = remote.other.read("releases/staging.yaml").replace(
        "auto_promote: false", "auto_promote: true"
    )
    remote.other.write("releases/staging.yaml", staging)
    remote.other.commit("staging auto-promotes")
    remote.other.git("push", "-q", "origin", "main")
    promoter = remote.promoter()
    assert ("staging", "bell-service", "1.2.0") in candidates(promoter.snapshot(), remote.rows())
    promoter.suspend("bell-service", "staging", "incident 4711")
    promoter = remote.promoter()
    assert promoter.snapshot().environments["staging"].policy.suspended == {
        "bell-service": "incident 4711"
    }
    head = remote.git("rev-parse", "main")
    assert auto_promote(promoter, promoter.snapshot(), remote.rows(), lambda e, a: False) == []
    assert remote.git("rev-parse", "main") == head


def test_untrusted_head_holds_every_environment(remote: Remote) -> None:
    from qrelease.source.signatures import TrustedKeys, verify_revision

    keys = TrustedKeys(allowed_signers=remote.state / "allowed_signers")
    keys.allowed_signers.write_text("")  # type: ignore[union-attr]
    with GitRepo(remote.bare) as repo:
        verify = lambda rev: verify_revision(repo, rev, keys)  # noqa: E731
        backends = Backends(lambda env: MemoryDeployer(), lambda env: remote.quantum)
        engine = Engine(repo, remote.store, backends, clock=lambda: LATER, verify=verify)
        result = engine.reconcile("main")
    assert {a.kind.value for a in result.plan.actions} == {"Hold"}
    state = remote.store.get_observed("prod", "qrng")
    assert state is not None and "is not signed; nothing from it is applied" in state.message


def test_ssh_signed_head_from_a_trusted_key_is_applied(remote: Remote, tmp_path: Path) -> None:
    from qrelease.source.signatures import TrustedKeys, verify_revision

    key = tmp_path / "release-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rm@example.com", "-f", str(key)],
        check=True,
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"author@example.test {key.with_suffix('.pub').read_text()}")
    remote.other.git("config", "gpg.format", "ssh")
    remote.other.git("config", "user.signingkey", str(key))
    remote.other.write("README.md", "signed\n")
    remote.other.git("add", "README.md")
    remote.other.git("commit", "-q", "-S", "-m", "signed change")
    remote.other.git("push", "-q", "origin", "main")
    with GitRepo(remote.bare) as repo:
        assert verify_revision(repo, "main", TrustedKeys(allowed_signers=allowed)) is None
        stranger = tmp_path / "stranger"
        stranger.write_text("")
        problem = verify_revision(repo, "main", TrustedKeys(allowed_signers=stranger))
    assert problem is not None and "nothing from it is applied" in problem
