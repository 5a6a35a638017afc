"""Pin history read from Git: a hostile environment file in the history is no pins, not a crash."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from qrelease.source import pinlog
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


def test_the_pin_cache_is_bounded_by_pins_not_only_by_files(
    example_repo: GitOpsRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pinlog, "_PIN_CACHE", OrderedDict())
    monkeypatch.setattr(pinlog, "_cached_pins", [0])
    monkeypatch.setattr(pinlog, "_CACHE_PINS", 1_000)
    blobs = []
    for n in range(5):  # five versions of an environment file of 400 apps
        pins = "".join(f"  app-{a}: 1.{n}.{a}\n" for a in range(400))
        example_repo.write("releases/big.yaml", f"environment: big\napps:\n{pins}")
        example_repo.commit(f"big {n}")
        blobs.append(example_repo.git("rev-parse", "HEAD:releases/big.yaml"))
    with GitRepo(example_repo.path) as repo:
        for blob in blobs:
            assert len(pinlog._pins(repo, blob)) == 400
    assert list(pinlog._PIN_CACHE) == blobs[-2:]  # 800 pins kept; a third file is over 1,000
    assert pinlog._cached_pins == [800]
    first, second = (dict(pinlog._PIN_CACHE[b]) for b in blobs[-2:])
    assert next(iter(first)) is next(iter(second))  # app names are held once
