"""End to end as a user runs it: `qrelease init --example`, reconcile, change pins in Git.

Real git, real uv virtualenvs of wheels built from examples/, real qdk gates, real SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrelease.examples.demo import build_wheelhouse
from qrelease.store import open_store
from tests.helpers.gitops import GIT_ENV, GitOpsRepo, relaxed
from tests.helpers.wheels import build_wheel

pytestmark = pytest.mark.slow
QRELEASE = [sys.executable, "-m", "qrelease"]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example packages built once at every version the bundled manifests pin."""
    dest = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(dest)
    return dest


class User:
    """Runs the qrelease CLI in a subprocess against one repo and state dir."""

    def __init__(self, root: Path, wheelhouse: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        (self.state / "wheels").symlink_to(wheelhouse)
        self.run("init", str(root / "gitops"), "--example")
        self.repo = GitOpsRepo(root / "gitops")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **GIT_ENV, "QDK_PYTHON_TELEMETRY": "none"}
        done = subprocess.run(
            [*QRELEASE, *args], cwd=self.root, env=env, capture_output=True, text=True, timeout=600
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def reconcile(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("reconcile", "--repo", "gitops", "--state", "state", *extra, check=check)

    def status(self) -> dict[tuple[str, str], dict[str, str]]:
        done = self.run("status", "--repo", "gitops", "--state", "state", "--json")
        return {(row["env"], row["app"]): row for row in json.loads(done.stdout)}

    def pin(self, env: str, app: str, version: str) -> None:
        path = f"releases/{env}.yaml"
        lines = [
            f"  {app}: {version}" if line.startswith(f"  {app}: ") else line
            for line in self.repo.read(path).splitlines()
        ]
        self.repo.write(path, "\n".join(lines) + "\n")
        self.repo.commit(f"pin {app} {version} in {env}")

    def relax(self, env: str) -> None:
        """Drop the environment's soak and deny windows (these tests run on the real clock)."""
        path = f"releases/{env}.yaml"
        self.repo.write(path, relaxed(self.repo.read(path)))
        self.repo.commit(f"{env}: no soak, no windows (the tests run on the real clock)")

    def app_bin(self, env: str, app: str) -> Path:
        return self.state / "envs" / env / app / "current" / "venv" / "bin" / app

    def events(self, env: str, app: str) -> list[tuple[str, str]]:
        with open_store(self.state) as store:
            return [(e.action, e.outcome) for e in store.events(env=env, app=app)]


@pytest.fixture
def user(tmp_path: Path, wheelhouse: Path) -> User:
    return User(tmp_path, wheelhouse)


def test_example_repo_reconciles_to_synced_healthy_and_apps_run(user: User) -> None:
    user.reconcile()
    rows = user.status()
    assert len(rows) == 6
    for row in rows.values():
        assert (row["sync"], row["health"], row["availability"]) == (
            "Synced",
            "Healthy",
            "Available",
        )
    shown = subprocess.run(
        [user.app_bin("dev", "bell-service")], capture_output=True, text=True, check=True
    )
    assert "quantinuum.sim.h2-1e (Adaptive_RI profile)" in shown.stdout
    env = {**os.environ, "QDK_PYTHON_TELEMETRY": "none"}
    ran = subprocess.run(
        [user.app_bin("dev", "bell-service"), "--run"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    counts = dict(line.rsplit(": ", 1) for line in ran.stdout.splitlines() if line.startswith("["))
    assert set(counts) <= {"[Zero, Zero]", "[One, One]"} and sum(map(int, counts.values())) > 0
    # nothing new: a second pass does no work
    before = len(user.events("dev", "bell-service"))
    user.reconcile()
    assert len(user.events("dev", "bell-service")) == before


def test_new_pin_deploys_and_pinning_back_is_a_switch(user: User) -> None:
    user.relax("prod")  # the real clock: no soak to wait for, no Friday-evening window
    user.reconcile()
    user.pin("prod", "bell-service", "1.1.0")
    user.reconcile()
    assert user.status()[("prod", "bell-service")]["deployed"] == "1.1.0"
    user.pin("prod", "bell-service", "1.0.0")
    user.reconcile("--env", "prod")
    assert user.status()[("prod", "bell-service")]["deployed"] == "1.0.0"
    with open_store(user.state) as store:
        install = store.events(env="prod", app="bell-service", actions=["install"])[-1]
    assert install.to_version == "1.0.0" and install.details["installed"] is False  # a switch


def test_branching_program_on_base_target_fails_the_profile_gate(user: User) -> None:
    user.reconcile()
    path = "manifests/bell-service/1.3.0.yaml"
    text = user.repo.read("manifests/bell-service/1.2.0.yaml").replace(
        "version: 1.2.0", "version: 1.3.0"
    )
    text = text.replace(
        "{id: quantinuum.sim.h2-1e, profile: Adaptive_RI}", "{id: ionq.simulator, profile: Base}"
    )
    user.repo.write(path, text)
    user.repo.commit("bell-service 1.3.0 on IonQ")
    user.pin("dev", "bell-service", "1.3.0")
    user.pin("dev", "qrng", "0.1.0")
    done = user.reconcile(check=False)
    assert done.returncode == 1
    rows = user.status()
    bell = rows[("dev", "bell-service")]
    assert bell["deployed"] == "1.2.0" and bell["sync"] == "OutOfSync"
    assert "UseOfDynamicBool" in bell["message"] and "bell_reset.qs:" in bell["message"]
    assert rows[("dev", "qrng")]["deployed"] == "0.1.0"  # the other app went ahead
    assert ("gate", "Failed") in user.events("dev", "bell-service")


LIVE_CHECK = """\
import os

def main():
    if os.environ.get("QRELEASE_RELEASE_DIR", "").endswith("/current"):
        return 3
    os.execvp("bell-service", ["bell-service", "--self-check"])
"""


def test_failing_health_after_switch_rolls_back_and_does_not_loop(
    user: User, wheelhouse: Path
) -> None:
    user.reconcile()
    wheels = user.state / "wheels"  # the wheelhouse plus a check that fails once live
    wheels.unlink()
    wheels.mkdir()
    for wheel in wheelhouse.iterdir():
        (wheels / wheel.name).symlink_to(wheel)
    build_wheel(
        wheels,
        "live-check",
        "1.0.0",
        scripts={"live-check": "live_check:main"},
        modules={"live_check.py": LIVE_CHECK},
    )
    text = user.repo.read("manifests/bell-service/1.1.0.yaml").replace(
        "version: 1.1.0", "version: 1.4.0"
    )
    text = text.replace("command: [bell-service, --self-check]", "command: [live-check]")
    # the package stays 1.1.0 (1.4.0 is a new release of the same code)
    text = text.replace(
        "{name: bell-service, version: 1.4.0}",
        "{name: bell-service, version: 1.1.0}\n    - {name: live-check, version: 1.0.0}",
    )
    user.repo.write("manifests/bell-service/1.4.0.yaml", text)
    user.repo.commit("bell-service 1.4.0 ships package 1.1.0 and a live check")
    user.pin("dev", "bell-service", "1.4.0")  # dev: nothing upstream to wait for
    assert user.reconcile(check=False).returncode == 1
    row = user.status()[("dev", "bell-service")]
    # 1.2.0 runs again and passes its own check: health is what runs, the rollout failed
    assert (row["deployed"], row["health"], row["rollout"]) == ("1.2.0", "Healthy", "Failed")
    assert "rolled back to 1.2.0" in row["message"]
    assert (user.state / "envs/dev/bell-service/current").readlink() == Path("releases/1.2.0")
    assert ("auto-rollback", "Restored") in user.events("dev", "bell-service")
    count = len(user.events("dev", "bell-service"))
    user.reconcile(check=False)
    after = user.events("dev", "bell-service")
    assert [a for a, _ in after[count:]] in ([], ["hold"])


def test_audit_chain_verifies_after_passes(user: User) -> None:
    user.reconcile()
    with open_store(user.state) as store:
        report = store.verify()
    assert report.ok and report.checked > 20


def _assert_no_half_switch(state: Path) -> None:
    """Every `current` link points at a complete release."""
    for current in state.glob("envs/*/*/current"):
        target = current.resolve()
        assert (target / "COMPLETE").is_file(), f"{current} -> {target} is incomplete"
        assert (target / "qrelease.lock.json").is_file()


def test_sigkill_during_deploys_then_restart_converges(user: User) -> None:
    env = {**os.environ, **GIT_ENV, "QDK_PYTHON_TELEMETRY": "none"}
    argv = [*QRELEASE, "reconcile", "--repo", "gitops", "--state", "state"]
    kills = 0
    for delay in (0.8, 1.6, 2.4, 3.2, 4.0, 4.8):
        process = subprocess.Popen(
            argv, cwd=user.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
        _assert_no_half_switch(user.state)
    assert kills >= 1
    user.reconcile()
    _assert_no_half_switch(user.state)
    rows = user.status()
    assert {(r["sync"], r["health"]) for r in rows.values()} == {("Synced", "Healthy")}
    with open_store(user.state) as store:
        assert store.verify().ok
        assert store.pending_intents() == []
        seqs = [e.seq for e in store.events()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert not list(user.state.glob("envs/*/*/releases/.*"))  # partial builds cleaned up


def test_promote_through_every_environment_then_roll_back_prod(user: User) -> None:
    for env in ("staging", "prod"):
        text = user.repo.read(f"releases/{env}.yaml").replace("soak: 10m", "soak: 0s")
        text = text.replace("soak: 1h", "soak: 0s")
        lines = text.splitlines(keepends=True)
        text = "".join(line for line in lines if "windows:" not in line and "[fri]" not in line)
        user.repo.write(f"releases/{env}.yaml", text)
    user.repo.commit("no soak, no windows for this test")
    remote = user.root / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(user.repo.path), str(remote)], check=True)
    at = ("--repo", "remote.git", "--state", "state")
    user.run("reconcile", *at)
    user.run(
        "promote", "qrng", "--to", "prod", "--version", "0.2.0", "--reason", "x", *at, check=False
    )
    for env in ("staging", "prod"):
        done = user.run(
            "promote",
            "bell-service",
            "--to",
            env,
            "--reason",
            f"to {env}",
            "--actor",
            "Rel Manager <rm@example.com>",
            *at,
        )
        assert f"in {env}:" in done.stdout and "pushed" in done.stdout
        user.run("reconcile", *at)
    rows = {(r["env"], r["app"]): r for r in json.loads(user.run("status", *at, "--json").stdout)}
    assert rows[("prod", "bell-service")]["deployed"] == "1.2.0"
    assert rows[("prod", "bell-service")]["health"] == "Healthy"
    user.run("rollback", "bell-service", "--env", "prod", "--reason", "feed-forward flaky", *at)
    user.run("reconcile", *at)
    rows = {(r["env"], r["app"]): r for r in json.loads(user.run("status", *at, "--json").stdout)}
    assert rows[("prod", "bell-service")]["deployed"] == "1.0.0"
    with open_store(user.state) as store:
        install = store.events(env="prod", app="bell-service", actions=["install"])[-1]
    assert install.to_version == "1.0.0" and install.details["installed"] is False  # a switch
    history = json.loads(
        user.run(
            "history", *at, "--env", "prod", "--app", "bell-service", "--format", "json"
        ).stdout
    )
    (promote,) = [r for r in history if r["action"] == "promote"]  # the commit and its record, once
    assert promote["source"] == "git+controller" and promote["seq"] is not None
    assert promote["actor"] == "Rel Manager <rm@example.com>" and promote["reason"] == "to prod"
    assert any(r["action"] == "gate" and r["outcome"] == "Passed" for r in history)
    assert any(r["action"] == "rollback" and r["reason"] == "feed-forward flaky" for r in history)
    csv_rows = user.run("history", *at, "--format", "csv").stdout.splitlines()
    assert csv_rows[0].startswith("seq,time,env,app,action") and len(csv_rows) > 10
    assert "chain intact" in user.run("audit", "verify", *at).stdout


def test_an_install_without_its_wheel_source_fails_then_goes_live_when_it_is_back(
    user: User, wheelhouse: Path
) -> None:
    (user.state / "wheels").unlink()  # the environments' find_links directory is missing
    failed = user.reconcile(check=False)
    assert failed.returncode == 1
    row = user.status()[("dev", "bell-service")]
    assert (row["sync"], row["health"], row["rollout"], row["step"]) == (
        "OutOfSync",
        "Missing",
        "Failed",
        "install",
    )
    assert "Failed to read `--find-links` directory" in row["message"]
    assert "retrying at" in row["message"] and "(attempt 1)" in row["message"]
    (user.state / "wheels").symlink_to(wheelhouse)
    user.reconcile()  # the same revision: a transient failure is tried again, and exits 0
    rows = user.status()
    assert {(r["sync"], r["health"], r["rollout"]) for r in rows.values()} == {
        ("Synced", "Healthy", "Succeeded")
    }


def test_openqasm_and_qiskit_releases_pass_every_gate_deploy_and_run(
    tmp_path: Path, wheelhouse: Path
) -> None:
    user = User(tmp_path, wheelhouse)
    user.run("init", str(tmp_path / "languages"), "--example", "languages")
    user.run("validate", "--repo", "languages", "--state", "state")
    user.run("reconcile", "--repo", "languages", "--state", "state")
    done = user.run("status", "--repo", "languages", "--state", "state", "--json")
    rows = {row["app"]: row for row in json.loads(done.stdout)}
    assert {app: (row["deployed"], row["health"]) for app, row in rows.items()} == {
        "ghz-qasm": ("0.1.0", "Healthy"),
        "bell-qiskit": ("0.1.0", "Healthy"),
    }
    with open_store(user.state) as store:
        gates = {
            (e.app, e.details["gate"]): e.outcome for e in store.events(env="dev", actions=["gate"])
        }
    assert set(gates.values()) == {"Passed"} and len(gates) == 6
    env = {**os.environ, "QDK_PYTHON_TELEMETRY": "none"}
    expected = {
        "ghz-qasm": {"[Zero, Zero, Zero]", "[One, One, One]"},
        "bell-qiskit": {"[Zero, Zero]", "[One, One]"},
    }
    for app, outcomes in expected.items():
        release = user.state / "envs" / "dev" / app / "current"
        lock = json.loads((release / "qrelease.lock.json").read_text())
        assert lock["program"].startswith(f"manifests/{app}/programs/")
        ran = subprocess.run(
            [release / "venv" / "bin" / "bell-service", "--run", "--seed", "3"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        counts = dict(
            line.rsplit(": ", 1) for line in ran.stdout.splitlines() if line.startswith("[")
        )
        assert set(counts) <= outcomes and sum(map(int, counts.values())) == 100
