"""The venv deployer for real: real uv, real virtualenvs, wheels from a local find-links dir."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from qrelease.deployers.base import Deployer, DeployError, ReleaseLock
from qrelease.deployers.health import HEALTH_OUTPUT_BYTES
from qrelease.deployers.installers import InstallFailed, PipInstaller, Sources
from qrelease.deployers.memory import MemoryDeployer
from qrelease.deployers.venv import VenvDeployer, read_lock
from qrelease.examples.wheels import build_example_wheels
from qrelease.model.environment import ArmDeploy, Environment, VenvDeploy
from qrelease.model.manifest import ReleaseManifest
from qrelease.redaction import redact
from tests.helpers import PROJECT_ROOT
from tests.helpers.wheels import BuiltWheel, build_wheel

pytestmark = pytest.mark.slow

APP = "demo-app"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
REPO = PROJECT_ROOT


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltWheel]:
    """demo-app wheels at every test version, in one shared find-links directory."""
    directory = tmp_path_factory.mktemp("wheels")
    return {version: build_wheel(directory, APP, version) for version in VERSIONS}


@pytest.fixture
def env(wheels: dict[str, BuiltWheel]) -> Environment:
    """A dev environment installing offline from the wheel directory."""
    find_links = str(wheels["1.0.0"].path.parent)
    return Environment(
        environment="dev", classical=VenvDeploy(find_links=find_links, no_index=True)
    )


@pytest.fixture
def deployer(tmp_path: Path, wheels: dict[str, BuiltWheel]) -> VenvDeployer:
    """A venv deployer over an empty state dir, allowed to install from the wheel directory."""
    return VenvDeployer(tmp_path / "state", allowed_sources=[str(wheels["1.0.0"].path.parent)])


def manifest(
    version: str,
    *,
    sha256: str | None = None,
    health: list[str] | None = None,
    timeout: str = "20s",
    app: str = APP,
) -> ReleaseManifest:
    """A release of the test app; `health` defaults to running its console script, [] to none."""
    package = {"name": app, "version": version, "sha256": sha256}
    check = None if health == [] else {"command": health or [app], "timeout": timeout}
    return ReleaseManifest.model_validate(
        {
            "app": app,
            "version": version,
            "classical": {
                "packages": [package],
                "health": check,
            },
            "quantum": {
                "program": "programs/bell.qs",
                "entry": "Bell.Main()",
                "target": {"id": "ionq.simulator", "profile": "Base"},
            },
        }
    )


def qir_for(version: str) -> str:
    """Stand-in QIR text; the deployer stores it byte for byte."""
    return f"; ModuleID = 'bell'\n; release {version}\ndefine i64 @ENTRYPOINT__main()\n"


def lock_for(
    version: str, *, env: str = "dev", app: str = APP, qir: str | None = None
) -> ReleaseLock:
    """The lock the engine would write for a release."""
    text = qir_for(version) if qir is None else qir
    return ReleaseLock(
        app=app,
        env=env,
        version=version,
        revision="0123456789abcdef0123456789abcdef01234567",
        target_id="ionq.simulator",
        profile="Base",
        entry="Bell.Main()",
        program=f"manifests/{app}/programs/bell.qs",
        qir_sha256=hashlib.sha256(text.encode()).hexdigest(),
        deployed_at="2026-01-01T00:00:00+00:00",
    )


def deploy(
    deployer: VenvDeployer, env: Environment, version: str, wheels: dict[str, BuiltWheel]
) -> None:
    """Prepare (hash-pinned) and switch to a release."""
    release = manifest(version, sha256=wheels[version].sha256)
    deployer.prepare(env, release, lock_for(version), qir_for(version))
    deployer.switch(env, APP, version)


def run_script(path: Path, *args: str, **extra_env: str) -> dict[str, str]:
    """Run a console script of the test wheel and parse the JSON it prints."""
    clean = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "QRELEASE_RELEASE_DIR")
    }
    done = subprocess.run(
        [str(path), *args],
        env={**clean, **extra_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_fresh_prepare_then_switch_lays_out_a_complete_release(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    release = manifest("1.0.0", sha256=wheels["1.0.0"].sha256)
    prepared = deployer.prepare(env, release, lock_for("1.0.0"), qir_for("1.0.0"))
    assert prepared.installed and deployer.install_count == 1
    assert deployer.observe(env, APP).current is None  # prepare never touches current
    deployer.switch(env, APP, "1.0.0")
    app_dir = deployer.app_dir("dev", APP)
    root = app_dir / "releases" / "1.0.0"
    assert {p.name for p in root.iterdir()} == {
        "venv",
        "qrelease.lock.json",
        "program.qir",
        "COMPLETE",
        "requirements.txt",
    }
    assert (app_dir / "current").readlink() == Path("releases/1.0.0")
    assert (root / "program.qir").read_text() == qir_for("1.0.0")
    assert json.loads((root / "qrelease.lock.json").read_text()) == asdict(lock_for("1.0.0"))
    assert read_lock(root / "qrelease.lock.json") == lock_for("1.0.0")
    assert "--hash=sha256:" + wheels["1.0.0"].sha256 in (root / "requirements.txt").read_text()
    observed = deployer.observe(env, APP)
    assert (observed.current, observed.on_disk, observed.drift) == ("1.0.0", ("1.0.0",), None)
    assert not list((app_dir / "releases").glob(".*"))


def test_console_script_runs_from_current_and_finds_its_lock(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    current = deployer.app_dir("dev", APP) / "current"
    release = (current.parent / "releases" / "1.0.0").resolve()
    found = run_script(current / "venv" / "bin" / APP)  # lock found from sys.prefix
    assert (found["version"], found["package_version"]) == ("1.0.0", "1.0.0")
    assert Path(found["release"]) == release and Path(found["prefix"]) == release / "venv"
    given = run_script(current / "venv" / "bin" / APP, QRELEASE_RELEASE_DIR=str(current))
    assert given["release"] == str(current) and given["version"] == "1.0.0"


def test_venv_built_in_a_partial_dir_still_works_after_the_rename(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    venv = deployer.app_dir("dev", APP) / "current" / "venv"
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            assert b".partial-" not in script.read_bytes(), script
    prefix = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys, demo_app_app; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert prefix == str(venv)  # the moved venv runs and imports the installed package


def test_second_prepare_of_the_same_release_runs_no_installer(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    again = deployer.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0"))
    assert not again.installed and deployer.install_count == 1


def test_switching_back_to_a_release_on_disk_is_a_symlink_swap(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    deploy(deployer, env, "1.1.0", wheels)
    installs = deployer.install_count
    prepared = deployer.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0"))
    deployer.switch(env, APP, prepared.version)
    assert deployer.install_count == installs and not prepared.installed
    script = deployer.app_dir("dev", APP) / "current" / "venv" / "bin" / APP
    assert run_script(script)["package_version"] == "1.0.0"


def test_wrong_sha256_fails_naming_the_package_and_changes_nothing(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    wrong = manifest("1.1.0", sha256="0" * 64)
    with pytest.raises(DeployError) as failure:
        deployer.prepare(env, wrong, lock_for("1.1.0"), qir_for("1.1.0"))
    message = str(failure.value)
    assert message.startswith("demo-app 1.1.0 in dev: install failed: ")
    assert "sha256 mismatch for demo-app==1.1.0" in message
    releases = deployer.app_dir("dev", APP) / "releases"
    assert sorted(p.name for p in releases.iterdir()) == ["1.0.0"]
    observed = deployer.observe(env, APP)
    assert (observed.current, observed.on_disk, observed.drift) == ("1.0.0", ("1.0.0",), None)


def test_unhashed_packages_install_and_hashes_are_checked_only_where_given(
    deployer: VenvDeployer, env: Environment
) -> None:
    prepared = deployer.prepare(env, manifest("1.2.0"), lock_for("1.2.0"), qir_for("1.2.0"))
    assert prepared.installed


@pytest.fixture(scope="module")
def dependent_wheel(wheels: dict[str, BuiltWheel]) -> BuiltWheel:
    """`dep-app` 1.0.0 requiring `helper-lib==0.1.0`, both in the shared wheel directory."""
    directory = wheels["1.0.0"].path.parent
    build_wheel(directory, "helper-lib", "0.1.0", scripts={}, modules={"helper_lib.py": "X = 1\n"})
    return build_wheel(directory, "dep-app", "1.0.0", requires=["helper-lib==0.1.0"])


def test_dependencies_install_unhashed_while_listed_hashes_are_verified(
    deployer: VenvDeployer, env: Environment, dependent_wheel: BuiltWheel
) -> None:
    release = manifest("1.0.0", app="dep-app", sha256=dependent_wheel.sha256)
    deployer.prepare(env, release, lock_for("1.0.0", app="dep-app"), qir_for("1.0.0"))
    python = deployer.release_dir("dev", "dep-app", "1.0.0") / "venv" / "bin" / "python"
    subprocess.run([str(python), "-c", "import helper_lib"], check=True, timeout=60)
    data = release.model_dump(mode="json")
    data["version"] = "1.1.0"
    data["classical"]["packages"].append(
        {"name": "helper-lib", "version": "0.1.0", "sha256": "f" * 64}
    )
    pinned = ReleaseManifest.model_validate(data)
    with pytest.raises(DeployError, match=r"sha256 mismatch for helper-lib==0\.1\.0"):
        deployer.prepare(env, pinned, lock_for("1.1.0", app="dep-app"), qir_for("1.1.0"))


def test_health_passes_fails_and_times_out(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    ok = deployer.check_health(env, manifest("1.0.0"), current=True)
    assert ok.ok and "exited 0" in ok.message
    assert str(deployer.app_dir("dev", APP) / "current") in ok.message  # QRELEASE_RELEASE_DIR
    failing = deployer.check_health(env, manifest("1.0.0", health=[APP, "--fail"]), current=False)
    assert not failing.ok and "exited 3" in failing.message and "on purpose" in failing.message
    slow = manifest("1.0.0", health=[APP, "--sleep", "30"], timeout="1s")
    timed_out = deployer.check_health(env, slow, current=True)
    assert not timed_out.ok and "timed out after 1s" in timed_out.message


def test_health_of_missing_command_or_release_is_a_failure(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    missing = deployer.check_health(env, manifest("1.0.0", health=["no-such-cmd"]), current=True)
    assert not missing.ok and "'no-such-cmd' is not a console script" in missing.message
    absent = deployer.check_health(env, manifest("1.1.0"), current=False)
    assert not absent.ok and "not a complete release" in absent.message


def test_no_health_command_is_healthy(deployer: VenvDeployer, env: Environment) -> None:
    bare = manifest("1.0.0", health=[])
    assert deployer.check_health(env, bare, current=True).ok


def test_switch_refuses_a_release_that_is_not_complete(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    (deployer.app_dir("dev", APP) / "releases" / "1.1.0").mkdir()
    with pytest.raises(DeployError, match="not prepared"):
        deployer.switch(env, APP, "1.1.0")
    with pytest.raises(DeployError):
        deployer.switch(env, "../etc", "1.0.0")
    assert deployer.observe(env, APP).current == "1.0.0"


def test_retire_keeps_the_newest_n_and_never_the_current_one(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    for version in VERSIONS:
        deploy(deployer, env, version, wheels)
    deployer.switch(env, APP, "1.0.0")  # rolled back to the oldest
    assert deployer.retire(env, APP, keep=1) == ["1.1.0"]
    assert deployer.observe(env, APP).on_disk == ("1.0.0", "1.2.0")
    assert deployer.retire(env, APP, keep=0) == ["1.2.0"]
    observed = deployer.observe(env, APP)
    assert (observed.current, observed.on_disk, observed.drift) == ("1.0.0", ("1.0.0",), None)
    assert not [
        p for p in (deployer.app_dir("dev", APP) / "releases").iterdir() if p.name != "1.0.0"
    ]


def test_recover_cleans_up_after_a_crash_and_current_still_works(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    app_dir = deployer.app_dir("dev", APP)
    partial = app_dir / "releases" / ".1.1.0.partial-k3j2"
    (partial / "venv" / "bin").mkdir(parents=True)
    (partial / "qrelease.lock.json").write_text("{}")
    retired = app_dir / "releases" / ".0.9.0.retired-aa11"
    retired.mkdir()
    temp_link = app_dir / ".current.tmp-5f5f"
    temp_link.symlink_to("releases/1.1.0")
    removed_app = app_dir.parent / ".old-app.removed-0b0b"
    (removed_app / "releases").mkdir(parents=True)
    cleaned = deployer.recover()
    assert set(cleaned) == {partial, retired, temp_link, removed_app}
    assert not temp_link.is_symlink() and not partial.exists() and not removed_app.exists()
    observed = deployer.observe(env, APP)
    assert (observed.current, observed.on_disk, observed.drift) == ("1.0.0", ("1.0.0",), None)
    assert run_script(app_dir / "current" / "venv" / "bin" / APP)["version"] == "1.0.0"
    assert deployer.recover() == []


def test_incomplete_release_at_the_final_path_is_rebuilt(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    stale = deployer.app_dir("dev", APP) / "releases" / "1.1.0"
    stale.mkdir()
    (stale / "junk").write_text("left by hand")
    assert deployer.prepare(env, manifest("1.1.0"), lock_for("1.1.0"), qir_for("1.1.0")).installed
    assert not (stale / "junk").exists() and (stale / "COMPLETE").is_file()


def test_observe_reports_drift_when_the_live_release_is_tampered_with(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    root = deployer.app_dir("dev", APP) / "releases" / "1.0.0"
    (root / "program.qir").write_text("; swapped program\n")
    assert "qir_sha256" in str(deployer.observe(env, APP).drift)
    (root / "qrelease.lock.json").unlink()
    assert "qrelease.lock.json" in str(deployer.observe(env, APP).drift)
    current = deployer.app_dir("dev", APP) / "current"
    current.unlink()
    current.symlink_to("/tmp")
    observed = deployer.observe(env, APP)
    assert observed.current is None and "not to a release" in str(observed.drift)


def test_remove_deletes_current_and_every_release(
    deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    deploy(deployer, env, "1.0.0", wheels)
    deployer.remove(env, APP)
    assert not deployer.app_dir("dev", APP).exists()
    assert deployer.observe(env, APP) == deployer.observe(env, "other-app")
    assert deployer.observe(env, APP).current is None
    deployer.remove(env, APP)  # idempotent


def test_prepare_refuses_a_lock_for_another_release_before_installing(
    deployer: VenvDeployer, env: Environment
) -> None:
    with pytest.raises(DeployError, match="QIR sha256"):
        deployer.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), "; other program\n")
    with pytest.raises(DeployError, match="lock env"):
        deployer.prepare(env, manifest("1.0.0"), lock_for("1.0.0", env="prod"), qir_for("1.0.0"))
    arm = Environment(
        environment="dev",
        classical=ArmDeploy(kind="arm", subscription="s", resource_group="g", template="t.json"),
    )
    with pytest.raises(DeployError, match="not 'venv'"):
        deployer.prepare(arm, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0"))
    assert deployer.install_count == 0


def test_relative_find_links_is_resolved_against_the_state_dir(
    tmp_path: Path, wheels: dict[str, BuiltWheel]
) -> None:
    state = tmp_path / "state"
    (state / "wheels").mkdir(parents=True)
    for wheel in wheels.values():
        (state / "wheels" / wheel.path.name).write_bytes(wheel.path.read_bytes())
    env = Environment(
        environment="staging", classical=VenvDeploy(find_links="wheels", no_index=True)
    )
    deployer = VenvDeployer(state)
    lock = lock_for("1.1.0", env="staging")
    assert deployer.prepare(env, manifest("1.1.0"), lock, qir_for("1.1.0")).installed


class _RefusingIndex(http.server.BaseHTTPRequestHandler):
    """A package index that knows no package and says so at once."""

    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def refusing_index() -> Iterator[str]:
    """The base URL of a loopback index that answers 404 to everything."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingIndex)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_index_credentials_never_reach_the_error(tmp_path: Path, refusing_index: str) -> None:
    deployer = VenvDeployer(tmp_path / "state", allowed_sources=[f"http://{refusing_index}"])
    index = f"http://deploy-user:s3cr3t-t0ken@{refusing_index}/simple"
    env = Environment(environment="dev", classical=VenvDeploy(index_url=index))
    with pytest.raises(DeployError) as failure:
        deployer.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0"))
    assert "s3cr3t" not in str(failure.value) and "demo-app 1.0.0 in dev" in str(failure.value)
    assert deployer.install_count == 1  # the index was tried: the allowlist admitted it


class _LeakyInstaller:
    """An installer whose failure output echoes a credentialed URL, as some tools do."""

    name = "leaky"

    def create_venv(self, venv: Path) -> None:
        venv.mkdir()

    def install(self, venv: Path, requirements: Path, sources: Sources) -> None:
        raise InstallFailed("install", f"error fetching {sources.index_url}/demo-app/")

    def relocate(self, venv: Path, final: Path) -> None:
        """Nothing to move."""


def test_credentials_in_installer_output_are_redacted(tmp_path: Path) -> None:
    deployer = VenvDeployer(
        tmp_path / "state", installer=_LeakyInstaller(), allowed_sources=["https://pkgs.example"]
    )
    index = "https://deploy-user:s3cr3t-t0ken@pkgs.example/simple"
    env = Environment(environment="dev", classical=VenvDeploy(index_url=index))
    with pytest.raises(DeployError) as failure:
        deployer.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0"))
    assert "error fetching https://***@pkgs.example/simple/demo-app/" in str(failure.value)
    assert "s3cr3t" not in str(failure.value)
    assert not list((deployer.app_dir("dev", APP) / "releases").iterdir())


def test_pip_fallback_builds_a_release_that_works_after_the_rename(
    tmp_path: Path, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    allowed = [str(wheels["1.0.0"].path.parent)]
    deployer = VenvDeployer(
        tmp_path / "state", installer=PipInstaller(sys.executable), allowed_sources=allowed
    )
    deploy(deployer, env, "1.0.0", wheels)
    script = deployer.app_dir("dev", APP) / "current" / "venv" / "bin" / APP
    assert b".partial-" not in script.read_bytes()
    assert run_script(script)["version"] == "1.0.0"
    assert deployer.check_health(env, manifest("1.0.0"), current=True).ok


def test_both_deployers_satisfy_the_protocol(tmp_path: Path) -> None:
    deployers: list[Deployer] = [VenvDeployer(tmp_path), MemoryDeployer()]
    assert all(callable(d.prepare) for d in deployers)


@pytest.fixture(scope="module")
def example_wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundled examples built into a find-links directory, bell-service at two versions."""
    dest = tmp_path_factory.mktemp("example-wheels")
    build_example_wheels(REPO / "examples", dest, versions={"bell-service": ["1.0.0", "1.1.0"]})
    yield dest


def test_example_wheels_build_and_their_scripts_run_from_a_release(
    tmp_path: Path, example_wheels: Path
) -> None:
    names = sorted(p.name for p in example_wheels.glob("*.whl"))
    assert names == [
        "bell_service-1.0.0-py3-none-any.whl",
        "bell_service-1.1.0-py3-none-any.whl",
        "qrng-0.2.0-py3-none-any.whl",
    ]
    env = Environment(
        environment="dev", classical=VenvDeploy(find_links=str(example_wheels), no_index=True)
    )
    deployer = VenvDeployer(tmp_path / "state", allowed_sources=[str(example_wheels)])
    for app, version in (("bell-service", "1.1.0"), ("qrng", "0.2.0")):
        release = manifest(version, app=app, health=[app, "--self-check"])
        lock = lock_for(version, app=app)
        deployer.prepare(env, release, lock, qir_for(version))
        deployer.switch(env, app, version)
        health = deployer.check_health(env, release, current=True)
        assert health.ok, health.message
        script = deployer.app_dir("dev", app) / "current" / "venv" / "bin" / app
        shown = subprocess.run(
            [str(script)], capture_output=True, text=True, timeout=60, check=True
        )
        assert "ionq.simulator (Base profile)" in shown.stdout and lock.qir_sha256 in shown.stdout
        ran = subprocess.run([str(script), "--run"], capture_output=True, text=True, timeout=60)
        assert ran.returncode == 1 and "qdk not installed in this release" in ran.stderr


def test_example_self_check_fails_when_the_program_does_not_match_the_lock(
    tmp_path: Path, example_wheels: Path
) -> None:
    env = Environment(
        environment="dev", classical=VenvDeploy(find_links=str(example_wheels), no_index=True)
    )
    deployer = VenvDeployer(tmp_path / "state", allowed_sources=[str(example_wheels)])
    release = manifest("1.0.0", app="bell-service", health=["bell-service", "--self-check"])
    deployer.prepare(env, release, lock_for("1.0.0", app="bell-service"), qir_for("1.0.0"))
    deployer.switch(env, "bell-service", "1.0.0")
    program = deployer.app_dir("dev", "bell-service") / "current" / "program.qir"
    program.write_text("; tampered\n")
    health = deployer.check_health(env, release, current=True)
    assert not health.ok and "exited 1" in health.message and "the lock pins" in health.message


COMPILE_BELL = """
import sys
from qdk import qsharp
qsharp.init(target_profile=qsharp.TargetProfile.Base)
qsharp.eval(open(sys.argv[1]).read())
print(qsharp.compile("Bell.Main()"))
"""


def test_example_runs_its_pinned_qir_on_the_local_simulator(tmp_path: Path) -> None:
    source = REPO / "manifests" / "bell-service" / "programs" / "bell.qs"
    if not source.is_file():
        pytest.skip("bundled Bell program not present")
    compile_env = {**os.environ, "QDK_PYTHON_TELEMETRY": "none"}
    compiled = subprocess.run(
        [sys.executable, "-c", COMPILE_BELL, str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=compile_env,
    )
    qir = compiled.stdout
    (tmp_path / "program.qir").write_text(qir)
    lock = lock_for("1.1.0", app="bell-service", qir=qir)
    (tmp_path / "qrelease.lock.json").write_text(json.dumps(asdict(lock)))
    app_env = {
        **compile_env,
        "PYTHONPATH": str(REPO / "examples" / "bell-service" / "src"),
        "QRELEASE_RELEASE_DIR": str(tmp_path),
    }
    ran = subprocess.run(
        [sys.executable, "-m", "bell_service", "--run", "--shots", "200", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        env=app_env,
    )
    assert ran.returncode == 0, ran.stderr
    header, counted = ran.stdout.split("\nqir:", 1)
    assert header.startswith("bell-service ") and "\ntarget:  " in header  # what runs, first
    counts = dict(line.rsplit(": ", 1) for line in counted.splitlines() if line.startswith("["))
    assert set(counts) == {"[Zero, Zero]", "[One, One]"}
    assert sum(int(n) for n in counts.values()) == 200


def test_redact_hides_the_userinfo_of_every_url() -> None:
    text = "see https://u:p@host/x, http://host/y and ftp://token@h"
    assert redact(text) == "see https://***@host/x, http://host/y and ftp://***@h"


# -- confinement: sources inside the state dir or allowed, health commands of the release ----


def test_find_links_outside_the_state_dir_fails_the_install_unless_allowed(
    tmp_path: Path, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    outside = str(wheels["1.0.0"].path.parent)
    confined = VenvDeployer(tmp_path / "state")
    with pytest.raises(DeployError) as refused:
        confined.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0"))
    assert str(refused.value) == (
        f"demo-app 1.0.0 in dev: install refused: classical.find_links: {outside!r} is outside "
        "the state dir and not in the controller's [sources] allow"
    )
    assert not refused.value.transient  # the same Git and config fail the same way
    assert confined.install_count == 0  # no installer was started, so nothing read the directory
    assert not confined.app_dir("dev", APP).exists()
    allowed = VenvDeployer(tmp_path / "allowed", allowed_sources=[outside])
    assert allowed.prepare(env, manifest("1.0.0"), lock_for("1.0.0"), qir_for("1.0.0")).installed


def test_relative_index_url_is_a_local_index_under_the_state_dir(
    tmp_path: Path, wheels: dict[str, BuiltWheel]
) -> None:
    project = tmp_path / "state" / "simple" / APP
    project.mkdir(parents=True)
    wheel = wheels["1.1.0"].path
    (project / wheel.name).write_bytes(wheel.read_bytes())
    link = f'<a href="{wheel.name}#sha256={wheels["1.1.0"].sha256}">{wheel.name}</a>'
    (project / "index.html").write_text(f"<html><body>{link}</body></html>\n")
    env = Environment(environment="dev", classical=VenvDeploy(index_url="simple"))
    deployer = VenvDeployer(tmp_path / "state")
    assert deployer.prepare(env, manifest("1.1.0"), lock_for("1.1.0"), qir_for("1.1.0")).installed


PROBE_MODULE = """\
import os, sys

def main():
    mode = sys.argv[1]
    if mode == "--env":
        print("ENV " + " ".join(sorted(os.environ)) + " PATH=" + os.environ["PATH"])
        return 0
    for n in range(100):
        print(f"line {n:03d} " + "x" * 40)
    if mode == "--long-secret":
        print("Authorization: Bearer " + "T" * 6000)  # one line, longer than any window
    print("connecting with password=hunter22-secret")
    print("last line")
    return 1
"""


@pytest.fixture(scope="module")
def probe_wheels(wheels: dict[str, BuiltWheel]) -> dict[str, BuiltWheel]:
    """`probe-app` (its script prints its environment or lots of output) and `tool-app`.

    `tool-app` requires `helper-tool`, whose own console script would write a file.
    """
    directory = wheels["1.0.0"].path.parent
    helper = "import pathlib\n\ndef main():\n    pathlib.Path('touched').write_text('ran')\n"
    build_wheel(
        directory,
        "helper-tool",
        "0.1.0",
        scripts={"helper-tool": "helper_tool:main"},
        modules={"helper_tool.py": helper},
    )
    return {
        "probe-app": build_wheel(
            directory,
            "probe-app",
            "1.0.0",
            scripts={"probe-app": "probe_app:main"},
            modules={"probe_app.py": PROBE_MODULE},
        ),
        "tool-app": build_wheel(directory, "tool-app", "1.0.0", requires=["helper-tool==0.1.0"]),
    }


def _prepared(
    deployer: VenvDeployer, env: Environment, app: str, health: list[str]
) -> ReleaseManifest:
    """Prepare `app` 1.0.0 with this health command; returns its manifest."""
    release = manifest("1.0.0", app=app, health=health)
    deployer.prepare(env, release, lock_for("1.0.0", app=app), qir_for("1.0.0"))
    return release


def _files_named(root: Path, name: str) -> list[Path]:
    return [path for path in root.rglob(name) if path.is_file()]


def test_health_refuses_a_program_that_is_not_a_console_script_and_never_runs_it(
    tmp_path: Path, deployer: VenvDeployer, env: Environment, wheels: dict[str, BuiltWheel]
) -> None:
    release = _prepared(deployer, env, APP, ["touch", "marker"])  # /usr/bin/touch on PATH
    health = deployer.check_health(env, release, current=False)
    assert not health.ok
    assert health.message == (
        "health command refused, not run: 'touch' is not a console script of the release's "
        "packages (demo-app)"
    )
    assert _files_named(tmp_path, "marker") == []  # not in the release (its cwd), nor anywhere
    stdlib = manifest("1.0.0", health=["python", "-m", "json.tool", "--help"])
    refused = deployer.check_health(env, stdlib, current=False)
    assert not refused.ok and "module 'json.tool' is not part of the release's packages" in (
        refused.message
    )
    own = manifest("1.0.0", health=["python", "-m", "demo_app_app"])
    assert deployer.check_health(env, own, current=False).ok


def test_a_dependency_console_script_is_not_one_of_the_release(
    tmp_path: Path, deployer: VenvDeployer, env: Environment, probe_wheels: dict[str, BuiltWheel]
) -> None:
    release = _prepared(deployer, env, "tool-app", ["helper-tool"])
    venv_bin = deployer.release_dir("dev", "tool-app", "1.0.0") / "venv" / "bin"
    assert (venv_bin / "helper-tool").is_file()  # installed, by a package the manifest omits
    health = deployer.check_health(env, release, current=False)
    assert not health.ok and "'helper-tool' is not a console script" in health.message
    assert _files_named(tmp_path, "touched") == []
    assert deployer.check_health(env, manifest("1.0.0", app="tool-app"), current=False).ok


def test_health_runs_with_the_venv_first_on_path_and_a_minimal_environment(
    deployer: VenvDeployer,
    env: Environment,
    probe_wheels: dict[str, BuiltWheel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QRELEASE_WEBHOOK_SECRET", "hook-s3cr3t")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    release = _prepared(deployer, env, "probe-app", ["probe-app", "--env"])
    health = deployer.check_health(env, release, current=False)
    assert health.ok, health.message
    names, _, path = health.message.partition("ENV ")[2].partition(" PATH=")
    given = {"PATH", "VIRTUAL_ENV", "QRELEASE_RELEASE_DIR"}
    passed = {"LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PWD"}  # PWD: the script's sh shim
    assert given <= set(names.split()) <= given | passed
    venv_bin = deployer.release_dir("dev", "probe-app", "1.0.0") / "venv" / "bin"
    assert path.split(os.pathsep)[0] == str(venv_bin)


def test_health_output_is_capped_and_its_secrets_masked(
    deployer: VenvDeployer, env: Environment, probe_wheels: dict[str, BuiltWheel]
) -> None:
    release = _prepared(deployer, env, "probe-app", ["probe-app", "--spill"])
    health = deployer.check_health(env, release, current=False)
    assert not health.ok and health.message.startswith("`probe-app --spill` exited 1: [...] line")
    head = "`probe-app --spill` exited 1: "
    assert len(health.message.encode()) <= len(head) + HEALTH_OUTPUT_BYTES
    assert health.message.endswith("connecting with password=***\nlast line")
    assert "hunter22" not in health.message and "line 000" not in health.message


def test_a_secret_on_a_line_cut_by_the_output_window_is_dropped_not_shown(
    deployer: VenvDeployer, env: Environment, probe_wheels: dict[str, BuiltWheel]
) -> None:
    release = _prepared(deployer, env, "probe-app", ["probe-app", "--long-secret"])
    health = deployer.check_health(env, release, current=False)
    assert not health.ok
    assert "TTTTTTTT" not in health.message and "hunter22" not in health.message
    assert health.message.endswith("password=***\nlast line")
