"""Shared fixtures: real git repos of the bundled examples, a controller rig, PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qrelease.daemon import Controller
from qrelease.examples.scaffold import initial_files
from tests.helpers.daemon import Api, Rig
from tests.helpers.gitops import GitOpsRepo, make_repo

os.environ["QDK_PYTHON_TELEMETRY"] = "none"

pytest_plugins = ["tests.helpers.postgres", "tests.helpers.browser"]  # postgres_url, chromium


@pytest.fixture
def example_repo(tmp_path: Path) -> Iterator[GitOpsRepo]:
    """A git repo holding the bundled example manifests and environments."""
    yield make_repo(tmp_path / "gitops", initial_files(example=True))


@pytest.fixture
def rig(example_repo: GitOpsRepo, tmp_path: Path) -> Iterator[Rig]:
    the_rig = Rig(example_repo, tmp_path)
    yield the_rig
    the_rig.close()


@pytest.fixture
def api_for() -> Iterator[Callable[[Controller], Api]]:
    clients: list[Api] = []

    def make(controller: Controller) -> Api:
        clients.append(Api(controller))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
