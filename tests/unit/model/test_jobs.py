"""Job tags and statuses, and the example apps tagging their jobs as the controller reads them."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from qrelease.model.jobs import JobStatus, release_of, release_tags
from tests.helpers import PROJECT_ROOT


def example_release_module(app: str, package: str) -> ModuleType:
    path = PROJECT_ROOT / "examples" / app / "src" / package / "release.py"
    spec = importlib.util.spec_from_file_location(f"example_{package}_release", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("app", "package"), [("bell-service", "bell_service"), ("qrng", "qrng")])
def test_the_example_apps_tag_their_jobs_as_the_controller_reads_them(
    app: str, package: str
) -> None:
    lock = {"app": app, "env": "prod", "version": "1.2.0"}
    tags = example_release_module(app, package).job_tags(lock)
    assert tags == release_tags("prod", app, "1.2.0")
    assert release_of(tags) == ("prod", app, "1.2.0")


def test_a_job_missing_a_release_tag_belongs_to_no_release() -> None:
    assert release_of(["qrelease.env=prod", "qrelease.app=bell"]) is None
    assert release_of(["qrelease.env=", "qrelease.app=a", "qrelease.version=1.0.0"]) is None
    assert release_of([None, 3, "qrelease.env=e", "qrelease.app=a", "qrelease.version=1"]) == (
        "e",
        "a",
        "1",
    )


def test_only_succeeded_failed_and_cancelled_are_ended() -> None:
    assert {status for status in JobStatus if status.ended} == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
    assert JobStatus.parse("CancellationRequested") is JobStatus.EXECUTING
