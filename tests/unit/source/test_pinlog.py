"""Pin history read from Git: a hostile environment file in the history is no pins, not a crash."""

from __future__ import annotations

from qrelease.source.pinlog import pin_commits
from qrelease.source.repo import GitRepo
from tests.helpers.gitops import GitOpsRepo


def test_a_hostile_environment_file_in_history_reads_as_no_pins(example_repo: GitOpsRepo) -> None:
    dev = example_repo.read("releases/dev.yaml")
    hostile = dev.replace("policy:", "policy:\n  freezes: [{start: 2026-13-01, end: 2027-01-01}]")
    example_repo.write("releases/dev.yaml", hostile)
    example_repo.commit("hostile")
    example_repo.write("releases/dev.yaml", dev.replace("qrng: 0.2.0", "qrng: 0.1.0"))
    example_repo.commit("pin qrng 0.1.0")
    with GitRepo(example_repo.path) as repo:
        changes = pin_commits(repo, "HEAD")
    moved = [(c.env, c.app, c.from_version, c.to_version, c.reason) for c in changes[:4]]
    assert moved == [
        ("dev", "bell-service", None, "1.2.0", "pin qrng 0.1.0"),
        ("dev", "qrng", None, "0.1.0", "pin qrng 0.1.0"),
        ("dev", "bell-service", "1.2.0", None, "hostile"),
        ("dev", "qrng", "0.2.0", None, "hostile"),
    ]
