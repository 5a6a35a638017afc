"""Shared fixtures: real git repositories built in tmp dirs from the bundled examples."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrelease.examples.scaffold import initial_files
from tests.helpers.gitops import GitOpsRepo, make_repo

os.environ["QDK_PYTHON_TELEMETRY"] = "none"


@pytest.fixture
def example_repo(tmp_path: Path) -> Iterator[GitOpsRepo]:
    """A git repo holding the bundled example manifests and environments."""
    yield make_repo(tmp_path / "gitops", initial_files(example=True))
