"""The controller's view: /status as one body, and streamed a few hundred rows at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from qrelease.daemon.state import PassRecord, View
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.status import StatusRow

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def view_of(apps: int) -> View:
    rows = {
        ("prod", f"app-{i:04}"): StatusRow(
            "prod",
            f"app-{i:04}",
            "1.1.0",
            "1.0.0",
            Sync.OUT_OF_SYNC,
            Health.HEALTHY,
            Rollout.FAILED,
            "gates",
            "ionq.simulator",
            Availability.AVAILABLE,
            'a "quoted" message',
            "a" * 40,
            T0 + timedelta(minutes=i),
        )
        for i in range(apps)
    }
    jobs = {("prod", "app-0001"): {"version": "1.0.0", "failed": 2}}
    return View(
        url="https://example.test/gitops.git",
        branch="main",
        interval=timedelta(seconds=30),
        resync=timedelta(minutes=5),
        last_pass=PassRecord("a" * 40, "succeeded", T0, 1.5, "poll", {"deploys": 1}),
        rows=rows,
        jobs=jobs,
        replica="r1",
        fleet={"r1": {"leases": ["prod"]}},
    )


@pytest.mark.parametrize("apps", [0, 1, 7, 1_203])
def test_the_streamed_status_body_is_the_status_body(apps: int) -> None:
    view = view_of(apps)
    chunks = list(view.json_chunks(rows_per_chunk=100))
    body = json.loads(b"".join(chunks))
    assert body == json.loads(json.dumps(view.as_json()))
    assert list(body) == list(view.as_json())  # the same fields in the same order
    assert len(chunks) == 2 + -(-apps // 100)  # head, a chunk per 100 rows, tail
    if apps > 1:
        assert body["rows"][1]["quantum_jobs"] == {"version": "1.0.0", "failed": 2}
