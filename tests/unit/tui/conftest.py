"""Fixtures of the TUI tests: reproducible commits and a reconciled remote."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.gitops import GIT_ENV, GitOpsRepo
from tests.helpers.tui import COMMIT_DATE, Remote


@pytest.fixture(autouse=True)
def reproducible_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fixed identity, dates and an empty HOME: the same files always make the same commit ids."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_AUTHOR_DATE", COMMIT_DATE)
    monkeypatch.setenv("GIT_COMMITTER_DATE", COMMIT_DATE)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def remote(example_repo: GitOpsRepo, tmp_path: Path) -> Remote:
    return Remote(example_repo, tmp_path)
