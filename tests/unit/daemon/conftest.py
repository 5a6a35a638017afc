"""Fixtures of the daemon tests: a rig (remote, state dir, fake backends) and HTTP clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qrelease.daemon import Controller
from tests.helpers.daemon import Api, Rig
from tests.helpers.gitops import GitOpsRepo


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
