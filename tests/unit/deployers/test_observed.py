"""The venv deployer's remembered observations: re-read only what moved, all on a resync."""

from __future__ import annotations

from pathlib import Path

from qrelease.deployers.venv import VenvDeployer
from qrelease.model.environment import Environment
from tests.helpers.releases import age, lay_out_release, point_current

DEV = Environment(environment="dev")


def deployed(state: Path, *apps: str) -> VenvDeployer:
    """A deployer over a state dir where each app runs 1.0.0 with 1.1.0 on disk, aged."""
    for app in apps:
        for version in ("1.0.0", "1.1.0"):
            lay_out_release(state, "dev", app, version)
        point_current(state, "dev", app, "1.0.0")
    age(state / "envs")
    return VenvDeployer(state)


def test_an_unmoved_app_is_answered_from_memory_and_a_switch_is_seen(tmp_path: Path) -> None:
    deployer = deployed(tmp_path, "bell", "qrng")
    first = deployer.observe(DEV, "bell")
    assert first.current == "1.0.0" and first.on_disk == ("1.0.0", "1.1.0") and not first.drift
    deployer.observe(DEV, "qrng")
    assert deployer.observed.reads == 2
    assert deployer.observe(DEV, "bell") == first
    assert deployer.observed.reads == 2
    point_current(tmp_path, "dev", "bell", "1.1.0")  # by hand, not through the deployer
    age(tmp_path / "envs")
    assert deployer.observe(DEV, "bell").current == "1.1.0"
    assert deployer.observe(DEV, "qrng").current == "1.0.0"
    assert deployer.observed.reads == 3


def test_a_release_removed_or_added_on_disk_is_seen(tmp_path: Path) -> None:
    deployer = deployed(tmp_path, "bell")
    deployer.observe(DEV, "bell")
    lay_out_release(tmp_path, "dev", "bell", "1.2.0")
    age(tmp_path / "envs")
    assert deployer.observe(DEV, "bell").on_disk == ("1.0.0", "1.1.0", "1.2.0")
    (tmp_path / "envs/dev/bell/releases/1.0.0/COMPLETE").unlink()
    age(tmp_path / "envs")
    assert deployer.observe(DEV, "bell").drift == (
        f"release 1.0.0 is missing or incomplete at {tmp_path}/envs/dev/bell/releases/1.0.0"
    )


def test_an_edit_inside_a_file_waits_for_the_resync(tmp_path: Path) -> None:
    deployer = deployed(tmp_path, "bell")
    assert deployer.observe(DEV, "bell").drift is None
    program = tmp_path / "envs/dev/bell/releases/1.0.0/program.qir"
    with program.open("r+") as handle:  # in place: no folder changes
        handle.write("tampered")
    age(tmp_path / "envs")
    assert deployer.observe(DEV, "bell").drift is None  # the cheap signal did not move
    deployer.forget_observed()
    drift = deployer.observe(DEV, "bell").drift
    assert drift == "release 1.0.0: program.qir does not match the lock's qir_sha256"


def test_a_change_too_recent_to_trust_is_read_every_time(tmp_path: Path) -> None:
    deployer = deployed(tmp_path, "bell")
    point_current(tmp_path, "dev", "bell", "1.1.0")  # now: within the racy window
    deployer.observe(DEV, "bell")
    deployer.observe(DEV, "bell")
    assert deployer.observed.reads == 2


def test_a_new_process_starts_from_what_the_last_one_saved(tmp_path: Path) -> None:
    deployer = deployed(tmp_path, "bell", "qrng")
    seen = {app: deployer.observe(DEV, app) for app in ("bell", "qrng")}
    deployer.save_observed()
    later = VenvDeployer(tmp_path)
    assert {app: later.observe(DEV, app) for app in ("bell", "qrng")} == seen
    assert later.observed.reads == 0
    point_current(tmp_path, "dev", "qrng", "1.1.0")
    age(tmp_path / "envs")
    assert VenvDeployer(tmp_path).observe(DEV, "qrng").current == "1.1.0"


def test_a_saved_file_that_does_not_read_is_ignored(tmp_path: Path) -> None:
    deployer = deployed(tmp_path, "bell")
    deployer.observe(DEV, "bell")
    deployer.save_observed()
    deployer.observed.path.write_text('{"format": 1, "apps": [["dev", "bell", 7]]}')
    later = VenvDeployer(tmp_path)
    assert later.observe(DEV, "bell").current == "1.0.0"
    assert later.observed.reads == 1
    assert deployer.observed.path.stat().st_mode & 0o777 == 0o600
