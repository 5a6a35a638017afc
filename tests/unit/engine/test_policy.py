"""The controller enforces release policy on every pin change, however it reached Git.

A real bare remote that people push to by hand, the real engine over the in-memory
deployer and quantum fakes, a real SQLite store and a clock the tests move.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine, PassReport
from qrelease.evidence import release_digest
from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import GateOutcome, Health, Rollout
from qrelease.promotion.promote import Promoter
from qrelease.quantum.base import GateReport, GateResult
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.approvals import record_approval
from qrelease.source.loader import Loader
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys
from qrelease.store import open_store
from qrelease.verdicts import record_review
from tests.helpers.gitops import GitOpsRepo

MONDAY = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
FREEZE = (
    "  freezes:\n"
    "    - {start: 2026-05-04T10:00:00Z, end: 2026-05-04T18:00:00Z, reason: launch day}\n"
)


class Fleet:
    """A GitOps work tree pushing to a bare remote the engine reads, and a clock."""

    def __init__(self, work: GitOpsRepo, root: Path, keys: TrustedKeys | None = None) -> None:
        self.work, self.root = work, root
        self.bare = root / "remote.git"
        work.git("clone", "--quiet", "--bare", str(work.path), str(self.bare))
        work.git("remote", "add", "origin", str(self.bare))
        self.now = MONDAY
        self.deployer, self.quantum = MemoryDeployer(), MemoryQuantum()
        self.state = root / "state"
        self.store = open_store(self.state)
        self.repo = GitRepo(self.bare)
        backends = Backends(lambda env: self.deployer, lambda env: self.quantum)
        self.engine = Engine(
            self.repo, self.store, backends, clock=lambda: self.now, trusted_keys=keys
        )

    def close(self) -> None:
        self.store.close()
        self.repo.close()

    def edit(self, env: str, old: str, new: str, message: str, *git_args: str) -> str:
        path = f"releases/{env}.yaml"
        text = self.work.read(path)
        assert old in text, f"{old!r} not in {path}"
        self.work.write(path, text.replace(old, new))
        self.work.git("add", "--all")
        self.work.git("commit", "--quiet", "--allow-empty", *git_args, "-m", message)
        self.work.git("push", "--quiet", "origin", "main")
        return self.work.head

    def reconcile(self) -> PassReport:
        return self.engine.reconcile("main")

    def row(self, env: str, app: str) -> ObservedState:
        state = self.store.get_observed(env, app)
        assert state is not None
        return state


@pytest.fixture
def fleet(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[Fleet]:
    the_fleet = Fleet(example_repo, tmp_path)
    the_fleet.reconcile()
    the_fleet.now += timedelta(hours=2)  # every soak of the example has passed
    yield the_fleet
    the_fleet.close()


def test_a_hand_pushed_pin_into_a_freeze_is_held_and_goes_live_when_it_ends(
    fleet: Fleet,
) -> None:
    fleet.edit("prod", "  auto_rollback: true\n", "  auto_rollback: true\n" + FREEZE, "freeze")
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "by hand, no tool")
    held = fleet.reconcile()
    row = fleet.row("prod", "bell-service")
    assert (row.deployed, row.rollout, row.health) == ("1.0.0", Rollout.HELD, Health.HEALTHY)
    assert "held by policy" in row.message and "frozen until 2026-05-04T18:00:00" in row.message
    assert "launch day" in row.message
    assert held.next_retry_at == datetime(2026, 5, 4, 18, 0, tzinfo=UTC)  # when to look again
    assert ("prepare", "prod", "bell-service", "1.1.0") not in fleet.deployer.calls
    fleet.now = datetime(2026, 5, 4, 18, 0, tzinfo=UTC)
    fleet.reconcile()  # no new commit: the freeze ended
    row = fleet.row("prod", "bell-service")
    assert (row.deployed, row.rollout) == ("1.1.0", Rollout.SUCCEEDED)


def test_soak_holds_a_promotion_until_it_has_elapsed(fleet: Fleet) -> None:
    fleet.now = MONDAY + timedelta(minutes=30)  # staging has run 1.1.0 for 30 min; prod soaks 1h
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "promote early")
    fleet.reconcile()
    row = fleet.row("prod", "bell-service")
    assert (
        row.rollout == Rollout.HELD and "soak: Healthy in staging for 30m (soak 1h)" in row.message
    )
    assert row.retry_at == MONDAY + timedelta(hours=1)
    fleet.now = MONDAY + timedelta(minutes=40)
    fleet.reconcile()  # a resync: the same hold, its text says 40m now
    assert "for 40m (soak 1h)" in fleet.row("prod", "bell-service").message
    holds = fleet.store.events(env="prod", app="bell-service", actions=["hold"])
    assert len(holds) == 1  # the audit log records the hold once, not once per pass
    fleet.now = MONDAY + timedelta(hours=1)
    fleet.reconcile()
    assert fleet.row("prod", "bell-service").deployed == "1.1.0"


def test_a_rollback_skips_soak_and_upstream_checks_but_not_a_freeze(fleet: Fleet) -> None:
    fleet.edit("dev", "bell-service: 1.2.0", "bell-service: 1.1.0", "back, by hand")
    fleet.reconcile()
    assert fleet.row("dev", "bell-service").deployed == "1.1.0"
    fleet.edit("staging", "  auto_rollback: true\n", "  auto_rollback: true\n" + FREEZE, "freeze")
    fleet.edit("staging", "qrng: 0.2.0", "qrng: 0.1.0", "back during the freeze")
    fleet.reconcile()
    row = fleet.row("staging", "qrng")
    assert row.rollout == Rollout.HELD and "frozen until" in row.message


def test_an_override_trailer_with_a_reason_lets_a_change_through_and_is_recorded(
    fleet: Fleet,
) -> None:
    fleet.edit("prod", "  auto_rollback: true\n", "  auto_rollback: true\n" + FREEZE, "freeze")
    message = (
        "hotfix bell-service 1.1.0 in prod\n\nbreak glass: launch blocker\n\n"
        "Qrelease-Action: promote\nQrelease-App: bell-service\nQrelease-Env: prod\n"
        "Qrelease-Reason: launch blocker\nQrelease-Override: window\n"
    )
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", message)
    report = fleet.reconcile()
    assert fleet.row("prod", "bell-service").deployed == "1.1.0"
    (app,) = [a for a in report.apps if a.key == ("prod", "bell-service")]
    deployed = fleet.store.last_event("prod", "bell-service", "deploy")
    assert deployed is not None and "✓ window: frozen until" in " ".join(deployed.details["checks"])
    assert "(overridden)" in " ".join(deployed.details["checks"])
    assert app.outcome == Rollout.SUCCEEDED


def test_a_suspended_app_is_untouched_by_a_pin_change(fleet: Fleet) -> None:
    fleet.edit(
        "prod",
        "  auto_rollback: true\n",
        "  auto_rollback: true\n  suspended: {bell-service: incident 4711}\n",
        "suspend bell-service in prod",
    )
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "pin while suspended")
    before = len(fleet.deployer.calls)
    fleet.reconcile()
    row = fleet.row("prod", "bell-service")
    assert (row.deployed, row.health, row.rollout) == ("1.0.0", Health.SUSPENDED, Rollout.HELD)
    assert row.message == "suspended: incident 4711"
    touched = [c for c in fleet.deployer.calls[before:] if c[1:3] == ("prod", "bell-service")]
    assert [c[0] for c in touched] == ["observe"]


def test_suspend_and_resume_are_commits_the_controller_and_promotion_obey(fleet: Fleet) -> None:
    where = ["--repo", str(fleet.bare), "--state", str(fleet.state)]
    ada = ["--actor", "Ada <ada@example.com>"]

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*args, *where])
        return result.exit_code, result.output

    code, out = run("suspend", "bell-service", "--env", "prod", "--reason", "incident 4711", *ada)
    assert code == 0 and out.startswith("suspended bell-service in prod: "), out
    shown = subprocess.run(
        ["git", "-C", str(fleet.bare), "show", "main:releases/prod.yaml"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert '  suspended:\n    bell-service: "incident 4711"\n' in shown
    assert run("suspend", "bell-service", "--env", "prod", "--reason", "again") == (
        1,
        "bell-service is already suspended in prod: incident 4711\n",
    )
    fleet.work.git("pull", "--quiet", "--ff-only", "origin", "main")
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "pin while suspended")
    fleet.reconcile()
    row = fleet.row("prod", "bell-service")
    assert (row.deployed, row.health, row.rollout_step) == ("1.0.0", Health.SUSPENDED, "suspended")
    code, out = run(
        "promote", "bell-service", "--to", "prod", "--version", "1.2.0", "--reason", "x"
    )
    assert code == 1 and "bell-service is suspended in prod (incident 4711)" in out
    code, out = run("resume", "bell-service", "--env", "prod", "--reason", "fixed", *ada)
    assert code == 0 and out.startswith("resumed bell-service in prod: "), out
    fleet.reconcile()
    assert fleet.row("prod", "bell-service").deployed == "1.1.0"
    events = [
        (e.action, e.actor, e.reason, e.outcome)
        for e in fleet.store.events(env="prod", app="bell-service", actions=["suspend", "resume"])
    ]
    assert events == [
        ("suspend", "Ada <ada@example.com>", "incident 4711", "Committed"),
        ("resume", "Ada <ada@example.com>", "fixed", "Committed"),
    ]


def _signing_key(root: Path, principal: str) -> tuple[Path, str]:
    key = root / f"{principal.split('@')[0]}-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)],
        check=True,
    )
    return key, f"{principal} {key.with_suffix('.pub').read_text().strip()}"


def _signing_fleet(
    work: GitOpsRepo, root: Path, trusted: tuple[str, ...], untrusted: tuple[str, ...] = ()
) -> tuple[Fleet, dict[str, Path], list[str]]:
    """A fleet that trusts the keys of `trusted` (the first signs the repo's commits); every
    name gets a key; returns the fleet, the keys and the allowed-signers lines."""
    keys, lines = {}, []
    for name in (*trusted, *untrusted):
        keys[name], line = _signing_key(root, f"{name}@example.com")
        if name in trusted:
            lines.append(line)
    allowed = root / "allowed_signers"
    allowed.write_text("\n".join(lines) + "\n")
    work.git("config", "gpg.format", "ssh")
    work.git("config", "user.signingkey", str(keys[trusted[0]]))
    work.git("config", "commit.gpgsign", "true")
    return Fleet(work, root, TrustedKeys(allowed_signers=allowed)), keys, lines


@pytest.fixture
def signed(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[tuple[Fleet, dict[str, Path]]]:
    """A fleet whose controller applies only signed commits, with three approvers' keys."""
    fleet, keys, lines = _signing_fleet(example_repo, tmp_path, ("rm", "alice", "bob", "carol"))
    fleet.now = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
    fleet.edit("prod", "  soak: 1h\n", "  soak: 1h\n", "signed head")  # heads must be signed
    fleet.reconcile()  # everything runs; then prod's policy gets stricter
    approvers = "[alice@example.com, bob@example.com, carol@example.com]"
    stricter = (
        "  auto_rollback: true\n"
        + FREEZE
        + f"  approvals: {{required: 2, approvers: {approvers}}}\n"
        + f"  overriders: ['{lines[0]}']\n"
    )
    fleet.edit("prod", "  auto_rollback: true\n", stricter, "prod: 2 of 3 approvals")
    fleet.now = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)  # soaked, still before the freeze
    fleet.reconcile()
    yield fleet, keys
    fleet.close()


@contextmanager
def _as_signer(fleet: Fleet, key: Path | None, version: str) -> Iterator[tuple[GitRepo, str, str]]:
    """The remote, set to sign with `key` (None: unsigned), with bell-service `version`'s
    release digest and the revision of main."""
    with GitRepo(fleet.bare) as repo:
        if key is not None:
            repo.git.config("gpg.format", "ssh")
            repo.git.config("user.signingkey", str(key))
        snapshot = Loader(repo).load("main")
        manifest = snapshot.manifest("bell-service", version)
        assert manifest is not None
        yield repo, release_digest(snapshot, manifest), snapshot.revision


def _approve(fleet: Fleet, key: Path, who: str, approves: bool = True) -> None:
    with _as_signer(fleet, key, "1.1.0") as (repo, digest, _revision):
        record_approval(
            repo,
            env="prod",
            app="bell-service",
            version="1.1.0",
            digest=digest,
            approves=approves,
            reason=f"{who} says so",
            actor=f"{who.title()} <{who}@example.com>",
            sign=True,
        )


def test_two_of_three_approvals_hold_prod_until_two_approvers_sign(
    signed: tuple[Fleet, dict[str, Path]],
) -> None:
    fleet, keys = signed
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "promote")
    fleet.reconcile()
    assert "approvals: 0 of 2 approvals" in fleet.row("prod", "bell-service").message
    _approve(fleet, keys["alice"], "alice")
    _approve(fleet, keys["alice"], "alice")  # the same approver twice counts once
    fleet.reconcile()
    assert (
        "approvals: 1 of 2 approvals (alice@example.com)"
        in fleet.row("prod", "bell-service").message
    )
    _approve(fleet, keys["rm"], "mallory")  # signed, but not by an approver's key
    fleet.reconcile()
    assert fleet.row("prod", "bell-service").deployed == "1.0.0"
    _approve(fleet, keys["bob"], "bob")
    fleet.reconcile()
    assert fleet.row("prod", "bell-service").deployed == "1.1.0"


def test_a_reject_blocks_until_its_approver_approves(signed: tuple[Fleet, dict[str, Path]]) -> None:
    fleet, keys = signed
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "promote")
    for who in ("alice", "bob"):
        _approve(fleet, keys[who], who)
    _approve(fleet, keys["carol"], "carol", approves=False)
    fleet.reconcile()
    row = fleet.row("prod", "bell-service")
    assert (
        row.deployed == "1.0.0" and "rejected by carol@example.com (carol says so)" in row.message
    )


def test_an_override_needs_a_signature_by_a_listed_overrider(
    signed: tuple[Fleet, dict[str, Path]],
) -> None:
    fleet, keys = signed
    fleet.now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)  # inside the freeze
    for who in ("alice", "bob"):
        _approve(fleet, keys[who], who)
    message = (
        "hotfix\n\nlaunch blocker\n\nQrelease-Action: promote\nQrelease-App: bell-service\n"
        "Qrelease-Env: prod\nQrelease-Reason: launch blocker\nQrelease-Override: window\n"
    )
    fleet.work.git("config", "user.signingkey", str(keys["alice"]))  # trusted, not an overrider
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", message)
    fleet.reconcile()
    row = fleet.row("prod", "bell-service")
    assert row.deployed == "1.0.0" and "override: override in" in row.message
    assert "not honoured" in row.message
    fleet.edit("prod", "bell-service: 1.1.0", "bell-service: 1.0.0", "withdrawn")
    fleet.work.git("config", "user.signingkey", str(keys["rm"]))  # the listed overrider
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", message)
    fleet.reconcile()
    assert fleet.row("prod", "bell-service").deployed == "1.1.0"


def test_the_cli_and_the_controller_reach_the_same_verdict(fleet: Fleet) -> None:
    fleet.now = MONDAY + timedelta(minutes=30)  # prod's soak has not passed
    promoter = Promoter(
        str(fleet.bare), fleet.state, fleet.store, lambda env: fleet.quantum, lambda: fleet.now
    )
    preview = promoter.preview("promote", "bell-service", "prod", "1.1.0")
    fleet.edit("prod", "bell-service: 1.0.0", "bell-service: 1.1.0", "by hand")
    report = fleet.reconcile()
    (action,) = [a for a in report.plan.actions if a.key == ("prod", "bell-service")]
    assert [c.render() for c in action.checks] == [c.render() for c in preview.checks]
    assert [c.name for c in preview.refused] == ["soak"]


def test_windows_shows_the_state_and_the_next_opening(fleet: Fleet) -> None:
    fleet.edit("prod", "  auto_rollback: true\n", "  auto_rollback: true\n" + FREEZE, "freeze")
    where = ["--repo", str(fleet.bare), "--state", str(fleet.state)]
    result = CliRunner().invoke(
        main, ["windows", "--env", "prod", *where, "--at", "2026-05-04T12:00:00Z", "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["open"], shown["next_open"]) == (False, "2026-05-04T18:00:00+00:00")
    assert shown["next_close"] == "2026-05-08T16:00:00+00:00"  # the Friday-evening deny window
    assert "launch day" in shown["reason"]


BAKE = "  bake: {duration: 10m, interval: 30s}\n"


def test_a_bake_watches_a_new_release_and_soak_downstream_counts_from_its_end(
    fleet: Fleet,
) -> None:
    fleet.edit("dev", "  auto_rollback: true\n", "  auto_rollback: true\n" + BAKE, "dev bakes")
    fleet.edit("dev", "qrng: 0.2.0", "qrng: 0.1.0", "older qrng, by hand")
    fleet.reconcile()
    row = fleet.row("dev", "qrng")
    assert (row.deployed, row.rollout, row.rollout_step) == ("0.1.0", Rollout.RUNNING, "bake")
    assert row.healthy_since is None and row.retry_at == fleet.now + timedelta(seconds=30)
    started = fleet.now
    checks = len([c for c in fleet.deployer.calls if c[0] == "check_health"])
    fleet.now = started + timedelta(seconds=10)
    fleet.reconcile()  # not due yet: nothing is checked
    assert len([c for c in fleet.deployer.calls if c[0] == "check_health"]) == checks
    fleet.now = started + timedelta(seconds=30)
    fleet.reconcile()
    assert len([c for c in fleet.deployer.calls if c[0] == "check_health"]) == checks + 1
    assert fleet.row("dev", "qrng").rollout == Rollout.RUNNING
    fleet.now = started + timedelta(minutes=10)
    fleet.reconcile()
    row = fleet.row("dev", "qrng")
    assert (row.rollout, row.healthy_since, row.bake_until) == (
        Rollout.SUCCEEDED,
        fleet.now,
        None,
    )
    ended = fleet.store.last_event("dev", "qrng", "bake")
    assert ended is not None and ended.outcome == "Healthy"


def test_a_failed_bake_check_switches_back_and_holds(fleet: Fleet) -> None:
    fleet.edit("dev", "  auto_rollback: true\n", "  auto_rollback: true\n" + BAKE, "dev bakes")
    fleet.edit("dev", "qrng: 0.2.0", "qrng: 0.1.0", "older qrng, by hand")
    fleet.reconcile()
    fleet.deployer.unhealthy.add("0.1.0")  # it goes bad while it bakes
    fleet.now += timedelta(seconds=30)
    report = fleet.reconcile()
    row = fleet.row("dev", "qrng")
    assert (row.deployed, row.health, row.rollout, row.rollout_step) == (
        "0.2.0",
        Health.HEALTHY,
        Rollout.FAILED,
        "bake",
    )
    assert "rolled back to 0.2.0" in row.message
    assert ("switch", "dev", "qrng", "0.2.0") in fleet.deployer.calls
    (app,) = [a for a in report.apps if a.key == ("dev", "qrng")]
    assert app.outcome == Rollout.FAILED
    installs = fleet.deployer.install_count
    fleet.now += timedelta(minutes=5)
    fleet.reconcile()  # held at this revision: no loop back to 0.1.0
    assert fleet.row("dev", "qrng").deployed == "0.2.0"
    assert fleet.deployer.install_count == installs


def test_a_deprecated_target_is_held_until_the_environment_acknowledges_it(
    fleet: Fleet,
) -> None:
    manifest = fleet.work.read("manifests/qrng/0.2.0.yaml")
    deprecated = manifest.replace("version: 0.2.0", "version: 0.3.0").replace(
        "id: ionq.simulator", "id: rigetti.qpu.ankaa-3"
    )
    fleet.work.write("manifests/qrng/0.3.0.yaml", deprecated)
    fleet.edit("dev", "qrng: 0.2.0", "qrng: 0.3.0", "qrng on Ankaa-3")
    fleet.reconcile()
    row = fleet.row("dev", "qrng")
    assert (row.deployed, row.rollout) == ("0.2.0", Rollout.HELD)
    assert "target-status: rigetti.qpu.ankaa-3 is deprecated (deprecated by the provider" in (
        row.message
    )
    assert "policy.acknowledge_deprecated" in row.message
    acknowledged = "  auto_rollback: true\n  acknowledge_deprecated:\n"
    acknowledged += '    rigetti.qpu.ankaa-3: "until the Cepheus migration, ticket 42"\n'
    fleet.edit("dev", "  auto_rollback: true\n", acknowledged, "acknowledge Ankaa-3")
    fleet.reconcile()
    row = fleet.row("dev", "qrng")
    assert (row.deployed, row.rollout) == ("0.3.0", Rollout.SUCCEEDED)
    (deployed,) = fleet.store.events(env="dev", app="qrng", actions=["deploy"])[-1:]
    assert any("acknowledged: until the Cepheus migration" in c for c in deployed.details["checks"])


def test_a_retired_target_is_held_whatever_the_environment_says(fleet: Fleet) -> None:
    manifest = fleet.work.read("manifests/qrng/0.2.0.yaml")
    retired = manifest.replace("version: 0.2.0", "version: 0.3.0").replace(
        "id: ionq.simulator", "id: rigetti.qpu.cepheus-1-36q"
    )
    fleet.work.write("manifests/qrng/0.3.0.yaml", retired)
    fleet.edit("dev", "qrng: 0.2.0", "qrng: 0.3.0", "qrng on a retired QPU")
    fleet.reconcile()
    row = fleet.row("dev", "qrng")
    assert (row.deployed, row.rollout) == ("0.2.0", Rollout.HELD)
    assert "target-status: rigetti.qpu.cepheus-1-36q is retired" in row.message


# -- gate verdicts from review (policy.reuse_review) --------------------------------------


@pytest.fixture
def reviewing(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[tuple[Fleet, dict[str, Path]]]:
    """Signed heads; staging reuses reviewed gates; `ci` is trusted, `mallory` is not."""
    fleet, keys, _lines = _signing_fleet(example_repo, tmp_path, ("rm", "ci"), ("mallory",))
    fleet.edit("staging", "  soak: 10m\n", "  soak: 10m\n  reuse_review: true\n", "reuse")
    fleet.reconcile()
    fleet.now += timedelta(hours=2)
    yield fleet, keys
    fleet.close()


def _review(fleet: Fleet, key: Path | None, who: str, *, qir: str = "; bell 1.2.0\n") -> str:
    """`qrelease check --record` of bell-service 1.2.0, signed with `key` (None: unsigned)."""
    results = (
        GateResult("profile", GateOutcome.PASSED, "compiles for Base"),
        GateResult("estimate", GateOutcome.PASSED, "12 physical qubits", {"physical_qubits": 12}),
        GateResult("smoke", GateOutcome.PASSED, "distance 0.01"),
    )
    report = GateReport(results, qir, hashlib.sha256(qir.encode()).hexdigest())
    with _as_signer(fleet, key, "1.2.0") as (repo, digest, revision):
        return record_review(
            repo,
            app="bell-service",
            version="1.2.0",
            digest=digest,
            report=report,
            reviewed=revision,
            actor=f"{who.title()} <{who}@example.com>",
            sign=key is not None,
        )


def _gate_events(fleet: Fleet) -> list[tuple[str, str, str]]:
    events = fleet.store.events(env="staging", app="bell-service", actions=["gate"])
    return [
        (str(e.details.get("gate")), e.outcome, str(e.details.get("review", "")))
        for e in events
        if e.to_version == "1.2.0"
    ]


def test_staging_takes_the_gates_a_trusted_review_passed_instead_of_running_them(
    reviewing: tuple[Fleet, dict[str, Path]],
) -> None:
    fleet, keys = reviewing
    commit = _review(fleet, keys["ci"], "ci")
    runs = len(fleet.quantum.calls)
    shipped: list[tuple[str, str]] = []
    prepare = fleet.deployer.prepare

    def keep_qir(env: Any, manifest: Any, lock: Any, qir: str) -> Any:
        shipped.append((env.environment, qir))
        return prepare(env, manifest, lock, qir)

    fleet.deployer.prepare = keep_qir  # type: ignore[method-assign]
    fleet.edit("staging", "bell-service: 1.1.0", "bell-service: 1.2.0", "promote")
    fleet.reconcile()
    assert shipped == [("staging", "; bell 1.2.0\n")]  # the reviewed QIR is what ships
    assert fleet.row("staging", "bell-service").deployed == "1.2.0"
    assert len(fleet.quantum.calls) == runs  # no gate ran
    assert _gate_events(fleet) == [
        ("profile", "Passed", commit),
        ("estimate", "Passed", commit),
        ("smoke", "Passed", commit),
    ]


def test_an_untrusted_or_altered_review_is_not_evidence_and_the_gates_run(
    reviewing: tuple[Fleet, dict[str, Path]],
) -> None:
    fleet, keys = reviewing
    _review(fleet, keys["mallory"], "mallory")  # signed, but not by a trusted key
    runs = len(fleet.quantum.calls)
    fleet.edit("staging", "bell-service: 1.1.0", "bell-service: 1.2.0", "promote")
    fleet.reconcile()
    assert fleet.row("staging", "bell-service").deployed == "1.2.0"
    assert len(fleet.quantum.calls) == runs + 1  # the gates ran here
    assert {review for _gate, _outcome, review in _gate_events(fleet)} == {""}


def test_without_signed_commit_verification_a_review_is_never_reused(fleet: Fleet) -> None:
    fleet.edit("staging", "  soak: 10m\n", "  soak: 10m\n  reuse_review: true\n", "reuse")
    _review(fleet, None, "ci")  # complete and passed, but nothing verifies who wrote it
    runs = len(fleet.quantum.calls)
    fleet.edit("staging", "bell-service: 1.1.0", "bell-service: 1.2.0", "promote")
    fleet.reconcile()
    assert fleet.row("staging", "bell-service").deployed == "1.2.0"
    assert len(fleet.quantum.calls) == runs + 1
